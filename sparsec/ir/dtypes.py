"""Element types of the IR: their MLIR spelling and their NumPy counterpart."""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class DType:
    """An element type. ``name`` is the MLIR spelling (``f32``), ``np`` the NumPy dtype."""

    name: str
    np: np.dtype
    kind: str  # "float", "int", "bool"
    bits: int

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"sc.{self.name}"

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind == "int"

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"


f32 = DType("f32", np.dtype(np.float32), "float", 32)
f16 = DType("f16", np.dtype(np.float16), "float", 16)
bf16 = DType("bf16", np.dtype(ml_dtypes.bfloat16), "float", 16)
f64 = DType("f64", np.dtype(np.float64), "float", 64)
i8 = DType("i8", np.dtype(np.int8), "int", 8)
i32 = DType("i32", np.dtype(np.int32), "int", 32)
i64 = DType("i64", np.dtype(np.int64), "int", 64)
u8 = DType("ui8", np.dtype(np.uint8), "int", 8)
i1 = DType("i1", np.dtype(np.bool_), "bool", 1)

ALL = (f32, f16, bf16, f64, i8, i32, i64, u8, i1)
BY_NAME = {d.name: d for d in ALL}
_ALIASES = {
    "float32": f32, "float16": f16, "bfloat16": bf16, "float64": f64, "int8": i8, "int32": i32,
    "int64": i64, "uint8": u8, "bool": i1, "float": f32, "int": i64,
}


def as_dtype(x) -> DType:
    """Accept a DType, an MLIR name (``"f32"``), a NumPy-style name (``"float32"``) or a NumPy dtype."""
    if isinstance(x, DType):
        return x
    if isinstance(x, str):
        if x in BY_NAME:
            return BY_NAME[x]
        if x in _ALIASES:
            return _ALIASES[x]
    try:
        npd = np.dtype(x)
    except TypeError:
        npd = None
    if npd is not None:
        for d in ALL:
            if d.np == npd:
                return d
    raise ValueError(f"unknown dtype {x!r}; expected one of {', '.join(BY_NAME)} "
                     f"(or NumPy names such as float32, int64, bool)")


def result_dtype(a: DType, b: DType) -> DType:
    """Binary-op promotion: equal types stay; otherwise the wider float (or int) wins."""
    if a == b:
        return a
    if a.is_float or b.is_float:
        if a.is_float and b.is_float:
            return a if a.bits >= b.bits else b
        return a if a.is_float else b
    if a.is_bool:
        return b
    if b.is_bool:
        return a
    return a if a.bits >= b.bits else b
