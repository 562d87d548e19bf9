"""Matrix-product kernels: the f32 "rows times weight^T" kernel behind ``sc.linear``,
``sc.grouped_matmul`` and ``sc.moe_gated_grouped_matmul`` (a GEMV at one row), and an integer
batched matmul.

The f32 kernel multiplies row groups by per-group weights (``w`` ``[G, N, K]``, the Hugging Face
``[out, in]`` layout per group; ``sc.linear`` is one group). Work is cut into items of
``ITEM_COLS`` weight rows of one group; items are dealt to threads in contiguous runs of
roughly equal cost (rows x weight rows), so each weight row is read from memory once per call,
whatever the number of rows, and a group with no rows costs nothing (llama.cpp's
``mul_mat_id``). Inside an item a 4x4 register tile (4 input rows x 4 weight rows) shares every
load between 4 accumulators; the vectorizer turns each accumulator into a SIMD reduction
(``reassoc``). Groups with many rows are left to BLAS (``BLAS_MIN_ROWS``, measured: below it the
tiles beat OpenBLAS, whose small-row path runs on one thread; above it BLAS's packed kernels win).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

#: rows (of one group) from which ``np.matmul`` (BLAS sgemm) is used instead of the tile kernel.
#: Measured on a 2-core Zen 5 (AVX-512) with OpenBLAS, f32 weights [2816, 1024] / [1024, 2816]:
#: tiles 270 / 220 GFLOP/s at 4 rows, 295 / 250 at 16, 320 / 250 at 64, 325 / 250 at 128;
#: OpenBLAS 32 / 32, 110 / 105, 275 / 255, 340 / 340 (its few-row path is single-threaded).
#: In isolation they cross at 64-96 rows. Inside a compiled model, though, OpenBLAS's worker
#: threads keep spinning after each call and starve the Numba kernels that follow (a fused
#: silu*mul went from ~20 us to ~5 ms). Whole SwiGLU MLP (1024x2816) compiled, median ms:
#: BLAS from 64 rows: 16.0 at 128 tokens; tiles only: 8.1 at 128, 16.0 at 256, 37.6 at 512;
#: BLAS from 256: 20.0 at 256, 30.5 at 512, 51 at 1024 (tiles 75). So BLAS only from 512 rows.
BLAS_MIN_ROWS = 512
#: weight rows per work item (a multiple of the 4-row tile); 64 measured ~15% faster than 16
#: at 16 rows, equal for the GEMV
ITEM_COLS = 64
#: multiply-adds below which a product runs on the calling thread
SERIAL_WORK = 1 << 16

# activation codes of the gated epilogue (sc.moe_gated_grouped_matmul)
ACT_NONE, ACT_SILU, ACT_GELU, ACT_GELU_TANH, ACT_RELU = 0, 1, 2, 3, 4
ACTIVATIONS = {"silu": ACT_SILU, "gelu": ACT_GELU, "gelu_tanh": ACT_GELU_TANH, "relu": ACT_RELU}


def prange_only() -> dict:
    """Numba ``parallel=`` options: only explicit ``prange`` loops run on threads. (With plain
    ``parallel=True`` every array expression, ``np.zeros`` or slice assignment in a kernel becomes a
    parallel region of its own: thread start-ups on tiny arrays, milliseconds on a loaded machine.)"""
    return {"prange": True, "comprehension": False, "reduction": False, "inplace_binop": False,
            "setitem": False, "numpy": False, "stencil": False, "fusion": False}


# reassociation lets the vectorizer split each dot product into SIMD lanes; no nnan/ninf, so
# infinities and NaN propagate as the reference's do
FAST = {"reassoc", "contract", "nsz"}

_NO_BIAS = np.zeros(0, np.float32)

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


@njit(fastmath=FAST, cache=True)
def activation(v, code):
    """The gated epilogue's activation of one f32 value (formulas of the elementwise references)."""
    if code == ACT_SILU:
        e = math.exp(-abs(v))  # the reference's stable sigmoid
        s = 1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e)
        return np.float32(v * s)
    if code == ACT_GELU:
        return np.float32(0.5 * v * (1.0 + math.erf(np.float64(v) * _INV_SQRT2)))
    if code == ACT_GELU_TANH:
        return np.float32(0.5 * v * (1.0 + math.tanh(_SQRT_2_OVER_PI * (v + 0.044715 * v * v * v))))
    if code == ACT_RELU:
        return v if v > 0 else np.float32(0.0)
    return v


