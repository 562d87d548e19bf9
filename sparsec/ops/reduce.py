"""Reductions: sum, mean, max, min, argmax; softmax and log_softmax; topk; cumsum (a scan).

Reducing over a symbolic axis is fine (the dim disappears or becomes 1). Float results are
computed in float64 (sum, mean) or float32-or-wider (softmax) and rounded once to the input
dtype, so f16/bf16 references match kernels that accumulate in f32.
"""
from __future__ import annotations

import numpy as np

from ..frontend.tracer import as_tensor, emit
from ..ir import Bool, Int, Ints, TensorType, register
from ._util import I64, norm_axes, norm_axis, require_float, tensor

__all__ = ["sum", "mean", "max", "min", "argmax", "softmax", "log_softmax", "topk", "cumsum"]


def _reduced_shape(x: TensorType, axes, keepdims: bool) -> tuple:
    pos = norm_axes(axes, x.rank) if axes else tuple(range(x.rank))
    if keepdims:
        return tuple(1 if i in pos else d for i, d in enumerate(x.shape))
    return tuple(d for i, d in enumerate(x.shape) if i not in pos)


def _np_axes(axes, ndim):
    return tuple(a % ndim for a in axes) if axes else None


def _reduce_infer(name: str, floats_only: bool):
    def infer(x, *, axes, keepdims):
        tensor(x)
        if floats_only:
            require_float(x, f"sc.{name} operand")
        elif x.dtype.is_bool:
            raise TypeError(f"sc.{name} does not take booleans (cast to an integer type first)")
        return TensorType(_reduced_shape(x, axes, keepdims), x.dtype)
    return infer


@register
class Sum:
    """Sum over ``axes`` (empty: all axes). Floats accumulate in float64 and round to the input
    dtype; integers sum in their own dtype (wrapping). Booleans are rejected."""
    name = "sc.sum"
    operands = ("x",)
    attrs = {"axes": Ints(()), "keepdims": Bool(False)}
    traits = ("pure", "reduction")
    infer = _reduce_infer("sum", False)

    def reference(x, *, axes, keepdims):
        acc = np.float64 if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else x.dtype
        return np.sum(x, axis=_np_axes(axes, x.ndim), dtype=acc, keepdims=keepdims).astype(x.dtype)


@register
class Mean:
    """Mean over ``axes`` (empty: all axes) of a float tensor, accumulated in float64."""
    name = "sc.mean"
    operands = ("x",)
    attrs = {"axes": Ints(()), "keepdims": Bool(False)}
    traits = ("pure", "reduction")
    infer = _reduce_infer("mean", True)

    def reference(x, *, axes, keepdims):
        return np.mean(x, axis=_np_axes(axes, x.ndim), dtype=np.float64, keepdims=keepdims).astype(x.dtype)


@register
class Max:
    """Maximum over ``axes`` (empty: all axes); NaN propagates (``np.max``). Integers or floats."""
    name = "sc.max"
    operands = ("x",)
    attrs = {"axes": Ints(()), "keepdims": Bool(False)}
    traits = ("pure", "reduction")
    infer = _reduce_infer("max", False)

    def reference(x, *, axes, keepdims):
        return np.asarray(np.max(x, axis=_np_axes(axes, x.ndim), keepdims=keepdims))


@register
class Min:
    """Minimum over ``axes`` (empty: all axes); NaN propagates (``np.min``). Integers or floats."""
    name = "sc.min"
    operands = ("x",)
    attrs = {"axes": Ints(()), "keepdims": Bool(False)}
    traits = ("pure", "reduction")
    infer = _reduce_infer("min", False)

    def reference(x, *, axes, keepdims):
        return np.asarray(np.min(x, axis=_np_axes(axes, x.ndim), keepdims=keepdims))


@register
class Argmax:
    """Index (int64) of the largest element along ``axis``; ties go to the lowest index and NaN
    counts as the largest (``np.argmax``)."""
    name = "sc.argmax"
    operands = ("x",)
    attrs = {"axis": Int(-1), "keepdims": Bool(False)}
    traits = ("pure", "reduction")

    def infer(x, *, axis, keepdims):
        tensor(x)
        if x.rank == 0:
            raise ValueError("argmax needs a tensor of rank >= 1")
        a = norm_axis(axis, x.rank)
        if x.dtype.is_bool:
            raise TypeError("sc.argmax does not take booleans (cast to an integer type first)")
        return TensorType(_reduced_shape(x, (a,), keepdims), I64)

    def reference(x, *, axis, keepdims):
        return np.argmax(x, axis=axis % x.ndim, keepdims=keepdims).astype(np.int64)


