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
def leading_positions_of(a, buf):
    """Whether ``a [B, H, L, D]`` is ``buf[:, :, :L]`` of a C-contiguous ``buf`` of the same item
    size: the same first byte, ``buf``'s strides, and ``L`` within ``buf`` (one compiled call:
    each NumPy attribute read from Python cost about 0.5 us with cold caches in a decode step)."""
    n = buf.itemsize
    c_strides = (buf.shape[1] * buf.shape[2] * buf.shape[3] * n, buf.shape[2] * buf.shape[3] * n,
                 buf.shape[3] * n, n)
    return (a.itemsize == n and buf.strides == c_strides and a.strides == buf.strides
            and a.shape[0] == buf.shape[0] and a.shape[1] == buf.shape[1] and a.shape[3] == buf.shape[3]
            and a.shape[2] <= buf.shape[2] and a.ctypes.data == buf.ctypes.data)


@njit(fastmath=FAST, cache=True)
def _decode_scores(q, k, L, mask, ms, has_mask, scale, b, h, kh, srow):
    """Head ``h``'s ``L`` scores into ``srow`` (a dot product per key, vectorized along ``D``);
    returns the softmax's state: 0 normal (``srow`` then holds the exponentials, and their sum is
    returned second), 1 a NaN row (a NaN score, or +inf), 2 no visible key (all -inf)."""
    D = q.shape[3]
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
        srow[j] = val
        if val != val:
            nan = True
        elif val > m:
            m = val
    if nan or m == np.inf:  # a NaN score, or +inf (inf - inf): a NaN row, as the reference
        return 1, zero
    if m == neg_inf:  # no visible key: zeros, as the reference
        return 2, zero
    total = zero
    for j in range(L):
        p = softmax_exp(srow[j] - m)
        srow[j] = p
        total += p
    return 0, total


@njit(fastmath=FAST, cache=True)
def _add_value_row(v, b, kh, j, h, p, out):
    """``out[b, h, 0] += p * v[b, kh, j]``; nothing for a weight of 0 (a masked key)."""
    if p != 0:
        for d in range(v.shape[3]):
            out[b, h, 0, d] += p * v[b, kh, j, d]


@njit(fastmath=FAST, cache=True)
def _decode_values(v, L, b, kh, h, srow, out):
    """``out[b, h, 0] += srow @ v[b, kh, :L]``, four keys per pass over the output row where their
    four weights are non-zero (Numba cannot keep the row in registers, as it cannot prove
    ``out`` and ``v`` apart: one load and store of the row per key made that chain the
    bottleneck), else one key (a masked key adds nothing)."""
    zero = srow.dtype.type(0.0)
    j = 0
    while j < L:
        if j + 4 <= L and srow[j] != zero and srow[j + 1] != zero and srow[j + 2] != zero and srow[j + 3] != zero:
            p0, p1, p2, p3 = srow[j], srow[j + 1], srow[j + 2], srow[j + 3]
            for d in range(v.shape[3]):
                out[b, h, 0, d] += (p0 * v[b, kh, j, d] + p1 * v[b, kh, j + 1, d]) \
                    + (p2 * v[b, kh, j + 2, d] + p3 * v[b, kh, j + 3, d])
            j += 4
        else:
            _add_value_row(v, b, kh, j, h, srow[j], out)
            j += 1


@njit(fastmath=FAST, cache=True)
def _decode_values2(v, L, b, kh, h0, h1, s0, s1, out):
    """``_decode_values`` for two heads of one KV head in one pass over the value rows (a GQA
    pair: each value row is read once for both)."""
    zero = s0.dtype.type(0.0)
    j = 0
    while j < L:
        if j + 4 <= L and s0[j] != zero and s0[j + 1] != zero and s0[j + 2] != zero and s0[j + 3] != zero \
                and s1[j] != zero and s1[j + 1] != zero and s1[j + 2] != zero and s1[j + 3] != zero:
            p0, p1, p2, p3 = s0[j], s0[j + 1], s0[j + 2], s0[j + 3]
            r0, r1, r2, r3 = s1[j], s1[j + 1], s1[j + 2], s1[j + 3]
            for d in range(v.shape[3]):
                x0, x1, x2, x3 = v[b, kh, j, d], v[b, kh, j + 1, d], v[b, kh, j + 2, d], v[b, kh, j + 3, d]
                out[b, h0, 0, d] += (p0 * x0 + p1 * x1) + (p2 * x2 + p3 * x3)
                out[b, h1, 0, d] += (r0 * x0 + r1 * x1) + (r2 * x2 + r3 * x3)
            j += 4
        else:
            _add_value_row(v, b, kh, j, h0, s0[j], out)
            _add_value_row(v, b, kh, j, h1, s1[j], out)
            j += 1


