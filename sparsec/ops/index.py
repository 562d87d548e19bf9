"""Gather and scatter: take, take_along_axis, embedding, scatter, scatter_add, index_add, one_hot.

Indices are integer tensors of any integer dtype and must lie in ``[0, n)`` for the dim they
index, as in torch (no negative wrap-around): a reference given an index out of range raises
``IndexError``, which the interpreter reports naming the op and the user's line.
"""
from __future__ import annotations

import numpy as np

from ..frontend.tracer import as_tensor, emit
from ..ir import DTypeAttr, Int, TensorType, broadcast_shapes, register
from ._util import norm_axis, require_int, tensor, weight

__all__ = ["take", "take_along_axis", "embedding", "scatter", "scatter_add", "index_add", "one_hot"]


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _check_range(indices: np.ndarray, n: int, what: str) -> None:
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        bad = indices[(indices < 0) | (indices >= n)].flat[0]
        raise IndexError(f"index {int(bad)} is out of range [0, {n}) for {what}")


def _acc(x: np.ndarray) -> np.ndarray:
    """A copy to accumulate into: f16/bf16 widen to f32 (rounded back once at the end)."""
    if x.dtype == np.float16 or x.dtype.name == "bfloat16":
        return x.astype(np.float32)
    return x.copy()


@register
class Take:
    """``np.take(x, indices, axis)``: ``x.shape[:axis] + indices.shape + x.shape[axis+1:]``, dtype of
    ``x`` (``torch.index_select`` for 1-D indices)."""
    name = "sc.take"
    operands = ("x", "indices")
    attrs = {"axis": Int(0)}
    traits = ("pure",)

    def infer(x, indices, *, axis):
        tensor(x, "x"), tensor(indices, "indices")
        require_int(indices)
        if x.rank == 0:
            raise ValueError("cannot take from a rank-0 tensor")
        a = norm_axis(axis, x.rank)
        return TensorType(x.shape[:a] + indices.shape + x.shape[a + 1:], x.dtype)

    def reference(x, indices, *, axis):
        a = axis % x.ndim
        _check_range(indices, x.shape[a], f"axis {a} of size {x.shape[a]}")
        return np.take(x, indices, axis=a)


@register
class TakeAlongAxis:
    """``np.take_along_axis(x, indices, axis)`` (``torch.gather``): equal ranks; off ``axis`` the
    dims of ``x`` and ``indices`` broadcast; along ``axis`` the result has ``indices``' length."""
    name = "sc.take_along_axis"
    operands = ("x", "indices")
    attrs = {"axis": Int()}
    traits = ("pure",)

    def infer(x, indices, *, axis):
        tensor(x, "x"), tensor(indices, "indices")
        require_int(indices)
        if x.rank != indices.rank:
            raise ValueError(f"indices must have the rank of x ({x.rank}), got rank {indices.rank}")
        a = norm_axis(axis, x.rank)
        xs = x.shape[:a] + (1,) + x.shape[a + 1:]
        js = indices.shape[:a] + (1,) + indices.shape[a + 1:]
        shape = list(broadcast_shapes(xs, js))
        shape[a] = indices.shape[a]
        return TensorType(shape, x.dtype)

    def reference(x, indices, *, axis):
        a = axis % x.ndim
        _check_range(indices, x.shape[a], f"axis {a} of size {x.shape[a]}")
        return np.take_along_axis(x, indices, axis=a)


@register
class Embedding:
    """``table[ids]``: rows of ``table`` ``[vocab, dim]`` (a tensor or a quantized weight) for
    integer ``ids`` of any shape; result ``ids.shape + [dim]`` with the table's (dequantized) dtype."""
    name = "sc.embedding"
    operands = ("ids", "table")
    traits = ("pure",)

    def infer(ids, table):
        tensor(ids, "ids")
        require_int(ids, "ids")
        weight(table, "table")
        if table.rank != 2:
            raise ValueError(f"table must be [vocab, dim] (rank 2), got {_fmt(table.shape)}")
        return TensorType(tuple(ids.shape) + (table.shape[1],), table.dtype)

    def reference(ids, table):
        table = np.asarray(table)
        _check_range(ids, table.shape[0], f"an embedding table of {table.shape[0]} rows")
        return table[ids]


def _scatter_infer(name):
    def infer(base, indices, updates, *, axis):
        tensor(base, "base"), tensor(indices, "indices"), tensor(updates, "updates")
        require_int(indices)
        if updates.dtype != base.dtype:
            raise TypeError(f"updates dtype {updates.dtype} differs from base dtype {base.dtype} (insert sc.cast)")
        if indices.rank != base.rank:
            raise ValueError(f"indices must have the rank of base ({base.rank}), got rank {indices.rank}")
        a = norm_axis(axis, base.rank)
        if updates.shape != indices.shape:
            raise ValueError(f"updates shape {_fmt(updates.shape)} differs from indices shape {_fmt(indices.shape)}")
        for d, (i, b) in enumerate(zip(indices.shape, base.shape)):
            if d != a and i != b:
                raise ValueError(f"indices dim {d} is {i}, base has {b} (only axis {a} may differ)")
        if base.dtype.is_bool and name == "scatter_add":
            raise TypeError("sc.scatter_add does not take booleans")
        return base
    return infer


def _index_grid(indices: np.ndarray, axis: int) -> tuple:
    """Full index tuple addressing ``base`` for every element of ``indices`` (``put_along_axis``)."""
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis] = indices
    return tuple(grid)