def _softmax_infer(name):
    def infer(x, *, axis):
        tensor(x)
        require_float(x, f"sc.{name} operand")
        if x.rank == 0:
            raise ValueError(f"{name} needs a tensor of rank >= 1")
        norm_axis(axis, x.rank)
        return x
    return infer


def _compute_dtype(dtype: np.dtype):
    return np.float64 if dtype == np.float64 else np.float32


@register
class Softmax:
    """``exp(x - max) / sum(exp(x - max))`` along ``axis`` (float tensors), computed in float32
    (float64 for f64 input) and rounded to the input dtype."""
    name = "sc.softmax"
    operands = ("x",)
    attrs = {"axis": Int(-1)}
    traits = ("pure",)
    infer = _softmax_infer("softmax")

    def reference(x, *, axis):
        y = x.astype(_compute_dtype(x.dtype))
        e = np.exp(y - np.max(y, axis=axis, keepdims=True))
        return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


@register
class LogSoftmax:
    """``x - max - log(sum(exp(x - max)))`` along ``axis`` (float tensors), computed like
    ``sc.softmax``."""
    name = "sc.log_softmax"
    operands = ("x",)
    attrs = {"axis": Int(-1)}
    traits = ("pure",)
    infer = _softmax_infer("log_softmax")

    def reference(x, *, axis):
        y = x.astype(_compute_dtype(x.dtype))
        s = y - np.max(y, axis=axis, keepdims=True)
        return (s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))).astype(x.dtype)


def _topk_order(x: np.ndarray, axis: int, largest: bool) -> np.ndarray:
    """Sorting permutation along ``axis``: by value (descending if ``largest``), ties by lower index."""
    if not largest:
        return np.argsort(x, axis=axis, kind="stable")
    # stable ascending sort of the reversed array, reversed back: descending values, and among
    # equal values the lower original index first (negating would overflow for integers)
    n = x.shape[axis]
    rev = np.flip(x, axis=axis)
    return np.flip(n - 1 - np.argsort(rev, axis=axis, kind="stable"), axis=axis)


@register
class TopK:
    """The ``k`` largest (``largest=false``: smallest) elements along ``axis`` and their int64
    indices, sorted (descending for largest); equal values keep the lower index first and NaN
    counts as the largest, like ``torch.topk``. The axis dim must be static and ``>= k``."""
    name = "sc.topk"
    operands = ("x",)
    attrs = {"k": Int(), "axis": Int(-1), "largest": Bool(True)}
    traits = ("pure",)

    def infer(x, *, k, axis, largest):
        tensor(x)
        if x.rank == 0:
            raise ValueError("topk needs a tensor of rank >= 1")
        if x.dtype.is_bool:
            raise TypeError("sc.topk does not take booleans")
        a = norm_axis(axis, x.rank)
        n = x.shape[a]
        if not isinstance(n, int):
            raise ValueError(f"topk needs a static dim along axis {a}, got symbolic {n}")
        if k < 0:
            raise ValueError(f"k={k} must be >= 0")
        if k > n:
            raise ValueError(f"k={k} exceeds dim {n}")
        shape = list(x.shape)
        shape[a] = k
        return TensorType(shape, x.dtype), TensorType(shape, I64)

    def reference(x, *, k, axis, largest):
        a = axis % x.ndim
        if k > x.shape[a]:
            raise ValueError(f"k={k} exceeds dim {x.shape[a]}")
        idx = np.take(_topk_order(x, a, largest), np.arange(k), axis=a)
        return np.take_along_axis(x, idx, axis=a), idx.astype(np.int64)


