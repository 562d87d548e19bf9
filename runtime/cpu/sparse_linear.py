"""The kernel of ``sc.sparse_input_linear``: ``out = where(|x| < t, 0, x) @ w_t`` with the weight
stored transposed, ``w_t`` ``[K, N]`` (``[in, out]``), so that an input that is skipped is one
whole weight row that is never read.

**Below ``SPARSE_MAX_ROWS`` rows** (``linalg.BLAS_MIN_ROWS``, 512). For each block of up to
``ROW_BLOCK`` rows, the inputs some row of the block keeps (``|x| >= t``, NaN kept) are listed
once; the block's outputs are then the sum, over those inputs k only, of ``x[r, k] * w_t[k, :]`` (an
"axpy" per input: the inner loop runs along a contiguous stretch of a weight row, which Numba
vectorizes), eight kept weight rows per step (eight memory streams per thread, an eighth of
the accumulator traffic); a full block of 4 rows shares each loaded weight vector between its
rows (``_four_rows``). The output columns are cut into one contiguous block per thread (narrower
when several rows share a block, so that the accumulators, ``rows x columns`` floats, stay in
L1); each thread reads only its columns of the kept weight rows. One row on several threads
(``_one_row_split``, decode) splits the kept weight rows instead: each thread reads whole rows
(the longest contiguous reads) into a partial output row, and the partial rows are added, 5-15%
faster. Either way the weight bytes read at one row are the kept fraction, each read once.

At one row (decode) this reads the kept fraction of the weight once: the point of the op. With
more rows the union of the rows' kept inputs soon covers nearly every input (at 50% sparsity,
94% for a block of 4 rows), so nothing is saved, and this form (accumulators in L1, not in
registers) runs 1.5-5x slower than ``sc.linear``'s tiles with the weights in cache: prefill
with activation sparsity is slower than dense. Measured alternatives were worse: BLAS on
``w_t`` (inside a compiled model OpenBLAS's spinning threads starve the Numba kernels that
follow: 50-100 ms per MLP call on 2 shared cores, see ``linalg.BLAS_MIN_ROWS``), or transposing
the weight back for the tiles (1-2 ms per 1024 x 2816 weight per call).

**``SPARSE_MAX_ROWS`` rows and more**: threshold, then BLAS (``np.matmul``), as ``sc.linear``
does from ``linalg.BLAS_MIN_ROWS`` rows.

Skipped inputs contribute nothing, also where their weight row holds inf/NaN (the reference's
dense product would give NaN there; weights are finite in practice).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import linalg as L
from .common import num_threads
from .linalg import FAST, SERIAL_WORK, prange_only

#: rows from which the thresholded input goes to BLAS (where ``sc.linear`` goes to BLAS too).
#: Measured on shared Zen 5 cores (AVX-512), one f32 [1024, 2816] weight in cache, 50% of the
#: inputs under the threshold, best of 20-40 (ms), one thread: this kernel 0.07 / 0.22 / 0.42 /
#: 1.1 / 5.0 at 1 / 4 / 8 / 16 / 64 rows, the dense tiles 0.12 / 0.15 / 0.31 / 0.52 / 1.7. At one
#: row with the weights from DRAM it reads the kept half: 0.33 ms per SwiGLU MLP 1024x2816 against
#: 0.60 dense (two threads, 4 weight copies cycled, medians).
SPARSE_MAX_ROWS = L.BLAS_MIN_ROWS
#: rows that share one list of kept inputs (and one pass over the weight rows); a full block
#: runs ``_four_rows``. 4, not 8: the union of 8 rows' kept inputs is nearly all of them
ROW_BLOCK = 4
#: accumulator floats per column block (rows x columns): 16 KiB, in L1
ACC_FLOATS = 4096


@njit(fastmath=FAST, cache=True)
def _kept_inputs(x, threshold, r0, r1, xs, ks, rb):
    """``xs[r, k] = x[r, k]`` where kept, else 0, for rows r0..r1; ``ks[rb, :c]`` = the inputs
    kept by any of those rows (ascending). Returns c."""
    K = x.shape[1]
    c = 0
    for k in range(K):
        keep = False
        for r in range(r0, r1):
            v = x[r, k]
            if abs(v) < threshold:
                xs[r, k] = np.float32(0.0)
            else:
                xs[r, k] = v
                keep = True
        if keep:
            ks[rb, c] = k
            c += 1
    return c


@njit(fastmath=FAST, cache=True)
def _four_rows(xs, w_t, ks, rb, r0, c4, u0, nb, acc):
    """A full block of 4 rows, kept weight rows ``ks[rb, :c4]`` four at a time: each loaded
    vector of the 4 weight rows serves the 4 rows (16 FMAs per 4 weight loads and 4
    accumulator loads/stores; the generic loop reloads the weights per row)."""
    for j in range(0, c4, 4):
        k0, k1, k2, k3 = ks[rb, j], ks[rb, j + 1], ks[rb, j + 2], ks[rb, j + 3]
        a0, a1, a2, a3 = xs[r0, k0], xs[r0, k1], xs[r0, k2], xs[r0, k3]
        b0, b1, b2, b3 = xs[r0 + 1, k0], xs[r0 + 1, k1], xs[r0 + 1, k2], xs[r0 + 1, k3]
        c0, c1, c2, c3 = xs[r0 + 2, k0], xs[r0 + 2, k1], xs[r0 + 2, k2], xs[r0 + 2, k3]
        d0, d1, d2, d3 = xs[r0 + 3, k0], xs[r0 + 3, k1], xs[r0 + 3, k2], xs[r0 + 3, k3]
        for n in range(nb):
            un = u0 + np.uint64(n)
            w0, w1, w2, w3 = w_t[k0, un], w_t[k1, un], w_t[k2, un], w_t[k3, un]
            acc[0, n] += (a0 * w0 + a1 * w1) + (a2 * w2 + a3 * w3)
            acc[1, n] += (b0 * w0 + b1 * w1) + (b2 * w2 + b3 * w3)
            acc[2, n] += (c0 * w0 + c1 * w1) + (c2 * w2 + c3 * w3)
            acc[3, n] += (d0 * w0 + d1 * w1) + (d2 * w2 + d3 * w3)


@njit(fastmath=FAST, cache=True)
def _column_block(xs, w_t, ks, counts, n0, n1, out):
    """``out[:, n0:n1]`` for every row block: the kept weight rows' columns n0..n1 only."""
    M = xs.shape[0]
    nb = n1 - n0
    u0 = np.uint64(n0)
    acc = np.empty((ROW_BLOCK, nb), np.float32)
    for rb in range(counts.shape[0]):
        r0 = rb * ROW_BLOCK
        rows = min(ROW_BLOCK, M - r0)
        for r in range(rows):
            for n in range(nb):
                acc[r, n] = np.float32(0.0)
        c = counts[rb]
        if rows == 4:
            done = c - c % 4
            _four_rows(xs, w_t, ks, rb, r0, done, u0, nb, acc)
        else:
            done = c - c % 8
            for j in range(0, done, 8):
                # eight kept weight rows at a time: eight concurrent memory streams (one stream
                # per thread leaves DRAM bandwidth unused), an eighth of the accumulator traffic
                k0, k1, k2, k3 = ks[rb, j], ks[rb, j + 1], ks[rb, j + 2], ks[rb, j + 3]
                k4, k5, k6, k7 = ks[rb, j + 4], ks[rb, j + 5], ks[rb, j + 6], ks[rb, j + 7]
                for r in range(rows):
                    x0, x1, x2, x3 = xs[r0 + r, k0], xs[r0 + r, k1], xs[r0 + r, k2], xs[r0 + r, k3]
                    x4, x5, x6, x7 = xs[r0 + r, k4], xs[r0 + r, k5], xs[r0 + r, k6], xs[r0 + r, k7]
                    for n in range(nb):
                        # unsigned column index: no negative-index wraparound, so the loop
                        # vectorizes into contiguous loads (a signed n0 + n became a gather)
                        un = u0 + np.uint64(n)
                        acc[r, n] += (((x0 * w_t[k0, un] + x1 * w_t[k1, un]) + (x2 * w_t[k2, un] + x3 * w_t[k3, un]))
                                      + ((x4 * w_t[k4, un] + x5 * w_t[k5, un]) + (x6 * w_t[k6, un] + x7 * w_t[k7, un])))
        for j in range(done, c):
            k = ks[rb, j]
            for r in range(rows):
                xv = xs[r0 + r, k]
                if xv != 0:
                    for n in range(nb):
                        acc[r, n] += xv * w_t[k, u0 + np.uint64(n)]
        for r in range(rows):
            for n in range(nb):
                out[r0 + r, u0 + np.uint64(n)] = acc[r, n]


