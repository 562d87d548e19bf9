"""Attribute kinds of op definitions: how an attribute value is checked, printed and parsed.

Parsed MLIR attributes arrive as plain Python values (int, float, str, bool, tuple, dict,
numpy array, Type); an ``AttrKind`` coerces them to its canonical value and prints them back,
so printing is canonical and ``print(parse(text)) == text`` for what sparsec prints.
"""
from __future__ import annotations

import numpy as np

from .dtypes import DType, as_dtype
from .types import TensorType, Type, canon_dim

REQUIRED = object()


class AttrKind:
    """One attribute of an op definition: its kind, default and documentation."""

    kind = "any"

    def __init__(self, default=REQUIRED, doc: str = ""):
        self.default = default if default is REQUIRED else (None if default is None else self.coerce(default))
        self.doc = doc

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def coerce(self, v):
        return v

    def format(self, v) -> str:
        return format_attr(v)


class Int(AttrKind):
    kind = "int"

    def coerce(self, v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"expected an integer, got {v!r}")
        return int(v)

    def format(self, v):
        return f"{v} : i64"


class Float(AttrKind):
    kind = "float"

    def coerce(self, v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"expected a number, got {v!r}")
        return float(v)

    def format(self, v):
        return f"{format_float(v, 64)} : f64"


class Bool(AttrKind):
    kind = "bool"

    def coerce(self, v):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"expected true or false, got {v!r}")
        return bool(v)

    def format(self, v):
        return "true" if v else "false"


class Str(AttrKind):
    kind = "str"

    def __init__(self, default=REQUIRED, doc: str = "", choices: tuple[str, ...] | None = None):
        self.choices = choices
        super().__init__(default, doc)

    def coerce(self, v):
        if not isinstance(v, str):
            raise TypeError(f"expected a string, got {v!r}")
        if self.choices is not None and v not in self.choices:
            raise ValueError(f"expected one of {', '.join(map(repr, self.choices))}, got {v!r}")
        return v

    def format(self, v):
        return format_string(v)


class Ints(AttrKind):
    """A tuple of ints, printed as a dense array ``array<i64: 1, 2>``."""

    kind = "ints"

    def coerce(self, v):
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if not isinstance(v, (tuple, list)):
            raise TypeError(f"expected a list of integers, got {v!r}")
        return tuple(Int().coerce(x) for x in v)

    def format(self, v):
        return f"array<i64: {', '.join(map(str, v))}>" if v else "array<i64>"


class Floats(AttrKind):
    kind = "floats"

    def coerce(self, v):
        if not isinstance(v, (tuple, list)):
            raise TypeError(f"expected a list of numbers, got {v!r}")
        return tuple(Float().coerce(x) for x in v)

    def format(self, v):
        return f"array<f64: {', '.join(format_float(x, 64) for x in v)}>" if v else "array<f64>"


class Dims(AttrKind):
    """A shape: ints and symbolic dims, printed as ``["batch", 64 : i64]``; ``-1`` allowed where asked."""

    kind = "dims"

    def __init__(self, default=REQUIRED, doc: str = "", allow_infer: bool = False):
        self.allow_infer = allow_infer
        super().__init__(default, doc)

    def coerce(self, v):
        if not isinstance(v, (tuple, list)):
            raise TypeError(f"expected a shape (list of ints and symbol names), got {v!r}")
        out = []
        for d in v:
            if isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d == -1 and self.allow_infer:
                out.append(-1)
            else:
                out.append(canon_dim(int(d) if isinstance(d, np.integer) else d))
        return tuple(out)

    def format(self, v):
        return "[" + ", ".join(f"{d} : i64" if isinstance(d, int) else format_string(d) for d in v) + "]"


class DTypeAttr(AttrKind):
    kind = "dtype"

    def coerce(self, v):
        try:
            return as_dtype(v)
        except ValueError as e:
            raise TypeError(str(e)) from None

    def format(self, v):
        return v.name


class TensorAttr(AttrKind):
    """A (small) constant tensor, printed as ``dense<...> : tensor<...>``."""

    kind = "tensor"

    def coerce(self, v):
        if not isinstance(v, np.ndarray):
            raise TypeError(f"expected a dense tensor, got {type(v).__name__}")
        as_dtype(v.dtype)  # raises for unsupported dtypes
        return v

    def format(self, v):
        return format_dense(v)


# ---------------------------------------------------------------------------------------------
# text forms

def format_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_float(v: float, bits: int) -> str:
    """MLIR float literal: always has a '.', non-finite values as hex bit patterns."""
    v = float(v)
    if not np.isfinite(v):
        if bits == 64:
            return "0x" + np.array(v, dtype=np.float64).view(np.uint64).item().to_bytes(8, "big").hex().upper()
        np_t = {32: np.float32, 16: np.float16}[bits]
        u_t = {32: np.uint32, 16: np.uint16}[bits]
        n = bits // 8
        return "0x" + int(np.array(v, dtype=np_t).view(u_t)).to_bytes(n, "big").hex().upper()
    s = repr(v) if bits == 64 else str({32: np.float32, 16: np.float16}.get(bits, np.float32)(v))
    mant, _, exp = s.partition("e")
    if "." not in mant:
        mant += ".0"
    return mant + ("e" + exp if exp else "")


def _dense_elem(x, dt: DType) -> str:
    if dt.is_bool:
        return "true" if x else "false"
    if dt.is_int:
        return str(int(x))
    if dt.name == "bf16" and not np.isfinite(float(x)):  # hex of the bf16 bits, as MLIR writes them
        return "0x" + int(np.array(x, dtype=dt.np).view(np.uint16)).to_bytes(2, "big").hex().upper()
    return format_float(float(x), 64 if dt.bits == 64 else (16 if dt.name == "f16" else 32))


def format_dense(a: np.ndarray) -> str:
    dt = as_dtype(a.dtype)
    ttype = TensorType(a.shape, dt)
    if a.size > 0 and np.all(a == a.flat[0]) and not (dt.is_float and np.isnan(a.astype(np.float64)).any()):
        body = _dense_elem(a.flat[0], dt)
    else:
        def rec(x):
            if x.ndim == 0:
                return _dense_elem(x.item() if dt.name != "bf16" else float(x), dt)
            return "[" + ", ".join(rec(y) for y in x) + "]"
        body = rec(a)
    return f"dense<{body}> : {ttype}"


def format_attr(v) -> str:
    """Generic printing for values without a declared kind (dict entries, nested arrays)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v} : i64"
    if isinstance(v, float):
        return f"{format_float(v, 64)} : f64"
    if isinstance(v, str):
        return format_string(v)
    if isinstance(v, np.ndarray):
        return format_dense(v)
    if isinstance(v, (DType, Type)):
        return str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{format_key(k)} = {format_attr(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    raise TypeError(f"cannot print attribute value {v!r}")


def format_key(k: str) -> str:
    import re
    return k if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$.]*", k) else format_string(k)
