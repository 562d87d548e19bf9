"""Reduction kernels: sum/mean over a run of axes, softmax/log_softmax, top-k. (max, min and
argmax run NumPy's own SIMD reductions, see ``sparsec.lower.cpu.reduce``.)

Every kernel sees its input as a flat C-contiguous array viewed as ``(outer, n, inner)``: ``n``
the reduced (or normalized, or sorted) extent, ``outer``/``inner`` the products of the dims
before/after it. Sizes and attributes are runtime arguments, so each kernel has one Numba
specialization per dtype whatever the rank, axis, keepdims or k. ``inner == 1`` (the last axis)
takes a contiguous row path; otherwise the inner dim is the vectorized one. Hot loops index row
*slices* from 0: Numba's negative-index handling of ``x[base + i]`` keeps LLVM from vectorizing
(sum over axis 0 of [64, 32000]: 1170 us -> 200 us).

f16/bf16 inputs are widened to float32 with NumPy by the callers (``sparsec.lower.cpu.reduce``)
and the results rounded back the way the references round.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numerics import f64_round_bf16, f64_round_f16, fast_exp, pairwise_sum, round_bf16, round_f16

_FM = {"reassoc", "contract"}  # reassociating sums lets LLVM vectorize them (f64 / f32 accumulators)


# ---------------------------------------------------------------------------------------------
# sum (accumulates in acc's dtype: float64 for floats, int64/uint64 for integers, which wraps
# to the same result as NumPy's fixed-width integer sum)


@njit(cache=True, nogil=True, fastmath=_FM)
def _sum_row(r, acc, o):
    s = acc.dtype.type(0)
    for i in range(r.shape[0]):
        s += acc.dtype.type(r[i])
    acc[o] = s


@njit(cache=True, nogil=True, fastmath=_FM)
def _sum_block(x, o, n, inner, acc):
    a = acc[o * inner:(o + 1) * inner]
    for j in range(inner):
        a[j] = 0
    for i in range(n):
        r = x[(o * n + i) * inner:(o * n + i + 1) * inner]
        for j in range(inner):
            a[j] += acc.dtype.type(r[j])


@njit(cache=True, nogil=True)
def sum_rows(x, outer, n, inner, acc):
    """``acc[o, j] = sum_i x[o, i, j]``."""
    if inner == 1:
        for o in range(outer):
            _sum_row(x[o * n:(o + 1) * n], acc, o)
    else:
        for o in range(outer):
            _sum_block(x, o, n, inner, acc)


@njit(cache=True, nogil=True, parallel=True)
def sum_rows_par(x, outer, n, inner, acc):
    if inner == 1:
        for o in prange(outer):
            _sum_row(x[o * n:(o + 1) * n], acc, o)
    else:
        for o in prange(outer):
            _sum_block(x, o, n, inner, acc)


# ---------------------------------------------------------------------------------------------
# softmax / log_softmax, computed in x's dtype (float32, or float64 for f64 inputs)


@njit(cache=True, nogil=True)
def _row_max(r):
    """max of a row with 8 independent lanes (a single compare-select chain does not vectorize;
    this is 4x faster). NaN may or may not win: softmax does not care, any NaN in a row makes its
    sum, hence every output, NaN, as in the reference."""
    n = r.shape[0]
    if n < 8:
        m = r[0]
        for i in range(1, n):
            v = r[i]
            m = v if v > m else m
        return m
    a0, a1, a2, a3, a4, a5, a6, a7 = r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
    nb = n - n % 8
    for i in range(8, nb, 8):
        b = r[i:i + 8]
        a0 = b[0] if b[0] > a0 else a0
        a1 = b[1] if b[1] > a1 else a1
        a2 = b[2] if b[2] > a2 else a2
        a3 = b[3] if b[3] > a3 else a3
        a4 = b[4] if b[4] > a4 else a4
        a5 = b[5] if b[5] > a5 else a5
        a6 = b[6] if b[6] > a6 else a6
        a7 = b[7] if b[7] > a7 else a7
    a0 = a1 if a1 > a0 else a0
    a2 = a3 if a3 > a2 else a2
    a4 = a5 if a5 > a4 else a4
    a6 = a7 if a7 > a6 else a6
    a0 = a2 if a2 > a0 else a0
    a4 = a6 if a6 > a4 else a4
    m = a4 if a4 > a0 else a0
    for i in range(nb, n):
        v = r[i]
        m = v if v > m else m
    return m


@njit(cache=True, nogil=True)
def _softmax_row(xr, orow, log):
    """One contiguous row (slices, so the loops index from 0 and vectorize)."""
    n = xr.shape[0]
    m = _row_max(xr)
    for i in range(n):  # exp values (log_softmax: scratch), summed in NumPy's pairwise order
        orow[i] = fast_exp(xr[i] - m)
    s = pairwise_sum(orow, 0, n)
    if log:
        ls = np.log(s)
        for i in range(n):
            orow[i] = (xr[i] - m) - ls
    else:
        for i in range(n):
            orow[i] = orow[i] / s


@njit(cache=True, nogil=True)
def _softmax_block(x, o, n, inner, out, log, m, s):
    """Softmax along the middle axis of one ``[n, inner]`` block, vectorized over ``inner``
    (sums run sequentially over the axis, NumPy's order for a strided reduction)."""
    ob = o * n * inner
    r = x[ob:ob + inner]
    for j in range(inner):
        m[j] = r[j]
        s[j] = 0
    for i in range(1, n):
        r = x[ob + i * inner:ob + (i + 1) * inner]
        for j in range(inner):
            v = r[j]
            if v > m[j] or v != v:
                m[j] = v
    for i in range(n):
        r = x[ob + i * inner:ob + (i + 1) * inner]
        w = out[ob + i * inner:ob + (i + 1) * inner]
        for j in range(inner):
            e = fast_exp(r[j] - m[j])
            s[j] += e
            w[j] = e
    if log:
        for j in range(inner):
            s[j] = np.log(s[j])
        for i in range(n):
            r = x[ob + i * inner:ob + (i + 1) * inner]
            w = out[ob + i * inner:ob + (i + 1) * inner]
            for j in range(inner):
                w[j] = (r[j] - m[j]) - s[j]
    else:
        for i in range(n):
            w = out[ob + i * inner:ob + (i + 1) * inner]
            for j in range(inner):
                w[j] = w[j] / s[j]


@njit(cache=True, nogil=True)
def softmax_rows(x, outer, n, inner, out, log):
    if n == 0:
        return
    if inner == 1:
        for o in range(outer):
            _softmax_row(x[o * n:(o + 1) * n], out[o * n:(o + 1) * n], log)
    else:
        m = np.empty(inner, x.dtype)
        s = np.empty(inner, x.dtype)
        for o in range(outer):
            _softmax_block(x, o, n, inner, out, log, m, s)


@njit(cache=True, nogil=True, parallel=True)
def softmax_rows_par(x, outer, n, inner, out, log):
    if n == 0:
        return
    if inner == 1:
        for o in prange(outer):
            _softmax_row(x[o * n:(o + 1) * n], out[o * n:(o + 1) * n], log)
    else:
        for o in prange(outer):
            m = np.empty(inner, x.dtype)
            s = np.empty(inner, x.dtype)
            _softmax_block(x, o, n, inner, out, log, m, s)


# ---------------------------------------------------------------------------------------------
# top-k: the reference's order is "descending value, NaN first, ties by lower index" (largest)
# or "ascending value, NaN last, ties by lower index" (smallest)


@njit(cache=True, nogil=True)
def _before(va, ia, vb, ib, largest):
    """Whether element (va at index ia) sorts before (vb at ib)."""
    if largest:
        if va != va:
            return vb == vb or ia < ib
        if vb != vb:
            return False
        if va > vb:
            return True
        if va < vb:
            return False
        return ia < ib
    if va != va:
        return vb != vb and ia < ib
    if vb != vb:
        return True
    if va < vb:
        return True
    if va > vb:
        return False
    return ia < ib


@njit(cache=True, nogil=True)
def _merge_sort(row, n, perm, tmp, largest):
    for i in range(n):
        perm[i] = i
    width = 1
    while width < n:
        lo = 0
        while lo < n:
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            a, b, t = lo, mid, lo
            while a < mid and b < hi:
                if _before(row[perm[b]], perm[b], row[perm[a]], perm[a], largest):
                    tmp[t] = perm[b]
                    b += 1
                else:
                    tmp[t] = perm[a]
                    a += 1
                t += 1
            while a < mid:
                tmp[t] = perm[a]
                a += 1
                t += 1
            while b < hi:
                tmp[t] = perm[b]
                b += 1
                t += 1
            lo += 2 * width
        for i in range(n):
            perm[i] = tmp[i]
        width *= 2


@njit(cache=True, nogil=True)
def _select(row, n, k, largest, bv, bi, perm, tmp):
    """The first ``k`` of ``row[:n]`` in the reference order into ``bv``/``bi``: a sorted
    insertion buffer for small k (one pass, O(n) in practice), a stable merge sort (``perm``,
    ``tmp``: n entries) for k > 32."""
    if k > 32:
        _merge_sort(row, n, perm, tmp, largest)
        for t in range(k):
            bi[t] = perm[t]
            bv[t] = row[perm[t]]
        return
    cnt = 0
    for i in range(n):
        v = row[i]
        if cnt < k:
            p = cnt
            cnt += 1
        elif k > 0 and _before(v, i, bv[k - 1], bi[k - 1], largest):
            p = k - 1
        else:
            continue
        while p > 0 and _before(v, i, bv[p - 1], bi[p - 1], largest):
            bv[p] = bv[p - 1]
            bi[p] = bi[p - 1]
            p -= 1
        bv[p] = v
        bi[p] = i


@njit(cache=True, nogil=True)
def topk_rows(x, outer, n, inner, k, largest, vals, idx):
    """The first ``k`` of each (outer, :, inner) row in the reference order: a sorted insertion
    buffer for small k (one pass, O(n) in practice), a stable merge sort otherwise."""
    row = np.empty(n, x.dtype)
    bv = np.empty(max(k, 1), x.dtype)
    bi = np.empty(max(k, 1), np.int64)
    big = k > 32
    perm = np.empty(n if big else 0, np.int64)
    tmp = np.empty(n if big else 0, np.int64)
    for o in range(outer):
        for j in range(inner):
            base = o * n * inner + j
            for i in range(n):
                row[i] = x[base + i * inner]
            _select(row, n, k, largest, bv, bi, perm, tmp)
            ob = o * k * inner + j
            for t in range(k):
                vals[ob + t * inner] = bv[t]
                idx[ob + t * inner] = bi[t]


# ---------------------------------------------------------------------------------------------
# softmax -> top-k (-> renormalize): the MoE router in one pass per row


@njit(cache=True, nogil=True)
def _round_to(v, rnd):
    """float32 ``v`` rounded to the output dtype's precision (0: float32/64 as is, 1: f16, 2: bf16)."""
    if rnd == 1:
        return round_f16(v)
    if rnd == 2:
        return round_bf16(v)
    return v


@njit(cache=True, nogil=True)
def softmax_topk_rows(x, rows, n, k, normalize, rnd, vals, idx):
    """``sc.softmax_topk`` on ``rows`` contiguous rows of ``n``: each row's softmax
    (``_softmax_row``, as ``softmax_rows``; rounded to f16/bf16 when ``rnd``, as that kernel's
    caller rounds), the first ``k`` probabilities in ``sc.topk``'s order (``_select``), then with
    ``normalize`` each divided by their sum, summed as ``sc.sum`` (in float64, NumPy's pairwise
    order, rounded once to the dtype) and divided in the dtype (f16/bf16: in float32, rounded)."""
    p = np.empty(n, x.dtype)
    bv = np.empty(k, x.dtype)
    bi = np.empty(k, np.int64)
    s64 = np.empty(k, np.float64)
    perm = np.empty(n if k > 32 else 0, np.int64)
    tmp = np.empty(n if k > 32 else 0, np.int64)
    for r in range(rows):
        _softmax_row(x[r * n:(r + 1) * n], p, False)
        if rnd:
            for i in range(n):
                p[i] = _round_to(p[i], rnd)
        _select(p, n, k, True, bv, bi, perm, tmp)
        if normalize:
            for t in range(k):
                s64[t] = np.float64(bv[t])
            tot = pairwise_sum(s64, 0, k)
            if rnd == 1:
                d = f64_round_f16(tot)
            elif rnd == 2:
                d = f64_round_bf16(tot)
            else:
                d = x.dtype.type(tot)
            for t in range(k):
                bv[t] = _round_to(bv[t] / d, rnd)
        for t in range(k):
            vals[r * k + t] = bv[t]
            idx[r * k + t] = bi[t]