@njit(fastmath=FAST, cache=True)
def _decode_kv_head(q, k, v, L, mask, ms, has_mask, scale, b, kh, scratch, out):
    """One query row (``S = 1``: a decode step) of the ``group`` heads sharing KV head ``kh``: each
    head's scores, their maximum, exponentials and sum (``_decode_scores``), then the weighted
    value rows, two heads per pass where both are ordinary rows (``_decode_values2``). Two passes
    over the keys instead of the tiles' online rescaling: at one query row the scores fit in a
    small buffer. The single query sees every key when causal (its position is the last).
    ``scratch [group, L + 2]``: each head's scores, then their sum and the row's state."""
    Dv = v.shape[3]
    group = q.shape[1] // k.shape[1]
    h0 = kh * group
    zero = q.dtype.type(0.0)
    n = scratch.shape[1]
    for g in range(group):
        h = h0 + g
        st, tot = _decode_scores(q, k, L, mask, ms, has_mask, scale, b, h, kh, scratch[g])
        scratch[g, n - 2] = tot
        scratch[g, n - 1] = st
        for d in range(Dv):
            out[b, h, 0, d] = np.nan if st == 1 else zero
    g = 0
    while g < group:
        if g + 1 < group and scratch[g, n - 1] == 0 and scratch[g + 1, n - 1] == 0:
            _decode_values2(v, L, b, kh, h0 + g, h0 + g + 1, scratch[g], scratch[g + 1], out)
            g += 2
        else:
            if scratch[g, n - 1] == 0:
                _decode_values(v, L, b, kh, h0 + g, scratch[g], out)
            g += 1
    for g in range(group):
        if scratch[g, n - 1] == 0:
            inv = q.dtype.type(1.0) / scratch[g, n - 2]
            for d in range(Dv):
                out[b, h0 + g, 0, d] *= inv


@njit(fastmath=FAST, cache=True)
def _decode_items(q, k, v, L, mask, ms, has_mask, scale, per_head, lo, hi, out):
    """Work items lo..hi: a KV head's group of query heads each (``_decode_kv_head``), or with
    ``per_head`` one query head each (fewer KV heads than threads: multi-query attention)."""
    Hq, Hkv = q.shape[1], k.shape[1]
    group = Hq // Hkv
    scratch = np.empty((1 if per_head else group, L + 2), q.dtype)
    zero = q.dtype.type(0.0)
    for it in range(lo, hi):
        if not per_head:
            _decode_kv_head(q, k, v, L, mask, ms, has_mask, scale, it // Hkv, it % Hkv, scratch, out)
            continue
        b, h = it // Hq, it % Hq
        st, tot = _decode_scores(q, k, L, mask, ms, has_mask, scale, b, h, h // group, scratch[0])
        for d in range(v.shape[3]):
            out[b, h, 0, d] = np.nan if st == 1 else zero
        if st == 0:
            _decode_values(v, L, b, h // group, h, scratch[0], out)
            inv = q.dtype.type(1.0) / tot
            for d in range(v.shape[3]):
                out[b, h, 0, d] *= inv


@njit(parallel=prange_only(), fastmath=FAST, cache=True)
def attention_decode(q, k, v, L, mask, mask_strides, has_mask, scale, chunks, out):
    """``attention`` for one query position (``q [B, Hq, 1, D]``): work items of one KV head's
    group of query heads (``_decode_kv_head``; of one query head when there are fewer KV heads
    than ``chunks``), in ``chunks`` contiguous runs on the threads (1: this thread)."""
    B, Hq, Hkv = q.shape[0], q.shape[1], k.shape[1]
    per_head = B * Hkv < chunks and Hq > Hkv
    items = B * Hq if per_head else B * Hkv
    chunks = max(1, min(chunks, items))
    if chunks == 1:
        _decode_items(q, k, v, L, mask, mask_strides, has_mask, scale, per_head, 0, items, out)
        return
    for c in prange(chunks):
        _decode_items(q, k, v, L, mask, mask_strides, has_mask, scale, per_head, (items * c) // chunks,
                      (items * (c + 1)) // chunks, out)


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
    if S == 1:  # attention_decode: a KV head's query heads per item, a contiguous run per thread
        return num_threads()
    return 4 * num_threads()
