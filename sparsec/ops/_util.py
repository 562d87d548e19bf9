"""Shared shape-rule helpers for op definitions."""
from __future__ import annotations

from ..ir import DType, TensorType, as_dtype
from ..ir.types import QuantType


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` in ``[-rank, rank)`` made non-negative, else a ValueError naming both."""
    if not -rank <= axis < max(rank, 1) or (rank == 0 and axis not in (0, -1)):
        raise ValueError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def norm_axes(axes, rank: int) -> tuple[int, ...]:
    out = tuple(sorted(norm_axis(a, rank) for a in axes))
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {tuple(axes)}")
    return out


def tensor(t, what: str = "operand") -> TensorType:
    if not isinstance(t, TensorType):
        raise TypeError(f"{what} must be a tensor, got {t}")
    return t


def weight(t, what: str = "weight"):
    """A tensor or a quantized weight type (both have ``shape``)."""
    if not isinstance(t, (TensorType, QuantType)):
        raise TypeError(f"{what} must be a tensor or a quantized weight, got {t}")
    return t


def same_dtype(*ts: TensorType) -> DType:
    d = ts[0].dtype
    for t in ts[1:]:
        if t.dtype != d:
            raise TypeError(f"dtype mismatch: {', '.join(str(x.dtype) for x in ts)} (insert sc.cast)")
    return d


def require_float(t: TensorType, what: str = "operand") -> None:
    if not t.dtype.is_float:
        raise TypeError(f"{what} must be a float tensor, got {t.dtype}")


def require_int(t: TensorType, what: str = "indices") -> None:
    if not t.dtype.is_int:
        raise TypeError(f"{what} must be an integer tensor, got {t.dtype}")


def dims_equal(a, b, what: str) -> None:
    if a != b:
        raise ValueError(f"{what}: {a} != {b}")


F32 = as_dtype("f32")
I64 = as_dtype("i64")
BOOL = as_dtype("i1")
