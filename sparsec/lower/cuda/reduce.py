"""CUDA lowering rules: sum, mean, max, min, argmax, softmax, log_softmax, topk, cumsum.

The canonical ``(outer, n, inner)`` passes are the CPU rules' (``sparsec.lower.cpu.reduce``:
statically-1 dims dropped, adjacent reduced/kept dims merged; axes separated by kept ones take
one pass each, through a float64/int64 temporary). Per call, few long rows go to the one-block-
per-row kernels and many rows to the one-thread-per-row kernels (``runtime.cuda.reduce``).
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import Operation, TensorType
from ...ops._util import norm_axes
from ...runtime.cuda import device as D
from ...runtime.cuda import half as H
from ...runtime.cuda import launch
from ...runtime.cuda import reduce as rt
from ...runtime.cuda.types import arr, scalar
from ..cpu.reduce import _axis_split, _passes, _prod
from . import CudaKernel, LoweringError, cuda_lowering

#: rows at most for the block kernels, and the row length from which they are used
BLOCK_MAX_ROWS = 1 << 14
BLOCK_MIN_N = 64


def _x(op: Operation) -> TensorType:
    t = op.operands[0].type
    if not isinstance(t, TensorType):
        raise LoweringError(f"{op.describe()}: operand is {t}, not a tensor")
    return t


def _v(k, load_dt=None, store_dt=None):
    """Kernel ``k`` reading ``load_dt`` / writing ``store_dt`` elements (IR dtype names; f16/bf16
    get the 16-bit variant, ``runtime.cuda.half.variant``)."""
    return H.variant(k, load_dt, store_dt)


def _use_block(rows: int, n: int) -> bool:
    return n >= BLOCK_MIN_N and rows <= BLOCK_MAX_ROWS


def _grid_rows(rows: int) -> tuple[int, int]:
    return max(1, min(rows, launch.max_blocks())), launch.block_size(1 << 30, rt.BLOCK)


@cuda_lowering("sc.sum", "sc.mean", "sc.max", "sc.min")
def lower_reduce(op: Operation) -> CudaKernel:
    from numba import types
    x = _x(op)
    out_t = op.results[0].type
    axes = op.attrs["axes"]
    reduced = set(norm_axes(axes, x.rank)) if axes else set(range(x.rank))
    passes = _passes(x.shape, reduced)
    count_dims = tuple(sorted(reduced))
    name = op.name[3:]
    kind = {"sum": rt.SUM, "mean": rt.MEAN, "max": rt.MAX, "min": rt.MIN}[name]
    is_f = x.dtype.is_float
    acc = np.dtype(np.float64) if is_f else np.dtype(np.uint64 if x.dtype.name == "ui8" else np.int64)
    if x.dtype.is_bool:
        raise LoweringError(f"{op.describe()}: no CUDA reduction of booleans (cast first)")
    if kind in (rt.SUM, rt.MEAN):
        init = acc.type(0)
    elif is_f:
        init = np.float64(-np.inf if kind == rt.MAX else np.inf)
    else:
        info = np.iinfo(acc)
        init = acc.type(info.min if kind == rt.MAX else info.max)

    def fn(xa, out):
        s = xa.shape
        steps = passes or [((), tuple(range(len(s))), ())] if not passes else passes
        cur = xa.reshape(xa.size)
        count = np.float64(_prod(s, count_dims))
        if not passes:  # nothing to reduce (dims of size 1): a cast, as one pass of n = 1
            steps = [(tuple(range(len(s))), (), ())]
        for p, (outer_d, red_d, inner_d) in enumerate(steps):
            o, n, i = _prod(s, outer_d), _prod(s, red_d), _prod(s, inner_d)
            last = p == len(steps) - 1
            res = out.reshape(out.size) if last else D.empty((o * i,), acc)
            k = kind if last or kind != rt.MEAN else rt.SUM
            if o * i == 0:
                cur = res
                continue
            ldt, sdt = (x.dtype.name if p == 0 else None), (out_t.dtype.name if last else None)
            if is_f and _use_block(o * i, n):
                _v(rt.reduce_block_f, ldt, sdt)[_grid_rows(o * i)](cur, np.int64(o), np.int64(n), np.int64(i), res, np.int64(k),
                                                     count)
            else:
                _v(rt.reduce_serial, ldt, sdt)[launch.grid_1d(o * i)](cur, np.int64(o), np.int64(n), np.int64(i), res,
                                                        np.int64(k), init, count)
            cur = res
    i64 = types.int64
    specs = []
    for src, ldt in [(x.dtype.np, x.dtype.name)] + ([(acc, None)] if len(passes) > 1 else []):
        for dst, sdt in ([(out_t.dtype.np, out_t.dtype.name), (acc, None)] if len(passes) > 1
                         else [(out_t.dtype.np, out_t.dtype.name)]):
            specs.append(_v(rt.reduce_serial, ldt, sdt).spec((arr(src), i64, i64, i64, arr(dst), i64, scalar(acc),
                                                              types.float64)))
            if is_f:
                specs.append(_v(rt.reduce_block_f, ldt, sdt).spec((arr(src), i64, i64, i64, arr(dst), i64,
                                                                   types.float64)))
    return CudaKernel(fn, f"{name}_{x.dtype.name}", kernels=tuple(specs), info={"passes": len(passes)})


@cuda_lowering("sc.argmax")
def lower_argmax(op: Operation) -> CudaKernel:
    from numba import types
    x = _x(op)
    od, ad, idims = _axis_split(x, op.attrs["axis"])
    kern = _v(rt.argmax_block, x.dtype.name)

    def fn(xa, out):
        s = xa.shape
        o, n, i = _prod(s, od), s[ad[0]], _prod(s, idims)
        if o * i == 0:
            return
        kern[_grid_rows(o * i)](xa.reshape(xa.size), np.int64(o), np.int64(n), np.int64(i),
                                           out.reshape(out.size))
    i64 = types.int64
    spec = kern.spec((arr(x.dtype.np), i64, i64, i64, arr(np.int64)))
    return CudaKernel(fn, f"argmax_{x.dtype.name}", kernels=(spec,))


@cuda_lowering("sc.softmax", "sc.log_softmax")
def lower_softmax(op: Operation) -> CudaKernel:
    from numba import types
    x = _x(op)
    if not x.dtype.is_float:
        raise LoweringError(f"{op.describe()}: softmax of {x.pretty()} (floats only)")
    od, ad, idims = _axis_split(x, op.attrs["axis"])
    log = op.name == "sc.log_softmax"
    kb, ks = _v(rt.softmax_block, x.dtype.name, x.dtype.name), _v(rt.softmax_serial, x.dtype.name, x.dtype.name)

    def fn(xa, out):
        s = xa.shape
        o, n, i = _prod(s, od), s[ad[0]], _prod(s, idims)
        if o * i * n == 0:
            return
        args = (xa.reshape(xa.size), np.int64(o), np.int64(n), np.int64(i), out.reshape(out.size), log)
        if _use_block(o * i, n):
            kb[_grid_rows(o * i)](*args)
        else:
            ks[launch.grid_1d(o * i)](*args)
    i64 = types.int64
    sig = (arr(x.dtype.np), i64, i64, i64, arr(x.dtype.np), types.boolean)
    return CudaKernel(fn, f"{op.name[3:]}_{x.dtype.name}",
                      kernels=(kb.spec(sig), ks.spec(sig)))


@cuda_lowering("sc.topk")
def lower_topk(op: Operation) -> CudaKernel:
    from numba import types
    x = _x(op)
    od, ad, idims = _axis_split(x, op.attrs["axis"])
    kk = int(op.attrs["k"])
    largest = bool(op.attrs["largest"])
    kern = _v(rt.topk_serial, x.dtype.name, x.dtype.name)

    def fn(xa, vals, idx):
        s = xa.shape
        o, n, i = _prod(s, od), s[ad[0]], _prod(s, idims)
        if o * i * kk == 0:
            return
        kern[launch.grid_1d(o * i)](xa.reshape(xa.size), np.int64(o), np.int64(n), np.int64(i),
                                              np.int64(kk), largest, vals.reshape(vals.size), idx.reshape(idx.size))
    i64 = types.int64
    spec = kern.spec((arr(x.dtype.np), i64, i64, i64, i64, types.boolean, arr(x.dtype.np), arr(np.int64)))
    return CudaKernel(fn, f"topk_{x.dtype.name}", kernels=(spec,))


@cuda_lowering("sc.cumsum")
def lower_cumsum(op: Operation) -> CudaKernel:
    """Prefix sums along one axis: a thread per column, in order (exactly the reference's sums)."""
    from numba import types
    x = _x(op)
    if x.dtype.is_bool:
        raise LoweringError(f"{op.describe()}: no CUDA sc.cumsum of booleans")
    od, ad, idims = _axis_split(x, op.attrs["axis"])
    exclusive, reverse = bool(op.attrs["exclusive"]), bool(op.attrs["reverse"])
    init = np.float64(0) if x.dtype.is_float else x.dtype.np.type(0)
    kern = _v(rt.cumsum_cols, x.dtype.name, x.dtype.name)

    def fn(xa, out):
        s = xa.shape
        o, n, i = _prod(s, od), s[ad[0]], _prod(s, idims)
        if o * i * n == 0:
            return
        kern[launch.grid_1d(o * i)](xa.reshape(xa.size), out.reshape(out.size), np.int64(o), np.int64(n),
                                              np.int64(i), init, exclusive, reverse)
    i64 = types.int64
    spec = kern.spec((arr(x.dtype.np), arr(x.dtype.np), i64, i64, i64, scalar(np.dtype(type(init))),
                                types.boolean, types.boolean))
    return CudaKernel(fn, f"cumsum_{x.dtype.name}", kernels=(spec,))


_ = math