@njit(fastmath=FAST, cache=True)
def _kept_part(xs, w_t, ks, j0, j1, n0, n1, part):
    """``part[n0:n1] = sum over j in j0..j1 of xs[0, k] * w_t[k, n0:n1]`` with ``k = ks[0, j]``
    (one row): eight kept weight rows at a time, each read as one contiguous stretch."""
    nb = n1 - n0
    u0 = np.uint64(n0)
    for n in range(nb):
        part[u0 + np.uint64(n)] = np.float32(0.0)
    done = j1 - (j1 - j0) % 8
    for j in range(j0, done, 8):
        k0, k1, k2, k3 = ks[0, j], ks[0, j + 1], ks[0, j + 2], ks[0, j + 3]
        k4, k5, k6, k7 = ks[0, j + 4], ks[0, j + 5], ks[0, j + 6], ks[0, j + 7]
        x0, x1, x2, x3 = xs[0, k0], xs[0, k1], xs[0, k2], xs[0, k3]
        x4, x5, x6, x7 = xs[0, k4], xs[0, k5], xs[0, k6], xs[0, k7]
        for n in range(nb):
            un = u0 + np.uint64(n)
            part[un] += (((x0 * w_t[k0, un] + x1 * w_t[k1, un]) + (x2 * w_t[k2, un] + x3 * w_t[k3, un]))
                         + ((x4 * w_t[k4, un] + x5 * w_t[k5, un]) + (x6 * w_t[k6, un] + x7 * w_t[k7, un])))
    for j in range(done, j1):
        k = ks[0, j]
        xv = xs[0, k]
        for n in range(nb):
            part[u0 + np.uint64(n)] += xv * w_t[k, u0 + np.uint64(n)]