@register
class Scatter:
    """A copy of ``base`` with ``out[..., indices[..., j, ...], ...] = updates[..., j, ...]`` along
    ``axis`` (``np.put_along_axis``; ``torch.scatter``). ``indices`` and ``updates`` have one shape,
    equal to ``base``'s off ``axis``. For duplicate indices the last update in row-major order wins."""
    name = "sc.scatter"
    operands = ("base", "indices", "updates")
    attrs = {"axis": Int()}
    traits = ("pure",)
    infer = _scatter_infer("scatter")

    def reference(base, indices, updates, *, axis):
        a = axis % base.ndim
        _check_range(indices, base.shape[a], f"axis {a} of size {base.shape[a]}")
        out = base.copy()
        out[_index_grid(indices, a)] = updates
        return out


@register
class ScatterAdd:
    """Like ``sc.scatter`` but adds into a copy of ``base``; duplicate indices all add up
    (``torch.Tensor.scatter_add_``). f16/bf16 accumulate in f32."""
    name = "sc.scatter_add"
    operands = ("base", "indices", "updates")
    attrs = {"axis": Int()}
    traits = ("pure",)
    infer = _scatter_infer("scatter_add")

    def reference(base, indices, updates, *, axis):
        a = axis % base.ndim
        _check_range(indices, base.shape[a], f"axis {a} of size {base.shape[a]}")
        out = _acc(base)
        np.add.at(out, _index_grid(indices, a), updates.astype(out.dtype))
        return out.astype(base.dtype)


@register
class IndexAdd:
    """``base.index_add(axis, index, source)`` (torch): a copy of ``base`` where slice ``j`` of
    ``source`` along ``axis`` is added into slice ``index[j]``; duplicates add up. ``index`` is 1-D;
    ``source`` is ``base``'s shape with ``len(index)`` along ``axis``. f16/bf16 accumulate in f32."""
    name = "sc.index_add"
    operands = ("base", "index", "source")
    attrs = {"axis": Int(0)}
    traits = ("pure",)

    def infer(base, index, source, *, axis):
        tensor(base, "base"), tensor(index, "index"), tensor(source, "source")
        require_int(index, "index")
        if index.rank != 1:
            raise ValueError(f"index must be 1-D, got rank {index.rank}")
        if source.dtype != base.dtype:
            raise TypeError(f"source dtype {source.dtype} differs from base dtype {base.dtype} (insert sc.cast)")
        if base.dtype.is_bool:
            raise TypeError("sc.index_add does not take booleans")
        a = norm_axis(axis, base.rank)
        want = base.shape[:a] + (index.shape[0],) + base.shape[a + 1:]
        if source.shape != want:
            raise ValueError(f"source must be {_fmt(want)} (base with len(index) along axis {a}), "
                             f"got {_fmt(source.shape)}")
        return base

    def reference(base, index, source, *, axis):
        a = axis % base.ndim
        _check_range(index, base.shape[a], f"axis {a} of size {base.shape[a]}")
        out = _acc(base)
        np.add.at(out, (slice(None),) * a + (index,), source.astype(out.dtype))
        return out.astype(base.dtype)


@register
class OneHot:
    """``indices.shape + [depth]`` with 1 at ``[..., indices[...]]`` and 0 elsewhere, in ``dtype``
    (default f32); every index must be in ``[0, depth)`` (``torch.nn.functional.one_hot``)."""
    name = "sc.one_hot"
    operands = ("indices",)
    attrs = {"depth": Int(), "dtype": DTypeAttr("f32")}
    traits = ("pure",)

    def infer(indices, *, depth, dtype):
        tensor(indices, "indices")
        require_int(indices)
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        return TensorType(tuple(indices.shape) + (depth,), dtype)

    def reference(indices, *, depth, dtype):
        _check_range(indices, depth, f"one_hot of depth {depth}")
        return (indices[..., None] == np.arange(depth)).astype(dtype.np)


# ---------------------------------------------------------------------------------------------
# traced API

def _indices(i):
    """Index operands: Python lists and NumPy arrays become int64 constants."""
    if isinstance(i, (list, tuple)):
        i = np.asarray(i, dtype=np.int64)
    return as_tensor(i)


def take(x, indices, axis: int = 0):
    """``np.take(x, indices, axis)`` (indices in ``[0, n)``)."""
    return emit("sc.take", as_tensor(x), _indices(indices), axis=axis)


def take_along_axis(x, indices, axis: int):
    """``np.take_along_axis`` / ``torch.gather``."""
    return emit("sc.take_along_axis", as_tensor(x), _indices(indices), axis=axis)


def embedding(ids, table):
    """Rows of ``table`` ``[vocab, dim]`` for integer ``ids``."""
    return emit("sc.embedding", _indices(ids), as_tensor(table))


def scatter(base, indices, updates, axis: int):
    """A copy of ``base`` with ``updates`` written at ``indices`` along ``axis`` (``np.put_along_axis``)."""
    base = as_tensor(base)
    return emit("sc.scatter", base, _indices(indices), as_tensor(updates, like=base.dtype), axis=axis)


def scatter_add(base, indices, updates, axis: int):
    """A copy of ``base`` with ``updates`` added at ``indices`` along ``axis`` (``torch.scatter_add``)."""
    base = as_tensor(base)
    return emit("sc.scatter_add", base, _indices(indices), as_tensor(updates, like=base.dtype), axis=axis)


def index_add(base, index, source, axis: int = 0):
    """``base.index_add(axis, index, source)`` (torch), returning a new tensor."""
    return emit("sc.index_add", as_tensor(base), _indices(index), as_tensor(source), axis=axis)


def one_hot(indices, depth: int, dtype="float32"):
    """One-hot vectors of length ``depth`` along a new last axis."""
    return emit("sc.one_hot", _indices(indices), depth=depth, dtype=dtype)
