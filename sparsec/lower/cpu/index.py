"""CPU lowering rules: gathers and scatters (take, take_along_axis, embedding, scatter,
scatter_add, index_add, one_hot).

Arrays are brought to a canonical ``[outer, n, inner]`` form around the indexed axis (free
reshapes of contiguous arrays) and, for the kernels that only move data, viewed as bytes (see
``sparsec.runtime.cpu.index``). An index outside ``[0, n)`` raises ``IndexError`` naming the op,
the index and the axis, as the reference does; no kernel reads with an unchecked index.
"""
from __future__ import annotations

import math

import numpy as np

from ...runtime.cpu import common
from ...runtime.cpu import index as X
from ...ir.types import QuantType
from . import Kernel, LoweringError, contiguous, cpu_lowering

I64 = np.dtype(np.int64)


def as_i64(a: np.ndarray) -> np.ndarray:
    return a.astype(I64, copy=False)


def rows3(a: np.ndarray, axis: int, n: int | None = None) -> tuple[int, int, int]:
    """``(outer, n, inner)`` of ``a`` around ``axis``."""
    return (math.prod(a.shape[:axis]), a.shape[axis] if n is None else n, math.prod(a.shape[axis + 1:]))


def as_bytes(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` (contiguous) reshaped to ``shape`` and viewed as bytes: one more axis of ``itemsize``."""
    return a.reshape(shape + (1,)).view(np.uint8)


def byte_rows(a: np.ndarray, outer: int, n: int, inner: int) -> np.ndarray:
    """``a`` as ``[outer, n, inner * itemsize]`` bytes: rows of the gather kernels."""
    return as_bytes(a, (outer, n, inner)).reshape(outer, n, inner * a.itemsize)


def out_of_range(op, idx: np.ndarray, bad: int, n: int, what: str) -> IndexError:
    value = int(idx.reshape(-1)[bad])
    return IndexError(f"{op.describe()}: index {value} is out of range [0, {n}) for {what}")


def wide_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the adding kernels accumulate in: f32 for f16/bf16, i64 for integers."""
    if dtype.kind in "iu":
        return I64
    if dtype == np.float64:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


@cpu_lowering("sc.take")
def lower_take(op) -> Kernel:
    axis = op.attrs["axis"] % op.operands[0].type.rank

    def run(x, indices, out):
        outer, n, inner = rows3(x, axis)
        idx = as_i64(indices).reshape(-1)
        bad = X.gather_rows(byte_rows(x, outer, n, inner), idx, 1, out.nbytes >= X.PARALLEL_BYTES,
                            byte_rows(out, outer, idx.size, inner))
        if bad >= 0:
            raise out_of_range(op, idx, bad, n, f"axis {axis} of size {n}")
    return Kernel(run, "gather_rows", impl="numba")


@cpu_lowering("sc.embedding")
def lower_embedding(op) -> Kernel:
    if isinstance(op.operands[1].type, QuantType):  # the gathered rows, dequantized
        from . import quant
        return quant.lower_embedding(op)

    def args(idx, table, out):
        vocab, dim = table.shape
        return byte_rows(table, 1, vocab, dim), idx, 1, out.nbytes >= X.PARALLEL_BYTES, byte_rows(out, 1, idx.size, dim)

    def check(idx, vocab, bad):
        if bad >= 0:
            raise out_of_range(op, idx, bad, vocab, f"an embedding table of {vocab} rows")

    def run(ids, table, out):
        idx = as_i64(ids).reshape(-1)
        check(idx, table.shape[0], X.gather_rows(*args(idx, table, out)))

    def bind(ids, table, out):
        if ids.dtype != np.int64 or not contiguous(ids, table, out):
            return None
        idx = ids.reshape(-1)
        vocab = table.shape[0]
        return common.checked(common.bound(X.gather_rows, *args(idx, table, out)), lambda bad: check(idx, vocab, bad))
    return Kernel(run, "gather_rows", impl="numba", bind=bind)


@cpu_lowering("sc.take_along_axis")
def lower_take_along_axis(op) -> Kernel:
    axis = op.attrs["axis"] % op.operands[0].type.rank

    def run(x, indices, out):
        n, m = x.shape[axis], out.shape[axis]
        # off the axis, x and indices broadcast to the result's dims (copies only when they differ)
        xs = out.shape[:axis] + (n,) + out.shape[axis + 1:]
        x = x if x.shape == xs else np.ascontiguousarray(np.broadcast_to(x, xs))
        idx = as_i64(indices)
        idx = idx if idx.shape == out.shape else np.ascontiguousarray(np.broadcast_to(idx, out.shape))
        outer, _, inner = rows3(out, axis)
        bad = X.gather_along(as_bytes(x, (outer, n, inner)), idx.reshape(outer, m, inner),
                             as_bytes(out, (outer, m, inner)))
        if bad >= 0:
            raise out_of_range(op, idx, bad, n, f"axis {axis} of size {n}")
    return Kernel(run, "gather_along", impl="numba")


@cpu_lowering("sc.scatter")
def lower_scatter(op) -> Kernel:
    axis = op.attrs["axis"] % op.operands[0].type.rank

    def run(base, indices, updates, out):
        out[...] = base
        outer, n, inner = rows3(base, axis)
        m = indices.shape[axis]
        idx = as_i64(indices).reshape(outer, m, inner)
        bad = X.scatter_along(as_bytes(out, (outer, n, inner)), idx, as_bytes(updates, (outer, m, inner)))
        if bad >= 0:
            raise out_of_range(op, idx, bad, n, f"axis {axis} of size {n}")
    return Kernel(run, "scatter_along", impl="numba")


@cpu_lowering("sc.scatter_add")
def lower_scatter_add(op) -> Kernel:
    axis = op.attrs["axis"] % op.operands[0].type.rank
    dtype = op.operands[0].type.dtype.np
    wide = wide_dtype(dtype)

    def run(base, indices, updates, out):
        outer, n, inner = rows3(base, axis)
        m = indices.shape[axis]
        idx = as_i64(indices).reshape(outer, m, inner)
        acc = out if wide == dtype else base.astype(wide)
        if acc is out:
            out[...] = base
        bad = X.scatter_add_along(acc.reshape(outer, n, inner), idx,
                                  updates.astype(wide, copy=False).reshape(outer, m, inner))
        if bad >= 0:
            raise out_of_range(op, idx, bad, n, f"axis {axis} of size {n}")
        if acc is not out:
            out[...] = acc  # rounds f32 to f16/bf16 once; int64 wraps to the dtype, as the reference's adds
    return Kernel(run, f"scatter_add_{wide.name}", impl="numba")


@cpu_lowering("sc.index_add")
def lower_index_add(op) -> Kernel:
    axis = op.attrs["axis"] % op.operands[0].type.rank
    dtype = op.operands[0].type.dtype.np
    wide = wide_dtype(dtype)

    def run(base, index, source, out):
        outer, n, inner = rows3(base, axis)
        idx = as_i64(index)
        acc = out if wide == dtype else base.astype(wide)
        if acc is out:
            out[...] = base
        bad = X.index_add_rows(acc.reshape(outer, n, inner), idx,
                               source.astype(wide, copy=False).reshape(outer, idx.size, inner))
        if bad >= 0:
            raise out_of_range(op, idx, bad, n, f"axis {axis} of size {n}")
        if acc is not out:
            out[...] = acc
    return Kernel(run, f"index_add_{wide.name}", impl="numba")


@cpu_lowering("sc.one_hot")
def lower_one_hot(op) -> Kernel:
    depth = op.attrs["depth"]
    dtype = op.attrs["dtype"].np
    one = np.ones(1, dtype).view(np.uint8)

    def run(indices, out):
        idx = as_i64(indices).reshape(-1)
        bad = X.one_hot(idx, one, as_bytes(out, (idx.size, depth)))
        if bad >= 0:
            raise out_of_range(op, idx, bad, depth, f"one_hot of depth {depth}")
    if depth < 0:
        raise LoweringError(f"{op.describe()}: depth must be >= 0, got {depth}")
    return Kernel(run, "one_hot", impl="numba")
