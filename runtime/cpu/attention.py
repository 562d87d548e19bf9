"""Scaled-dot-product attention kernel (``sc.attention``): grouped-query heads, causal offset,
an additive mask, online softmax.

The query heads that share a KV head read the same keys and values, so the kernel works per KV
head on the ``group * S`` query rows of its heads (row ``r`` is head ``kh * group + r // S``,
position ``r % S``), four rows at a time: while decoding (``S = 1``) the four rows are four heads
of one group and each key and value is read once for all of them. For a block of rows the keys
are visited in tiles of ``KEY_TILE``: a 4-rows x 4-keys register tile computes the scores, then
each row's running maximum, denominator and weighted sum of values are rescaled once per tile
(the flash-attention recurrence), so keys may outnumber queries (a KV cache) at no extra memory.
Keys after a row's causal limit ``i + (L - S)`` are masked, and tiles after the block's last
limit never read. Work items (batch, KV head, row block) are cut into contiguous runs over the
threads. Accumulation is in the operands' compute dtype (f32, or f64 for f64 operands).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .common import num_threads
from .linalg import prange_only
from .numerics import f32_from_bits as _f32_from_bits

KEY_TILE = 64
ROWS = 4  # query rows per block (the register tile's height)
#: reassociation vectorizes the dot products; no nnan/ninf: -inf scores mean "masked"
FAST = {"reassoc", "contract", "nsz"}


# ---------------------------------------------------------------------------------------------
# exp that vectorizes: libm's expf is a call per element, this is straight-line arithmetic, so a
# loop of them becomes SIMD code (Cephes' expf: 2^n * p(r) with |r| <= ln2/2, ~1 ulp)

def softmax_exp(x):
    """``exp(x)`` for the softmax: vectorizable in f32 (0 below -87.3), ``math.exp`` otherwise."""
    return math.exp(x)


@overload(softmax_exp, jit_options={"fastmath": FAST})
def _softmax_exp(x):
    if x != types.float32:
        return lambda x: math.exp(x)

    def exp_f32(x):
        xc = min(max(x, np.float32(-87.33654)), np.float32(88.37626))
        n = math.floor(xc * np.float32(1.44269504088896341) + np.float32(0.5))
        r = xc - n * np.float32(0.693359375) + n * np.float32(2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        p = p * r * r + r + np.float32(1.0)
        scaled = p * _f32_from_bits((np.int64(n) + 127) << 23)
        return scaled if x >= np.float32(-87.33654) else np.float32(0.0)
    return exp_f32


@njit(fastmath=FAST, cache=True)
def _scores4x4(q, k, b, hs, ps, kh, j, L, D):
    """Dot products of the 4 query rows (heads ``hs``, positions ``ps``) with keys j..j+3
    (clamped to the last key; the caller masks what lies beyond)."""
    z = q.dtype.type(0.0)
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = c0 = c1 = c2 = c3 = d0 = d1 = d2 = d3 = z
    j0, j1, j2, j3 = j, min(j + 1, L - 1), min(j + 2, L - 1), min(j + 3, L - 1)
    h0, h1, h2, h3 = hs[0], hs[1], hs[2], hs[3]
    p0, p1, p2, p3 = ps[0], ps[1], ps[2], ps[3]
    for d in range(D):
        k0 = k[b, kh, j0, d]
        k1 = k[b, kh, j1, d]
        k2 = k[b, kh, j2, d]
        k3 = k[b, kh, j3, d]
        x = q[b, h0, p0, d]
        a0 += x * k0
        a1 += x * k1
        a2 += x * k2
        a3 += x * k3
        x = q[b, h1, p1, d]
        b0 += x * k0
        b1 += x * k1
        b2 += x * k2
        b3 += x * k3
        x = q[b, h2, p2, d]
        c0 += x * k0
        c1 += x * k1
        c2 += x * k2
        c3 += x * k3
        x = q[b, h3, p3, d]
        d0 += x * k0
        d1 += x * k1
        d2 += x * k2
        d3 += x * k3
    return (a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3)


@njit(fastmath=FAST, cache=True)
def _attend_block(q, k, v, L, mask, ms, has_mask, causal, scale, b, kh, r0, r1, scores, acc, out):
    """Rows r0..r1 (at most 4) of KV head ``kh``'s query rows in batch ``b``, over keys 0..L."""
    Hq, S, D = q.shape[1], q.shape[2], q.shape[3]
    Hkv, Dv = k.shape[1], v.shape[3]
    group = Hq // Hkv
    neg_inf = -np.inf
    zero = q.dtype.type(0.0)
    # the block's rows: head, position, last visible key + 1; missing rows repeat the last one
    hs = np.empty(ROWS, np.int64)
    ps = np.empty(ROWS, np.int64)
    ends = np.empty(ROWS, np.int64)
    m = np.empty(ROWS, q.dtype)
    denom = np.empty(ROWS, q.dtype)
    for t in range(ROWS):
        r = min(r0 + t, r1 - 1)
        hs[t] = kh * group + r // S
        ps[t] = r % S
        ends[t] = min(L, max(0, ps[t] + L - S + 1)) if causal else L
        m[t] = neg_inf
        denom[t] = zero
        for d in range(Dv):
            acc[t, d] = zero
    end = 0
    for t in range(ROWS):
        end = max(end, ends[t])
    for j0 in range(0, end, KEY_TILE):
        j1 = min(end, j0 + KEY_TILE)
        for j in range(j0, j1, 4):
            s = _scores4x4(q, k, b, hs, ps, kh, j, L, D)
            for t in range(ROWS):
                for u in range(4):
                    jj = j + u
                    if jj < j1:
                        val = s[4 * t + u] * scale
                        if jj >= ends[t]:
                            val = neg_inf
                        elif has_mask:
                            val += mask[b * ms[0] + hs[t] * ms[1] + ps[t] * ms[2] + jj * ms[3]]
                        scores[t, jj - j0] = val
        for t in range(ROWS):
            tile_max = neg_inf
            for jj in range(j1 - j0):
                if scores[t, jj] > tile_max:
                    tile_max = scores[t, jj]
            if tile_max > m[t]:
                if m[t] != neg_inf:
                    corr = softmax_exp(m[t] - tile_max)
                    denom[t] *= corr
                    for d in range(Dv):
                        acc[t, d] *= corr
                m[t] = tile_max
            mt = m[t]
            if mt == neg_inf:  # nothing visible yet
                for jj in range(j1 - j0):
                    scores[t, jj] = zero
                continue
            total = zero
            for jj in range(j1 - j0):
                p = softmax_exp(scores[t, jj] - mt)
                scores[t, jj] = p
                total += p
            denom[t] += total
        # weighted values: each value row is read once for the four rows
        for j in range(j0, j1):
            w0, w1, w2, w3 = scores[0, j - j0], scores[1, j - j0], scores[2, j - j0], scores[3, j - j0]
            if w0 == zero and w1 == zero and w2 == zero and w3 == zero:
                continue
            for d in range(Dv):
                x = v[b, kh, j, d]
                acc[0, d] += w0 * x
                acc[1, d] += w1 * x
                acc[2, d] += w2 * x
                acc[3, d] += w3 * x
    for t in range(r1 - r0):
        h, i = hs[t], ps[t]
        if denom[t] > zero or denom[t] != denom[t]:  # NaN propagates, as in the reference
            for d in range(Dv):
                out[b, h, i, d] = acc[t, d] / denom[t]
        else:  # no visible key
            for d in range(Dv):
                out[b, h, i, d] = zero