@njit(fastmath=FAST, cache=True)
def _tile4x4(x, r, w, g, n, K):
    """Dot products of x rows r..r+3 with w[g] rows n..n+3 (16 values, row-major)."""
    z = np.float32(0.0)
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = c0 = c1 = c2 = c3 = d0 = d1 = d2 = d3 = z
    for k in range(K):
        w0 = w[g, n, k]
        w1 = w[g, n + 1, k]
        w2 = w[g, n + 2, k]
        w3 = w[g, n + 3, k]
        xa = x[r, k]
        xb = x[r + 1, k]
        xc = x[r + 2, k]
        xd = x[r + 3, k]
        a0 += xa * w0
        a1 += xa * w1
        a2 += xa * w2
        a3 += xa * w3
        b0 += xb * w0
        b1 += xb * w1
        b2 += xb * w2
        b3 += xb * w3
        c0 += xc * w0
        c1 += xc * w1
        c2 += xc * w2
        c3 += xc * w3
        d0 += xd * w0
        d1 += xd * w1
        d2 += xd * w2
        d3 += xd * w3
    return (a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3)


@njit(fastmath=FAST, cache=True)
def _tile1x4(x, r, w, g, n, K):
    """Dot products of x row r with w[g] rows n..n+3: the GEMV step (x is read once per 4 rows)."""
    z = np.float32(0.0)
    a0 = a1 = a2 = a3 = z
    for k in range(K):
        xa = x[r, k]
        a0 += xa * w[g, n, k]
        a1 += xa * w[g, n + 1, k]
        a2 += xa * w[g, n + 2, k]
        a3 += xa * w[g, n + 3, k]
    return (a0, a1, a2, a3)


@njit(fastmath=FAST, cache=True)
def _dot(x, r, w, g, n, K):
    acc = np.float32(0.0)
    for k in range(K):
        acc += x[r, k] * w[g, n, k]
    return acc


@njit(fastmath=FAST, cache=True)
def _run_item(x, w, r0, r1, g, n0, n1, bias, out):
    """``out[r, n] = x[r] . w[g, n] (+ bias[n])`` for rows r0..r1 of x and n0..n1 of w[g]."""
    K = x.shape[1]
    has_bias = bias.size > 0
    n = n0
    while n + 4 <= n1:
        z = np.float32(0.0)
        b = (bias[n], bias[n + 1], bias[n + 2], bias[n + 3]) if has_bias else (z, z, z, z)
        r = r0
        while r + 4 <= r1:
            t = _tile4x4(x, r, w, g, n, K)
            for i in range(4):
                for j in range(4):
                    out[r + i, n + j] = t[4 * i + j] + b[j]
            r += 4
        while r < r1:
            t4 = _tile1x4(x, r, w, g, n, K)
            for j in range(4):
                out[r, n + j] = t4[j] + b[j]
            r += 1
        n += 4
    while n < n1:
        b1 = bias[n] if has_bias else np.float32(0.0)
        for r in range(r0, r1):
            out[r, n] = _dot(x, r, w, g, n, K) + b1
        n += 1


@njit(fastmath=FAST, cache=True)
def _run_item_gated(x, w, w2, r0, r1, g, n0, n1, act, out):
    """``out[r, n] = act(x[r] . w[g, n]) * (x[r] . w2[g, n])`` for rows r0..r1, n0..n1."""
    K = x.shape[1]
    n = n0
    while n + 4 <= n1:
        r = r0
        while r + 4 <= r1:
            t = _tile4x4(x, r, w, g, n, K)
            u = _tile4x4(x, r, w2, g, n, K)
            for i in range(4):
                for j in range(4):
                    out[r + i, n + j] = activation(t[4 * i + j], act) * u[4 * i + j]
            r += 4
        while r < r1:
            t4 = _tile1x4(x, r, w, g, n, K)
            u4 = _tile1x4(x, r, w2, g, n, K)
            for j in range(4):
                out[r, n + j] = activation(t4[j], act) * u4[j]
            r += 1
        n += 4
    while n < n1:
        for r in range(r0, r1):
            out[r, n] = activation(_dot(x, r, w, g, n, K), act) * _dot(x, r, w2, g, n, K)
        n += 1


@njit(fastmath=FAST, cache=True)
def _run_items(x, w, w2, offsets, bias, act, item_group, item_block, lo, hi, out):
    """Work items lo..hi: (group, block of ITEM_COLS weight rows) each."""
    N = w.shape[1]
    for it in range(lo, hi):
        g = item_group[it]
        n0 = item_block[it] * ITEM_COLS
        n1 = min(n0 + ITEM_COLS, N)
        if act != ACT_NONE:
            _run_item_gated(x, w, w2, offsets[g], offsets[g + 1], g, n0, n1, act, out)
        else:
            _run_item(x, w, offsets[g], offsets[g + 1], g, n0, n1, bias, out)


