"""MoE dispatch kernels: the counting sort of (token, slot) pairs by expert, and the weighted
combine back to token order. (The permute is a row gather, ``index.gather_rows``; the expert
matmuls are ``linalg.grouped_gemm_nt``.)

The dispatch is the llama.cpp grouping: count each expert's pairs, prefix-sum the counts into
``offsets``, then place the pairs in flat order, so each expert's rows stay in increasing
``token * k + slot`` order (a stable sort) and nothing is padded.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .linalg import prange_only

FAST = {"reassoc", "contract", "nsz"}
#: elements of y below which the combine stays on the calling thread
PARALLEL_ELEMENTS = 1 << 16


@njit(cache=True)
def dispatch(ids, num_experts, order, offsets):
    """Counting sort of the flat expert ids ``ids [T*k]``: ``order [T*k]`` lists the flat pair
    indices grouped by expert, ``offsets [E+1]`` each expert's first row. Returns the position of
    the first id outside ``[0, E)`` (nothing written) or -1."""
    n = ids.size
    for p in range(n):
        if ids[p] < 0 or ids[p] >= num_experts:
            return p
    offsets[:] = 0
    for p in range(n):
        offsets[ids[p] + 1] += 1
    for e in range(num_experts):
        offsets[e + 1] += offsets[e]
    fill = offsets[:num_experts].copy()
    for p in range(n):
        e = ids[p]
        order[fill[e]] = p
        fill[e] += 1
    return -1


@njit(fastmath=FAST, cache=True)
def _combine_token(y, inv, weights, t, out):
    k = weights.shape[1]
    H = y.shape[1]
    for h in range(H):
        out[t, h] = 0.0
    for j in range(k):
        wt = weights[t, j]
        r = inv[t * k + j]
        for h in range(H):
            out[t, h] += wt * y[r, h]


@njit(parallel=prange_only(), fastmath=FAST, cache=True)
def combine(y, order, weights, parallel, out):
    """``out[t] = sum_j weights[t, j] * y[inv[t*k + j]]`` (slots in order) where ``inv`` inverts
    the permutation ``order``; ``y [T*k, H]``, ``weights [T, k]``, ``out [T, H]``, one dtype
    (f32 or f64). Returns -1, or the position of the first entry of ``order`` that makes it no
    permutation of ``0..T*k-1`` (nothing written). Tokens run on threads when ``parallel``."""
    T, k = weights.shape
    m = order.size
    inv = np.full(m, -1, np.int64)
    for p in range(m):
        o = order[p]
        if o < 0 or o >= m or inv[o] >= 0:
            return p
        inv[o] = p
    if parallel:
        for t in prange(T):
            _combine_token(y, inv, weights, t, out)
    else:
        for t in range(T):
            _combine_token(y, inv, weights, t, out)
    return -1
