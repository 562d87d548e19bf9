"""Graph-level ops: weights by name, small constants, dtype casts, index ranges."""
from __future__ import annotations

import numpy as np

from ..frontend.tracer import as_tensor, emit
from ..ir import DTypeAttr, Int, Str, TensorAttr, TensorType, as_dtype, register
from ._util import norm_axis, tensor

__all__ = ["cast", "constant", "iota"]


@register
class Param:
    """A weight from the weight store, referenced by name; never inlined into the IR."""
    name = "sc.param"
    attrs = {"name": Str(doc="weight name, e.g. model.layers.0.mlp.gate.weight")}
    declared_result = True
    traits = ("pure",)

    def reference(*, name):  # the interpreter supplies weights itself
        raise KeyError(name)


@register
class Constant:
    """A small literal tensor (scalars, masks); large data belongs in sc.param."""
    name = "sc.constant"
    attrs = {"value": TensorAttr()}
    traits = ("pure", "constant")

    def infer(*, value):
        return TensorType(value.shape, as_dtype(value.dtype))

    def reference(*, value):
        return value


@register
class Cast:
    """Element type conversion (float->int truncates toward zero, like NumPy)."""
    name = "sc.cast"
    operands = ("x",)
    attrs = {"dtype": DTypeAttr()}
    traits = ("pure", "elementwise")

    def infer(x, *, dtype):
        return tensor(x).with_dtype(dtype)

    def reference(x, *, dtype):
        return x.astype(dtype.np)


@register
class Iota:
    """``0, 1, ..., n-1`` along ``axis`` where ``n = x.shape[axis]`` (a symbolic length is fine)."""
    name = "sc.iota"
    operands = ("x",)
    attrs = {"axis": Int(0), "dtype": DTypeAttr("i64")}
    traits = ("pure",)

    def infer(x, *, axis, dtype):
        a = norm_axis(axis, tensor(x).rank)
        return TensorType((x.shape[a],), dtype)

    def reference(x, *, axis, dtype):
        return np.arange(x.shape[axis % x.ndim], dtype=dtype.np)


def constant(value, dtype=None):
    """A literal tensor in traced code."""
    arr = np.asarray(value, dtype=None if dtype is None else as_dtype(dtype).np)
    return as_tensor(arr)


def cast(x, dtype):
    x = as_tensor(x)
    dtype = as_dtype(dtype)
    return x if x.dtype == dtype else emit("sc.cast", x, dtype=dtype)


def iota(x, axis: int = 0, dtype="int64"):
    """Positions ``0..n-1`` of ``x`` along ``axis`` (an int64 vector whose length is that dim)."""
    return emit("sc.iota", x, axis=axis, dtype=as_dtype(dtype))
