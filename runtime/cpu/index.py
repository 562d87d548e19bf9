"""Gather and scatter kernels: row gathers (take, embedding, MoE permute), element gathers and
scatters along an axis, scatter-add / index-add, one-hot.

Moving data does no arithmetic, so the gathers, scatters and one-hot work on *bytes*: the
caller views its arrays as ``uint8`` with the element's bytes as the last axis. One compiled
specialization then serves every dtype (bf16 and bool included). The adding kernels are typed
(f32, f64 or i64; the caller widens f16/bf16 to f32 and integers to i64, where adds wrap the same).

Every index is checked before anything is read with it: a kernel returns the position of the
first index outside ``[0, n)``, or -1, and the caller raises an error naming the op.
"""
from __future__ import annotations

from numba import njit, prange

from .linalg import prange_only

#: bytes moved below which a row gather stays on the calling thread (starting threads costs more)
PARALLEL_BYTES = 1 << 18


@njit(cache=True)
def first_out_of_range(idx, n):
    """The position of the first ``idx[p]`` outside ``[0, n)``, or -1."""
    for p in range(idx.size):
        if idx[p] < 0 or idx[p] >= n:
            return p
    return -1


@njit(cache=True)
def _copy_row(src, o, row, out, j):
    # an explicit loop: LLVM turns it into a memcpy (a slice assignment in Numba is ~10x slower)
    for c in range(src.shape[2]):
        out[o, j, c] = src[o, row, c]


@njit(parallel=prange_only(), cache=True)
def gather_rows(src, idx, divisor, parallel, out):
    """``out[o, j] = src[o, idx[j] // divisor]`` on byte rows: ``src [outer, n, row_bytes]``,
    ``out [outer, m, row_bytes]``. ``idx`` must lie in ``[0, n * divisor)``; returns the first
    bad position (nothing copied) or -1."""
    outer, n = src.shape[0], src.shape[1]
    m = idx.size
    bad = first_out_of_range(idx, n * divisor)
    if bad >= 0:
        return bad
    if parallel:
        for oj in prange(outer * m):
            _copy_row(src, oj // m, idx[oj % m] // divisor, out, oj % m)
    else:
        for o in range(outer):
            for j in range(m):
                _copy_row(src, o, idx[j] // divisor, out, j)
    return -1


@njit(cache=True)
def gather_along(src, idx, out):
    """``out[o, j, i] = src[o, idx[o, j, i], i]`` on element bytes: ``src [outer, n, inner, s]``,
    ``idx [outer, m, inner]``, ``out [outer, m, inner, s]``. Returns the first bad flat position or -1."""
    n = src.shape[1]
    bad = first_out_of_range(idx.reshape(-1), n)
    if bad >= 0:
        return bad
    outer, m, inner = idx.shape
    for o in range(outer):
        for j in range(m):
            for i in range(inner):
                t = idx[o, j, i]
                for c in range(src.shape[3]):
                    out[o, j, i, c] = src[o, t, i, c]
    return -1


@njit(cache=True)
def scatter_along(out, idx, upd):
    """``out[o, idx[o, j, i], i] = upd[o, j, i]`` in row-major order (the last write wins) on
    element bytes: ``out [outer, n, inner, s]`` (already holding the base), ``idx [outer, m, inner]``,
    ``upd [outer, m, inner, s]``. Returns the first bad flat position or -1."""
    n = out.shape[1]
    bad = first_out_of_range(idx.reshape(-1), n)
    if bad >= 0:
        return bad
    outer, m, inner = idx.shape
    for o in range(outer):
        for j in range(m):
            for i in range(inner):
                t = idx[o, j, i]
                for c in range(out.shape[3]):
                    out[o, t, i, c] = upd[o, j, i, c]
    return -1


@njit(cache=True)
def scatter_add_along(acc, idx, upd):
    """``acc[o, idx[o, j, i], i] += upd[o, j, i]`` in row-major order; ``acc [outer, n, inner]``."""
    n = acc.shape[1]
    bad = first_out_of_range(idx.reshape(-1), n)
    if bad >= 0:
        return bad
    outer, m, inner = idx.shape
    for o in range(outer):
        for j in range(m):
            for i in range(inner):
                acc[o, idx[o, j, i], i] += upd[o, j, i]
    return -1


@njit(cache=True)
def index_add_rows(acc, index, src):
    """``acc[o, index[j], :] += src[o, j, :]`` for j in order; ``acc [outer, n, inner]``,
    ``src [outer, m, inner]``, ``index [m]``."""
    n = acc.shape[1]
    bad = first_out_of_range(index, n)
    if bad >= 0:
        return bad
    outer, m, inner = src.shape
    for o in range(outer):
        for j in range(m):
            t = index[j]
            for i in range(inner):
                acc[o, t, i] += src[o, j, i]
    return -1


@njit(cache=True)
def one_hot(idx, one, out):
    """``out[p, d] = one if idx[p] == d else 0`` on element bytes: ``out [M, depth, s]``, ``one`` the
    bytes of 1 in the output dtype. Returns the first bad position or -1."""
    depth = out.shape[1]
    bad = first_out_of_range(idx, depth)
    if bad >= 0:
        return bad
    s = out.shape[2]
    for p in range(idx.size):
        for d in range(depth):
            for c in range(s):
                out[p, d, c] = 0
        for c in range(s):
            out[p, idx[p], c] = one[c]
    return -1
