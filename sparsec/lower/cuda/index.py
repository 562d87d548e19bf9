"""CUDA lowering rules: take, take_along_axis, embedding, scatter, scatter_add, index_add,
one_hot (kernels in ``runtime.cuda.index``). All are checked kernels: an index out of range
raises ``KernelError`` at the end of the call naming the op, the index and the axis (as the
reference's ``IndexError``).

f16/bf16: gathers and ``scatter`` move elements as unsigned integers of their size (bit exact);
``scatter_add`` and ``index_add`` accumulate in f32 scratch and round once (``_Widened``, as the
reference); ``one_hot`` stores 1.0 / 0.0 in the 16-bit format."""
from __future__ import annotations

import math

import numpy as np

from ...ir.types import QuantType
from ...runtime.cuda import device as D
from ...runtime.cuda import half as H
from ...runtime.cuda import index as X
from ...runtime.cuda import launch
from ...runtime.cuda.shape import UINT_OF_SIZE, as_uint, broadcast_copy, c_strides, copy
from ...runtime.cuda.types import arr
from . import CudaKernel, LoweringError, cuda_lowering


def _rows3(shape, axis):
    shape = tuple(shape)
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _err_message(what):
    def error(code, value):
        return f"index {value} is out of range for {what}"
    return error


def _i64():
    from numba import types
    return types.int64


class _Widened:
    """scatter_add / index_add of f16/bf16, as the reference: ``base`` and the updates widened to
    f32 scratch (kept per size, outside the arena), the f32 kernel adds in index order, the result
    rounded once into ``out``."""

    def __init__(self, dt: str):
        self.widen, self.narrow = H.variant(X.convert, dt, None), H.variant(X.convert, None, dt)
        self.dt = dt
        self.cache: dict = {}

    def scratch(self, key, n):
        a = self.cache.get((key, n))
        if a is None:
            self.cache = {k: v for k, v in self.cache.items() if k[0] != key}
            a = self.cache[(key, n)] = D.empty((max(n, 1),), np.float32)
        return a

    def __call__(self, base, updates, out, add):
        """``add(base_f32, updates_f32)`` launches the f32 kernel on the widened copies."""
        tb, tu = self.scratch("b", base.size), self.scratch("u", updates.size)
        launch.launch_1d(self.widen, base.size, base.reshape(base.size), tb[:base.size])
        launch.launch_1d(self.widen, updates.size, updates.reshape(updates.size), tu[:updates.size])
        add(tb[:base.size], tu[:updates.size])
        launch.launch_1d(self.narrow, out.size, tb[:out.size], out.reshape(out.size))

    def specs(self, np_dt):
        f32 = np.dtype(np.float32)
        return (self.widen.spec((arr(np_dt), arr(f32))), self.narrow.spec((arr(f32), arr(np_dt))))


def _copy_all(src, dst):
    copy(src, dst, (src.size,), (1,), 0, (1,), 0)


def _gather(x_t, i_t, axis: int, what: str, ids_first: bool = False) -> CudaKernel:
    """``gather_rows`` of ``x`` along ``axis`` at ``indices`` (checked against that dim, ``what``
    names it in the error); the kernel takes ``(ids, table)`` when ``ids_first`` (sc.embedding)."""
    u = UINT_OF_SIZE[x_t.dtype.np.itemsize]
    i64 = _i64()

    def gather(x, indices, out, err):
        outer, n, inner = _rows3(x.shape, axis)
        if out.size == 0:
            return
        launch.launch_1d(X.gather_rows, out.size, as_uint(x), indices.reshape(indices.size), np.int64(outer),
                         np.int64(n), np.int64(inner), as_uint(out), err)

    def run(a, b, out, err):
        return gather(b, a, out, err) if ids_first else gather(a, b, out, err)
    spec = X.gather_rows.spec((arr(u), arr(i_t.dtype.np), i64, i64, i64, arr(u), arr(np.int64)))
    return CudaKernel(run, "gather_rows", kernels=(spec,), checked=True, error=_err_message(what))


@cuda_lowering("sc.take")
def lower_take(op) -> CudaKernel:
    x_t, i_t = op.operands[0].type, op.operands[1].type
    axis = op.attrs["axis"] % x_t.rank
    return _gather(x_t, i_t, axis, f"axis {axis} of {x_t.pretty()}")


#: quantized format -> rule for sc.embedding on a quantized table (filled by ``quant.py``)
QUANT_EMBEDDING: dict = {}


@cuda_lowering("sc.embedding")
def lower_embedding(op) -> CudaKernel:
    if isinstance(op.operands[1].type, QuantType):
        if op.operands[1].type.format in QUANT_EMBEDDING:
            return QUANT_EMBEDDING[op.operands[1].type.format](op)
        raise LoweringError(f"{op.describe()}: a quantized embedding table ({op.operands[1].type}) is not lowered "
                            f"for CUDA yet")
    i_t, t_t = op.operands[0].type, op.operands[1].type
    return _gather(t_t, i_t, 0, f"an embedding table {t_t.pretty()}", ids_first=True)  # rows of the table