@njit(parallel=prange_only(), fastmath=FAST, cache=True)
def grouped_gemm_nt(x, w, w2, offsets, bias, act, blas_min_rows, threads, out):
    """``out[r] = x[r] @ w[g].T`` for the rows ``r`` in ``offsets[g]:offsets[g+1]`` (f32).

    ``act != ACT_NONE``: ``out[r] = act(x[r] @ w[g].T) * (x[r] @ w2[g].T)`` (the gated expert half);
    otherwise ``w2`` is ignored and ``bias`` (``[N]`` or empty) is added. Groups with at least
    ``blas_min_rows`` rows are skipped (the caller gives them to BLAS); ``threads`` is the number of
    contiguous item runs (Numba's thread count). Returns 0, or -1 when
    ``offsets`` do not rise from 0 to the row count (nothing is written then).
    """
    M = x.shape[0]
    G, N = w.shape[0], w.shape[1]
    if offsets[0] != 0 or offsets[G] != M:
        return -1
    for g in range(G):
        if offsets[g + 1] < offsets[g]:
            return -1
    blocks = (N + ITEM_COLS - 1) // ITEM_COLS
    # work items (group, weight-row block) with their cumulative cost; empty groups have none
    n_items = 0
    for g in range(G):
        rows = offsets[g + 1] - offsets[g]
        if 0 < rows < blas_min_rows:
            n_items += blocks
    item_group = np.empty(n_items, np.int64)
    item_block = np.empty(n_items, np.int64)
    cost_end = np.empty(n_items, np.int64)
    i = 0
    total = 0
    for g in range(G):
        rows = offsets[g + 1] - offsets[g]
        if 0 < rows < blas_min_rows:
            for b in range(blocks):
                item_group[i] = g
                item_block[i] = b
                total += rows + 1  # +1: a weight block costs its read even for one row
                cost_end[i] = total
                i += 1
    # each thread takes a contiguous run of items of about total / threads cost; small products
    # stay on the calling thread (a parallel region costs more than they do)
    if total * ITEM_COLS * x.shape[1] < SERIAL_WORK:
        threads = 1
    threads = max(1, min(threads, n_items))
    if threads == 1:
        _run_items(x, w, w2, offsets, bias, act, item_group, item_block, 0, n_items, out)
        return 0
    first = np.zeros(threads + 1, np.int64)
    t = 1
    for i in range(n_items):
        while t < threads and cost_end[i] > (total * t) // threads:
            first[t] = i
            t += 1
    while t <= threads:
        first[t] = n_items
        t += 1
    for th in prange(threads):
        _run_items(x, w, w2, offsets, bias, act, item_group, item_block, first[th], first[th + 1], out)
    return 0


# ---------------------------------------------------------------------------------------------
# Python entry points (thin: called once per op per step)

def linear_f32(x, w, bias, out):
    """``out = x @ w.T (+ bias)`` for f32 ``x [M, K]``, ``w [N, K]``, ``bias [N]`` or None, ``out [M, N]``."""
    M = x.shape[0]
    if M == 0:
        return
    if M >= BLAS_MIN_ROWS:
        np.matmul(x, w.T, out=out)
        if bias is not None:
            np.add(out, bias, out=out)
        return
    w3 = w.reshape((1,) + w.shape)
    grouped_gemm_nt(x, w3, w3, np.array([0, M], np.int64), _NO_BIAS if bias is None else bias, ACT_NONE,
                    BLAS_MIN_ROWS, numba.get_num_threads(), out)


def grouped_f32(x, w, w2, offsets, act, out) -> bool:
    """``sc.grouped_matmul`` (``act`` = ACT_NONE) or the gated form on f32 arrays; False when
    ``offsets`` are not a valid row partition (nothing written)."""
    if grouped_gemm_nt(x, w, w if w2 is None else w2, offsets, _NO_BIAS, act, BLAS_MIN_ROWS,
                        numba.get_num_threads(), out) < 0:
        return False
    if x.shape[0] < BLAS_MIN_ROWS:
        return True
    counts = offsets[1:] - offsets[:-1]
    if counts.max(initial=0) >= BLAS_MIN_ROWS:
        for g in np.flatnonzero(counts >= BLAS_MIN_ROWS):
            lo, hi = offsets[g], offsets[g + 1]
            np.matmul(x[lo:hi], w[g].T, out=out[lo:hi])
            if act != ACT_NONE:
                up = np.matmul(x[lo:hi], w2[g].T)
                gated_epilogue(out[lo:hi], up, act)
    return True


@njit(parallel=prange_only(), fastmath=FAST, cache=True)
def gated_epilogue(gate, up, act):
    """``gate = act(gate) * up`` in place (the BLAS path of the gated grouped matmul)."""
    R, N = gate.shape
    for r in prange(R):
        for n in range(N):
            gate[r, n] = activation(gate[r, n], act) * up[r, n]


# ---------------------------------------------------------------------------------------------
# integers: int64 accumulation, wrapping to the operand dtype (as the reference)

@njit(cache=True)
def matmul_i64(a, b, out):
    """``out[i] = a[i] @ b[i]`` for int64 ``a [B, M, K]``, ``b [B, K, N]``, ``out [B, M, N]``."""
    B, M, K = a.shape
    N = b.shape[2]
    for bm in range(B * M):
        i = bm // M
        m = bm % M
        for n in range(N):
            out[i, m, n] = 0
        for k in range(K):
            amk = a[i, m, k]
            for n in range(N):
                out[i, m, n] += amk * b[i, k, n]