@njit(parallel=prange_only(), fastmath=FAST, cache=True)
def _one_row_split(xs, w_t, ks, c, threads, out):
    """One row on ``threads`` threads: each sums its contiguous share of the kept weight rows
    (whole rows: the longest contiguous reads) into a partial row, in column blocks of at most
    ``ACC_FLOATS`` (L1); the partial rows are then added. Measured 10-20% faster than splitting
    the columns (where each thread reads 1/threads of every kept row) on 2 cores."""
    N = w_t.shape[1]
    cb = (N + ACC_FLOATS - 1) // ACC_FLOATS
    parts = np.empty((threads, N), np.float32)
    for it in prange(threads * cb):
        p = it // cb
        b = it % cb
        _kept_part(xs, w_t, ks, c * p // threads, c * (p + 1) // threads, b * ACC_FLOATS,
                   min(N, (b + 1) * ACC_FLOATS), parts[p])
    for n in range(N):
        s = parts[0, n]
        for p in range(1, threads):
            s += parts[p, n]
        out[0, n] = s


@njit(parallel=prange_only(), fastmath=FAST, cache=True)
def sparse_rows_f32(x, w_t, threshold, threads, out):
    """``out = where(|x| < threshold, 0, x) @ w_t`` for f32 ``x [M, K]``, ``w_t [K, N]``,
    ``out [M, N]``, reading only the kept weight rows; ``threads``: Numba's thread count."""
    M, K = x.shape
    N = w_t.shape[1]
    t = np.float32(threshold)
    n_rb = (M + ROW_BLOCK - 1) // ROW_BLOCK
    xs = np.empty((M, K), np.float32)
    ks = np.empty((n_rb, K), np.int64)
    counts = np.empty(n_rb, np.int64)
    kept = 0
    for rb in range(n_rb):
        r0 = rb * ROW_BLOCK
        counts[rb] = _kept_inputs(x, t, r0, min(r0 + ROW_BLOCK, M), xs, ks, rb)
        kept += counts[rb] * min(ROW_BLOCK, M - r0)
    if kept * N < SERIAL_WORK:
        threads = 1
    if M == 1 and threads > 1:
        _one_row_split(xs, w_t, ks, counts[0], min(threads, max(1, counts[0] // 8)), out)
        return
    # one contiguous column block per thread, narrower when the accumulators would leave L1
    rows = min(M, ROW_BLOCK)
    width = (N + threads - 1) // threads
    width = min(width, max(16, ACC_FLOATS // rows))
    width = max(16, (width + 15) // 16 * 16)
    blocks = (N + width - 1) // width
    if threads == 1 or blocks == 1:
        for b in range(blocks):
            _column_block(xs, w_t, ks, counts, b * width, min(N, (b + 1) * width), out)
        return
    for b in prange(blocks):
        _column_block(xs, w_t, ks, counts, b * width, min(N, (b + 1) * width), out)


@njit(parallel=prange_only(), fastmath=FAST, cache=True)
def threshold_f32(x, threshold, out):
    """``out = where(|x| < threshold, 0, x)`` (f32, rows in parallel)."""
    t = np.float32(threshold)
    M, K = x.shape
    for r in prange(M):
        for k in range(K):
            v = x[r, k]
            out[r, k] = np.float32(0.0) if abs(v) < t else v


# ---------------------------------------------------------------------------------------------
# Python entry point (thin: called once per op per step)

def sparse_input_linear_f32(x, w_t, threshold: float, out) -> None:
    """``out = where(|x| < threshold, 0, x) @ w_t`` for f32 ``x [M, K]``, ``w_t [K, N]``, ``out [M, N]``."""
    M = x.shape[0]
    if M == 0:
        return
    if w_t.shape[0] == 0 or w_t.shape[1] == 0:
        out[...] = 0
        return
    if M < SPARSE_MAX_ROWS:
        sparse_rows_f32(x, w_t, threshold, num_threads(), out)
        return
    xs = np.empty_like(x)
    threshold_f32(x, threshold, xs)
    np.matmul(xs, w_t, out=out)