@njit(fastmath=FAST, cache=True)
def _attend_items(q, k, v, L, mask, ms, has_mask, causal, scale, lo, hi, out):
    """Work items lo..hi: (batch, KV head, block of ROWS query rows)."""
    Hq, S = q.shape[1], q.shape[2]
    Hkv, Dv = k.shape[1], v.shape[3]
    rows = (Hq // Hkv) * S
    blocks = (rows + ROWS - 1) // ROWS
    scores = np.empty((ROWS, KEY_TILE), q.dtype)
    acc = np.empty((ROWS, Dv), q.dtype)
    for item in range(lo, hi):
        blk = item % blocks
        kh = (item // blocks) % Hkv
        b = item // (blocks * Hkv)
        r0 = blk * ROWS
        _attend_block(q, k, v, L, mask, ms, has_mask, causal, scale, b, kh, r0, min(r0 + ROWS, rows), scores, acc,
                      out)


@njit(cache=True)
def data_offset(a, b):
    """Byte offset of ``a``'s first element from ``b``'s (one compiled call: cheaper than NumPy's
    ``__array_interface__`` or ``.ctypes`` from Python)."""
    return a.ctypes.data - b.ctypes.data


@njit(fastmath=FAST, cache=True)
def _decode_head(q, k, v, L, mask, ms, has_mask, scale, b, h, kh, scores, out):
    """One query row (``S = 1``: a decode step) of head ``h``: its ``L`` scores (a dot product per key,
    vectorized along ``D``), their maximum, the exponentials and their sum, then the weighted sum of
    the value rows (vectorized along ``Dv``). Two passes over the keys instead of the tiles' online
    rescaling: at one query row the scores fit in a small buffer and the tiles would leave 3 of
    their 4 rows (or half, with 2 heads per KV head) empty. The single query sees every key when
    causal (its position is the last)."""
    D, Dv = q.shape[3], v.shape[3]
    neg_inf = -np.inf
    zero = q.dtype.type(0.0)
    m = neg_inf
    nan = False
    for j in range(L):
        acc = zero
        for d in range(D):
            acc += q[b, h, 0, d] * k[b, kh, j, d]
        val = acc * scale
        if has_mask:
            val += mask[b * ms[0] + h * ms[1] + j * ms[3]]
        scores[j] = val
        if val != val:
            nan = True
        elif val > m:
            m = val
    for d in range(Dv):
        out[b, h, 0, d] = zero
    if nan or m == np.inf:  # a NaN score, or +inf (inf - inf): a NaN row, as the reference
        for d in range(Dv):
            out[b, h, 0, d] = np.nan
        return
    if m == neg_inf:  # no visible key: zeros, as the reference
        return
    total = zero
    for j in range(L):
        p = softmax_exp(scores[j] - m)
        scores[j] = p
        total += p
    for j in range(L):
        p = scores[j]
        if p != zero:
            for d in range(Dv):
                out[b, h, 0, d] += p * v[b, kh, j, d]
    inv = q.dtype.type(1.0) / total
    for d in range(Dv):
        out[b, h, 0, d] *= inv


@njit(parallel=prange_only(), fastmath=FAST, cache=True)
def attention_decode(q, k, v, L, mask, mask_strides, has_mask, scale, chunks, out):
    """``attention`` for one query position (``q [B, Hq, 1, D]``), one head per work item
    (``_decode_head``), in ``chunks`` contiguous runs of heads on the threads (1: this thread)."""
    B, Hq = q.shape[0], q.shape[1]
    group = Hq // k.shape[1]
    items = B * Hq
    chunks = max(1, min(chunks, items))
    if chunks == 1:
        scores = np.empty(max(L, 1), q.dtype)
        for it in range(items):
            _decode_head(q, k, v, L, mask, mask_strides, has_mask, scale, it // Hq, it % Hq, (it % Hq) // group,
                         scores, out)
        return
    for c in prange(chunks):
        scores = np.empty(max(L, 1), q.dtype)
        for it in range((items * c) // chunks, (items * (c + 1)) // chunks):
            _decode_head(q, k, v, L, mask, mask_strides, has_mask, scale, it // Hq, it % Hq, (it % Hq) // group,
                         scores, out)


@njit(parallel=prange_only(), fastmath=FAST, cache=True)
def attention(q, k, v, L, mask, mask_strides, has_mask, causal, scale, chunks, out):
    """``out[b, h, i] = softmax(q[b, h, i] . k[b, h // group]^T * scale + mask) @ v[b, h // group]``.

    ``q [B, Hq, S, D]``, ``k [B, Hkv, >=L, D]``, ``v [B, Hkv, >=L, Dv]``, ``out [B, Hq, S, Dv]``;
    the first ``L`` keys and values are read (a KV cache's buffer may hold more positions: passing
    the whole buffer keeps the arrays C-contiguous, which Numba compiles into vector code);
    ``mask`` is a flat additive mask (0 = attend, -inf = masked) addressed with element strides
    ``mask_strides`` over (b, h, i, j) (0 for broadcast dims); ``causal`` lets row ``i`` see keys
    ``j <= i + (L - S)``. A row that sees no key gets zeros. The work items are cut into
    ``chunks`` contiguous runs on the threads (1: on the calling thread).
    """
    B, Hq, S = q.shape[0], q.shape[1], q.shape[2]
    Hkv = k.shape[1]
    items = B * Hkv * (((Hq // Hkv) * S + ROWS - 1) // ROWS)
    chunks = max(1, min(chunks, items))
    if chunks == 1:
        _attend_items(q, k, v, L, mask, mask_strides, has_mask, causal, scale, 0, items, out)
        return
    for c in prange(chunks):
        _attend_items(q, k, v, L, mask, mask_strides, has_mask, causal, scale,
                      (items * c) // chunks, (items * (c + 1)) // chunks, out)


#: multiply-adds below which attention runs on the calling thread
SERIAL_WORK = 1 << 16


def attention_chunks(q_shape, k_shape, v_shape) -> int:
    """How many contiguous runs of work items to cut: a few per thread (for balance), or one
    when the whole product is too small to pay for starting threads."""
    B, Hq, S, D = q_shape
    if B * Hq * S * k_shape[2] * (D + v_shape[3]) < SERIAL_WORK:
        return 1
    if S == 1:  # attention_decode: one head per item, a contiguous run of heads per thread
        return num_threads()
    return 4 * num_threads()
