"""IR types: ranked tensors with static or symbolic dims, and quantized weight types.

A dim is an ``int`` or a ``str`` holding a symbolic monomial such as ``"tokens"``,
``"batch*seq"`` or ``"2*tokens"`` (coefficient first, names sorted). Symbolic dims print
as ``?`` in MLIR text; their names live in the function's ``sc.dims`` argument attributes and
are re-derived for every other value by the ops' shape rules when text is parsed.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import re
from dataclasses import dataclass
from typing import Mapping, Union

from .dtypes import DType, as_dtype

Dim = Union[int, str]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def _split(d: Dim) -> tuple[int, tuple[str, ...]]:
    """A dim as (coefficient, sorted symbol names)."""
    if isinstance(d, (int,)) and not isinstance(d, bool):
        return d, ()
    if not isinstance(d, str):
        raise TypeError(f"a dim must be an int or a symbol name, got {d!r}")
    coef, names = 1, []
    for part in d.replace(" ", "").split("*"):
        if part.isdigit():
            coef *= int(part)
        elif _NAME.match(part):
            names.append(part)
        else:
            raise ValueError(f"bad symbolic dim {d!r}: expected names and integers joined by '*'")
    return coef, tuple(sorted(names))


def _join(coef: int, names: tuple[str, ...]) -> Dim:
    if not names or coef == 0:
        return coef
    body = "*".join(names)
    return body if coef == 1 else f"{coef}*{body}"


def canon_dim(d: Dim) -> Dim:
    """The canonical spelling of a dim (``"seq*batch"`` -> ``"batch*seq"``)."""
    if isinstance(d, bool):
        raise TypeError(f"a dim must be an int or a symbol name, got {d!r}")
    if isinstance(d, int):
        if d < 0:
            raise ValueError(f"dims must be >= 0, got {d}")
        return d
    return _join(*_split(d))


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def dim_mul(a: Dim, b: Dim) -> Dim:
    ca, na = _split(a)
    cb, nb = _split(b)
    return _join(ca * cb, tuple(sorted(na + nb)))


def dim_div(a: Dim, b: Dim) -> Dim | None:
    """``a / b`` when it is exact as a monomial, else None."""
    ca, na = _split(a)
    cb, nb = _split(b)
    if cb == 0 or ca % cb:
        return None
    rest = list(na)
    for n in nb:
        if n not in rest:
            return None
        rest.remove(n)
    return _join(ca // cb, tuple(rest))


def dim_prod(dims) -> Dim:
    out: Dim = 1
    for d in dims:
        out = dim_mul(out, d)
    return out


def eval_dim(d: Dim, bindings: Mapping[str, int]) -> int:
    coef, names = _split(d)
    try:
        return coef * math.prod(bindings[n] for n in names)
    except KeyError as e:
        raise KeyError(f"symbolic dim {d!r}: no value bound for {e.args[0]!r}") from None


def dim_symbols(d: Dim) -> tuple[str, ...]:
    return _split(d)[1]


# The values of the symbolic dims during one run (set by the interpreter from its inputs), so
# references of ops whose attributes name symbolic dims (``sc.reshape``, ``sc.broadcast_to``)
# can turn them into sizes.
_DIM_BINDINGS: contextvars.ContextVar[Mapping[str, int] | None] = contextvars.ContextVar(
    "sparsec_dim_bindings", default=None)


@contextlib.contextmanager
def bound_dims(bindings: Mapping[str, int]):
    """Make ``bindings`` (symbol -> size) the current run's symbolic dim values."""
    token = _DIM_BINDINGS.set(dict(bindings))
    try:
        yield
    finally:
        _DIM_BINDINGS.reset(token)


def current_dim_bindings() -> Mapping[str, int]:
    """The symbolic dim values of the current run (empty outside one)."""
    return _DIM_BINDINGS.get() or {}


def bind_dim(name: str, size: int) -> None:
    """Bind a symbol an op defines while the run goes on (``sc.nonzero``'s data-dependent
    ``size``), so the shapes of the ops after it are known; a no-op outside a run."""
    b = _DIM_BINDINGS.get()
    if b is not None:
        b[name] = int(size)


class Type:
    """Base of IR types."""


@dataclass(frozen=True)
class TensorType(Type):
    """``tensor<?x64xf32>``: a shape of dims and an element type."""

    shape: tuple[Dim, ...]
    dtype: DType

    def __init__(self, shape, dtype):
        object.__setattr__(self, "shape", tuple(canon_dim(d) for d in shape))
        object.__setattr__(self, "dtype", as_dtype(dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(shape, self.dtype)

    def with_dtype(self, dtype) -> "TensorType":
        return TensorType(self.shape, dtype)

    def concrete(self, bindings: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(eval_dim(d, bindings) for d in self.shape)

    def __str__(self) -> str:
        dims = "".join(f"{d if isinstance(d, int) else '?'}x" for d in self.shape)
        return f"tensor<{dims}{self.dtype.name}>"

    def pretty(self) -> str:
        """The type with symbolic dims spelled out, for messages: ``tensor<tokens x 64 x f32>``."""
        return "tensor<" + " x ".join([str(d) for d in self.shape] + [self.dtype.name]) + ">"


@dataclass(frozen=True)
class QuantFormat:
    """A quantized weight layout: ``block`` values share one scale (and maybe a min)."""

    name: str
    block: int
    bits: int
    doc: str


QUANT_FORMATS: dict[str, QuantFormat] = {}


def register_quant_format(fmt: QuantFormat) -> QuantFormat:
    QUANT_FORMATS[fmt.name] = fmt
    return fmt


register_quant_format(QuantFormat("q8_0", 32, 8, "blocks of 32 int8 with one fp16 scale d: x = d*q"))
register_quant_format(QuantFormat("q4_0", 32, 4, "blocks of 32 4-bit q with one fp16 scale d: x = d*(q-8)"))
register_quant_format(QuantFormat("i8c", 0, 8, "int8 per output channel, symmetric: x = s[row]*q"))
register_quant_format(QuantFormat("int4", 32, 4, "group-wise asymmetric 4-bit: x = s*q + m"))


@dataclass(frozen=True)
class QuantType(Type):
    """A quantized weight, ``!sc.q8_0<4096x1024>``: the logical (dequantized) shape is static."""

    format: str
    shape: tuple[int, ...]

    def __post_init__(self):
        if self.format not in QUANT_FORMATS:
            raise ValueError(f"unknown quantized format {self.format!r}; known: {', '.join(QUANT_FORMATS)}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> DType:
        """The dtype of the dequantized values."""
        return as_dtype("f32")

    def __str__(self) -> str:
        return f"!sc.{self.format}<{'x'.join(str(d) for d in self.shape)}>"

    pretty = __str__


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """NumPy broadcasting over dims; symbolic dims broadcast only with 1 or the same symbol."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(rank):
        d: Dim = 1
        for s in shapes:
            j = len(s) - rank + i
            if j < 0:
                continue
            e = s[j]
            if e == 1:
                continue
            if d == 1 or d == e:
                d = e
            else:
                raise ValueError(f"shapes {' and '.join(_fmt_shape(s) for s in shapes)} do not broadcast "
                                 f"(dim {i}: {d} vs {e})")
        out.append(d)
    return tuple(out)


def _fmt_shape(s) -> str:
    return "(" + ", ".join(str(d) for d in s) + ")"
