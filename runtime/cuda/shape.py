"""CUDA data-movement kernels: one strided copy serves transpose, slice, broadcast_to, concat,
stack and the functional KV-cache write. Elements move as unsigned integers of their size, so
one specialization per item size serves every dtype.

``strided_copy`` walks the destination elements of an up-to-``MAX_RANK``-d index space
(consecutive threads: consecutive elements of the last dim, so the side that is contiguous
along it is coalesced) and computes both offsets from per-dim strides (0 = broadcast)."""
from __future__ import annotations

import numpy as np
from numba import cuda

from .launch import grid_1d, kernel
from .types import arr

MAX_RANK = 6
UINT_OF_SIZE = {1: np.dtype(np.uint8), 2: np.dtype(np.uint16), 4: np.dtype(np.uint32), 8: np.dtype(np.uint64)}


@kernel
def strided_copy(src, dst, total, shape, sstr, soff, dstr, doff):
    start = cuda.grid(1)
    for e in range(start, total, cuda.gridsize(1)):
        r = e
        so = soff
        do = doff
        for d in range(5, -1, -1):
            n = shape[d]
            i = r % n
            r = r // n
            so += i * sstr[d]
            do += i * dstr[d]
        dst[do] = src[so]


@kernel
def kv_write_4d(cache, new, n0):
    """``cache[b, h, n0 + j, d] = new[b, h, j, d]`` (cache may be a strided view)."""
    B, H, S, D = new.shape
    total = B * H * S * D
    start = cuda.grid(1)
    for e in range(start, total, cuda.gridsize(1)):
        d = e % D
        r = e // D
        j = r % S
        r = r // S
        h = r % H
        b = r // H
        cache[b, h, n0 + j, d] = new[b, h, j, d]


def sig_strided_copy(itemsize: int):
    from numba import types
    u = UINT_OF_SIZE[itemsize]
    t6 = types.UniTuple(types.int64, MAX_RANK)
    return (arr(u), arr(u), types.int64, t6, t6, types.int64, t6, types.int64)


def sig_kv_write(dtype, cache_layout: str = "A"):
    from numba import types
    return (arr(dtype, 4, cache_layout), arr(dtype, 4, "C"), types.int64)


def c_strides(shape) -> list[int]:
    """Element strides of a C-contiguous array of ``shape``."""
    out, s = [], 1
    for d in reversed(shape):
        out.append(s)
        s *= int(d)
    return out[::-1]


def as_uint(a):
    """A flat view of contiguous device array ``a`` as unsigned integers of its item size."""
    flat = a.reshape(a.size)
    return flat.view(UINT_OF_SIZE[np.dtype(a.dtype).itemsize])


def copy(src, dst, shape, sstr, soff, dstr, doff) -> None:
    """Copy the index space ``shape`` from flat ``src`` (strides ``sstr``, offset ``soff``) to
    flat ``dst`` (``dstr``, ``doff``); all in elements. ``src``/``dst`` are contiguous device
    arrays of the same item size."""
    shape = [int(d) for d in shape]
    total = 1
    for d in shape:
        total *= d
    if total == 0:
        return
    if len(shape) > MAX_RANK:
        raise ValueError(f"strided copy of rank {len(shape)} > {MAX_RANK}")
    if not len(sstr) == len(dstr) == len(shape):
        raise ValueError(f"strided copy: {len(shape)} dims, {len(sstr)} source and {len(dstr)} destination strides")
    pad = MAX_RANK - len(shape)
    shp = tuple([1] * pad + shape)
    ss = tuple([0] * pad + [int(s) for s in sstr])
    ds = tuple([0] * pad + [int(s) for s in dstr])
    strided_copy[grid_1d(total)](as_uint(src), as_uint(dst), np.int64(total), shp, ss, np.int64(soff), ds,
                                 np.int64(doff))


def _spec_for(dtype):
    """The ``PtxSpec`` of ``strided_copy`` for elements of ``dtype``."""
    return strided_copy.spec(sig_strided_copy(np.dtype(dtype).itemsize))


def broadcast_strides(shape, to_shape) -> list[int]:
    """Element strides reading a C-contiguous array of ``shape`` broadcast to ``to_shape``."""
    shape, to_shape = tuple(shape), tuple(to_shape)
    lead = len(to_shape) - len(shape)
    st = c_strides(shape)
    return [0] * lead + [0 if shape[i] == 1 and to_shape[lead + i] != 1 else st[i] for i in range(len(shape))]


def broadcast_copy(src, to_shape):
    """A new contiguous device array: ``src`` broadcast to ``to_shape`` (as ``np.broadcast_to``)."""
    from . import device as D
    out = D.empty(to_shape, src.dtype)
    copy(src, out, to_shape, broadcast_strides(src.shape, to_shape), 0, c_strides(to_shape), 0)
    return out