@cuda_lowering("sc.take_along_axis")
def lower_take_along_axis(op) -> CudaKernel:
    x_t, i_t = op.operands[0].type, op.operands[1].type
    axis = op.attrs["axis"] % x_t.rank
    u = UINT_OF_SIZE[x_t.dtype.np.itemsize]
    i64 = _i64()

    def run(x, indices, out, err):
        os_ = tuple(out.shape)
        xs = os_[:axis] + (x.shape[axis],) + os_[axis + 1:]
        if out.size == 0:
            return
        # off the axis, x and indices broadcast to the result's dims (copies only when they differ)
        x = x if tuple(x.shape) == xs else broadcast_copy(x, xs)
        indices = indices if tuple(indices.shape) == os_ else broadcast_copy(indices, os_)
        outer, n, inner = _rows3(x.shape, axis)
        m = os_[axis]
        launch.launch_1d(X.gather_along, out.size, as_uint(x), indices.reshape(indices.size), np.int64(outer),
                         np.int64(n), np.int64(m), np.int64(inner), as_uint(out), err)
    spec = X.gather_along.spec((arr(u), arr(i_t.dtype.np), i64, i64, i64, i64, arr(u), arr(np.int64)))
    from ...runtime.cuda.shape import _spec_for
    specs = (spec, _spec_for(x_t.dtype.np), _spec_for(i_t.dtype.np))
    return CudaKernel(run, "gather_along", kernels=specs, checked=True,
                      error=_err_message(f"axis {axis} of {x_t.pretty()}"))


def _scatter(op, mode: int) -> CudaKernel:
    b_t, i_t, u_t = op.operands[0].type, op.operands[1].type, op.operands[2].type
    axis = op.attrs["axis"] % b_t.rank
    if b_t.dtype.is_bool and mode == 1:
        raise LoweringError(f"{op.describe()}: scatter_add of booleans")
    if tuple(i_t.shape) != tuple(u_t.shape):
        raise LoweringError(f"{op.describe()}: the CUDA kernel needs indices and updates of one shape")
    dt = b_t.dtype.np
    wide = _Widened(b_t.dtype.name) if mode == 1 and b_t.dtype.name in H.HALF else None
    if mode == 0:
        dt = UINT_OF_SIZE[dt.itemsize]
    elif wide is not None:
        dt = np.dtype(np.float32)
    i64 = _i64()

    def run(base, indices, updates, out, err):
        outer, n, inner = _rows3(base.shape, axis)
        m = indices.shape[axis]

        def add(target, upd):
            if outer * inner * m == 0:
                return
            view = as_uint if mode == 0 else (lambda a: a.reshape(a.size))
            X.scatter_cols[launch.grid_1d(outer * inner)](view(target), indices.reshape(indices.size), view(upd),
                                                          np.int64(outer), np.int64(n), np.int64(m),
                                                          np.int64(inner), np.int64(mode), err)
        if wide is not None:
            wide(base, updates, out, add)
            return
        _copy_all(base.reshape(base.size), out.reshape(out.size))
        add(out, updates)
    sig = (arr(dt), arr(i_t.dtype.np), arr(dt), i64, i64, i64, i64, i64, arr(np.int64))
    name = "scatter_cols" if mode == 0 else f"scatter_add_{b_t.dtype.name}"
    from ...runtime.cuda.shape import _spec_for
    extra = wide.specs(b_t.dtype.np) if wide is not None else (_spec_for(b_t.dtype.np),)
    return CudaKernel(run, name, kernels=(X.scatter_cols.spec(sig),) + extra, checked=True,
                      error=_err_message(f"axis {axis} of {b_t.pretty()}"))


@cuda_lowering("sc.scatter")
def lower_scatter(op) -> CudaKernel:
    return _scatter(op, 0)


@cuda_lowering("sc.scatter_add")
def lower_scatter_add(op) -> CudaKernel:
    return _scatter(op, 1)


@cuda_lowering("sc.index_add")
def lower_index_add(op) -> CudaKernel:
    b_t, i_t = op.operands[0].type, op.operands[1].type
    axis = op.attrs["axis"] % b_t.rank
    wide = _Widened(b_t.dtype.name) if b_t.dtype.name in H.HALF else None
    dt = np.dtype(np.float32) if wide is not None else b_t.dtype.np
    i64 = _i64()

    def run(base, index, source, out, err):
        outer, n, inner = _rows3(base.shape, axis)
        m = index.size

        def add(target, src):
            if outer * inner * m == 0:
                return
            X.index_add_cols[launch.grid_1d(outer * inner)](target.reshape(target.size), index.reshape(index.size),
                                                            src.reshape(src.size), np.int64(outer), np.int64(n),
                                                            np.int64(m), np.int64(inner), err)
        if wide is not None:
            wide(base, source, out, add)
            return
        _copy_all(base.reshape(base.size), out.reshape(out.size))
        add(out, source)
    sig = (arr(dt), arr(i_t.dtype.np), arr(dt), i64, i64, i64, i64, arr(np.int64))
    from ...runtime.cuda.shape import _spec_for
    extra = wide.specs(b_t.dtype.np) if wide is not None else (_spec_for(dt),)
    return CudaKernel(run, f"index_add_{b_t.dtype.name}", kernels=(X.index_add_cols.spec(sig),) + extra,
                      checked=True, error=_err_message(f"axis {axis} of {b_t.pretty()}"))


@cuda_lowering("sc.one_hot")
def lower_one_hot(op) -> CudaKernel:
    depth = op.attrs["depth"]
    if depth < 0:
        raise LoweringError(f"{op.describe()}: depth must be >= 0, got {depth}")
    i_t, r_t = op.operands[0].type, op.results[0].type
    i64 = _i64()
    kern = H.variant(X.one_hot, None, r_t.dtype.name)   # f16/bf16: 1.0 / 0.0 stored as their bits

    def run(indices, out, err):
        if out.size == 0:
            return
        launch.launch_1d(kern, out.size, indices.reshape(indices.size), np.int64(depth), out.reshape(out.size),
                         err)
    spec = kern.spec((arr(i_t.dtype.np), i64, arr(r_t.dtype.np), arr(np.int64)))
    return CudaKernel(run, "one_hot", kernels=(spec,), checked=True,
                      error=_err_message(f"one_hot of depth {depth}"))


_ = c_strides