@register
class CumSum:
    """Inclusive prefix sums along ``axis`` (ONNX ``CumSum``): ``exclusive`` shifts by one (the
    first element is 0), ``reverse`` sums from the end. Floats accumulate in float64 in order and
    round each result to the input dtype (as ``sc.sum``); integers sum in their own dtype
    (wrapping). Booleans are rejected (``sc.ops.cumsum`` casts them to int64, as torch)."""
    name = "sc.cumsum"
    operands = ("x",)
    attrs = {"axis": Int(), "exclusive": Bool(False), "reverse": Bool(False)}
    traits = ("pure",)

    def infer(x, *, axis, exclusive, reverse):
        tensor(x)
        if x.rank == 0:
            raise ValueError("cumsum needs a tensor of rank >= 1")
        norm_axis(axis, x.rank)
        if x.dtype.is_bool:
            raise TypeError("sc.cumsum does not take booleans (cast to an integer type first)")
        return x

    def reference(x, *, axis, exclusive, reverse):
        a = axis % x.ndim
        acc = np.float64 if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else x.dtype
        y = np.flip(x, a) if reverse else x
        s = np.cumsum(y, axis=a, dtype=acc)
        if exclusive:  # shifted by one along the axis: [0, s0, s0+s1, ...]
            shifted = np.zeros_like(s)
            np.moveaxis(shifted, a, 0)[1:] = np.moveaxis(s, a, 0)[:-1]
            s = shifted
        if reverse:
            s = np.flip(s, a)
        return np.ascontiguousarray(s).astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# traced API

def _axes(axis) -> tuple:
    if axis is None:
        return ()
    if isinstance(axis, (int, np.integer)):
        return (int(axis),)
    return tuple(axis)


def _reduction_api(name):
    def fn(x, axis=None, keepdims: bool = False):
        x = as_tensor(x)
        axes = _axes(axis)
        if axis is not None and not axes:  # axis=() reduces nothing, like NumPy
            return x
        return emit(f"sc.{name}", x, axes=axes, keepdims=bool(keepdims))
    fn.__name__ = name
    return fn


sum = _reduction_api("sum")  # noqa: A001 - NumPy's names
sum.__doc__ = "Sum over ``axis`` (None: all; an int or a tuple), like ``np.sum``."
max = _reduction_api("max")  # noqa: A001
max.__doc__ = "Maximum over ``axis`` (None: all), like ``np.max``."
min = _reduction_api("min")  # noqa: A001
min.__doc__ = "Minimum over ``axis`` (None: all), like ``np.min``."


def mean(x, axis=None, keepdims: bool = False):
    """Mean over ``axis`` (None: all); integer tensors are cast to float32 first."""
    x = as_tensor(x)
    if not x.dtype.is_float:
        from .core import cast
        x = cast(x, "float32")
    axes = _axes(axis)
    if axis is not None and not axes:
        return x
    return emit("sc.mean", x, axes=axes, keepdims=bool(keepdims))


def argmax(x, axis: int = -1, keepdims: bool = False):
    """Index of the largest element along ``axis`` (int64)."""
    return emit("sc.argmax", as_tensor(x), axis=axis, keepdims=bool(keepdims))


def _float(x):
    x = as_tensor(x)
    if not x.dtype.is_float:
        from .core import cast
        x = cast(x, "float32")
    return x


def softmax(x, axis: int = -1):
    """Softmax along ``axis`` (integer tensors are cast to float32)."""
    return emit("sc.softmax", _float(x), axis=axis)


def log_softmax(x, axis: int = -1):
    """Log-softmax along ``axis`` (integer tensors are cast to float32)."""
    return emit("sc.log_softmax", _float(x), axis=axis)


def topk(x, k: int, axis: int = -1, largest: bool = True):
    """``(values, indices)`` of the ``k`` largest elements along ``axis``, sorted, like ``torch.topk``."""
    return emit("sc.topk", as_tensor(x), k=k, axis=axis, largest=bool(largest))


def cumsum(x, axis: int, exclusive: bool = False, reverse: bool = False):
    """Prefix sums along ``axis`` (``np.cumsum``, ONNX ``CumSum`` with ``exclusive``/``reverse``);
    a boolean tensor is cast to int64 first (``torch.cumsum(mask, -1)``)."""
    x = as_tensor(x)
    if x.dtype.is_bool:
        from .core import cast
        x = cast(x, "int64")
    return emit("sc.cumsum", x, axis=int(axis), exclusive=bool(exclusive), reverse=bool(reverse))
