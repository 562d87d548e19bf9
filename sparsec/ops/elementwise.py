"""Elementwise ops: arithmetic, math, activations, comparisons, logic and ``where``.

Binary ops broadcast like NumPy and require equal dtypes (the traced API inserts ``sc.cast``).
Float math is computed in float32 or wider and rounded back to the operand dtype, so f16/bf16
references match what kernels that accumulate in f32 produce.
"""
from __future__ import annotations

import math

import numpy as np

from ..frontend.tracer import Tensor, as_tensor, emit
from ..ir import TensorType, broadcast_shapes, define
from ._util import BOOL, require_float, same_dtype, tensor

__all__ = [
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "neg", "abs", "exp", "log", "sqrt", "rsqrt",
    "tanh", "sin", "cos", "relu", "gelu", "gelu_tanh", "silu", "sigmoid", "erf", "equal", "not_equal",
    "less", "less_equal", "greater", "greater_equal", "logical_and", "logical_or", "logical_not", "where",
    "square", "reciprocal",
]

UNARY: dict[str, object] = {}
BINARY: dict[str, object] = {}
COMPARE: dict[str, object] = {}


def _float_math(f):
    def ref(x):
        if x.dtype.kind == "f" and x.dtype.itemsize < 4 or x.dtype.name == "bfloat16":
            return f(x.astype(np.float32)).astype(x.dtype)
        return f(x).astype(x.dtype, copy=False)
    return ref


def _erf(x):
    v = np.vectorize(math.erf, otypes=[np.float64])
    return v(x)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x.astype(np.float64) / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def _sigmoid(x):
    # stable for large |x|: exp of a non-positive number only
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


_UNARY_FLOAT = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda x: 1.0 / np.sqrt(x), "tanh": np.tanh,
    "sin": np.sin, "cos": np.cos, "erf": _erf, "gelu": _gelu, "gelu_tanh": _gelu_tanh,
    "silu": lambda x: x * _sigmoid(x), "sigmoid": _sigmoid, "reciprocal": lambda x: 1.0 / x,
}
_UNARY_ANY = {"neg": np.negative, "abs": np.abs, "relu": lambda x: np.maximum(x, np.zeros((), x.dtype)),
              "square": np.square}


def _unary_infer(name, floats_only):
    def infer(x):
        tensor(x)
        if floats_only:
            require_float(x, f"sc.{name} operand")
        elif x.dtype.is_bool:
            raise TypeError(f"sc.{name} does not take booleans")
        return x
    return infer


for _name, _f in {**_UNARY_FLOAT, **_UNARY_ANY}.items():
    _fl = _name in _UNARY_FLOAT
    UNARY[_name] = define(f"sc.{_name}", operands=("x",), traits=("pure", "elementwise", "unary"),
                          infer=_unary_infer(_name, _fl),
                          reference=_float_math(_f) if _fl else (lambda f: lambda x: f(x).astype(x.dtype))(_f),
                          doc=f"elementwise {_name}")


def _binary_infer(name, floats_only=False):
    def infer(a, b):
        tensor(a), tensor(b)
        d = same_dtype(a, b)
        if floats_only:
            require_float(a, f"sc.{name} operand")
        return TensorType(broadcast_shapes(a.shape, b.shape), d)
    return infer


def _binary_ref(f):
    def ref(a, b):
        out = f(a.astype(np.float32), b.astype(np.float32)) if a.dtype.name in ("float16", "bfloat16") else f(a, b)
        return np.asarray(out).astype(a.dtype, copy=False)
    return ref


def _int_div(a, b):
    if a.dtype.kind == "f":
        return a / b
    if np.any(b == 0):
        raise ZeroDivisionError("integer division by zero")
    # C semantics (round toward zero) in exact integer arithmetic: floor division, then
    # step back towards zero where the signs differ and there is a remainder
    q = a // b
    return np.where((a % b != 0) & ((a < 0) != (b < 0)), q + 1, q).astype(a.dtype)


_BINARY = {
    "add": (np.add, True), "sub": (np.subtract, False), "mul": (np.multiply, True), "div": (_int_div, False),
    "maximum": (np.maximum, True), "minimum": (np.minimum, True),
}
for _name, (_f, _comm) in _BINARY.items():
    BINARY[_name] = define(f"sc.{_name}", operands=("a", "b"),
                           traits=("pure", "elementwise", "binary") + (("commutative",) if _comm else ()),
                           infer=_binary_infer(_name), reference=_binary_ref(_f), doc=f"elementwise {_name}")
BINARY["pow"] = define("sc.pow", operands=("a", "b"), traits=("pure", "elementwise", "binary"),
                       infer=_binary_infer("pow", floats_only=True),
                       reference=_binary_ref(np.power), doc="elementwise a ** b (floats)")


def _compare_infer(a, b):
    tensor(a), tensor(b)
    same_dtype(a, b)
    return TensorType(broadcast_shapes(a.shape, b.shape), BOOL)


_COMPARE = {"equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
            "greater": np.greater, "greater_equal": np.greater_equal}
for _name, _f in _COMPARE.items():
    COMPARE[_name] = define(f"sc.{_name}", operands=("a", "b"), traits=("pure", "elementwise", "compare"),
                            infer=_compare_infer, reference=(lambda f: lambda a, b: f(a, b))(_f),
                            doc=f"elementwise {_name}, boolean result")


def _logic_infer(name):
    def infer(a, b):
        for t in (a, b):
            if not tensor(t).dtype.is_bool:
                raise TypeError(f"sc.{name} takes booleans, got {t.dtype}")
        return TensorType(broadcast_shapes(a.shape, b.shape), BOOL)
    return infer


define("sc.logical_and", operands=("a", "b"), traits=("pure", "elementwise", "commutative"),
       infer=_logic_infer("logical_and"), reference=np.logical_and, doc="elementwise and of booleans")
define("sc.logical_or", operands=("a", "b"), traits=("pure", "elementwise", "commutative"),
       infer=_logic_infer("logical_or"), reference=np.logical_or, doc="elementwise or of booleans")


def _not_infer(x):
    if not tensor(x).dtype.is_bool:
        raise TypeError(f"sc.logical_not takes booleans, got {x.dtype}")
    return x


define("sc.logical_not", operands=("x",), traits=("pure", "elementwise"), infer=_not_infer,
       reference=np.logical_not, doc="elementwise not of booleans")


def _where_infer(cond, a, b):
    if not tensor(cond).dtype.is_bool:
        raise TypeError(f"sc.where condition must be boolean, got {cond.dtype}")
    d = same_dtype(tensor(a), tensor(b))
    return TensorType(broadcast_shapes(cond.shape, a.shape, b.shape), d)


define("sc.where", operands=("cond", "a", "b"), traits=("pure", "elementwise"), infer=_where_infer,
       reference=lambda cond, a, b: np.where(cond, a, b).astype(a.dtype, copy=False),
       doc="select a where cond else b, broadcasting all three")


# ---------------------------------------------------------------------------------------------
# traced API

def _pair(a, b):
    """Promote Python scalars and mixed dtypes the way NumPy users expect."""
    from ..ir.dtypes import result_dtype
    ta = a if isinstance(a, Tensor) else None
    tb = b if isinstance(b, Tensor) else None
    if ta is None and tb is None:
        a = as_tensor(a)
        ta = a
    ref = ta if ta is not None else tb
    if ta is None:
        a = as_tensor(a, like=_scalar_dtype(a, ref.dtype))
    if tb is None:
        b = as_tensor(b, like=_scalar_dtype(b, ref.dtype))
    a, b = as_tensor(a), as_tensor(b)
    if a.dtype != b.dtype:
        from .core import cast
        d = result_dtype(a.dtype, b.dtype)
        a, b = cast(a, d), cast(b, d)
    return a, b


def _scalar_dtype(s, d):
    from ..ir import as_dtype
    if isinstance(s, (float, np.floating)) and not d.is_float:
        return as_dtype("f32")
    if isinstance(s, (bool, np.bool_)) and not d.is_bool:
        return d
    return d


def _binary_api(name):
    def fn(a, b):
        a, b = _pair(a, b)
        return emit(f"sc.{name}", a, b)
    fn.__name__ = name
    fn.__doc__ = f"elementwise {name} with NumPy broadcasting"
    return fn


add, sub, mul, maximum, minimum = (_binary_api(n) for n in ("add", "sub", "mul", "maximum", "minimum"))
equal, not_equal, less, less_equal, greater, greater_equal = (
    _binary_api(n) for n in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal"))


def div(a, b):
    """``a / b``; integer tensors divided by a float become float (true division)."""
    a, b = _pair(a, b)
    return emit("sc.div", a, b)


def pow(a, b):  # noqa: A001 - NumPy's name
    """``a ** b``; ``x ** 2`` is recorded as ``sc.square``, ``x ** 0.5`` as ``sc.sqrt``."""
    if isinstance(a, Tensor) and isinstance(b, (int, float)) and not isinstance(b, bool):
        if b == 2:
            return emit("sc.square", a)
        if b == 1:
            return a
    a, b = _pair(a, b)
    return emit("sc.pow", a, b)


def _unary_api(name):
    def fn(x):
        x = as_tensor(x)
        if name in _UNARY_FLOAT and not x.dtype.is_float:
            from .core import cast
            x = cast(x, "float32")
        return emit(f"sc.{name}", x)
    fn.__name__ = name
    fn.__doc__ = UNARY[name].doc
    return fn


(neg, abs, exp, log, sqrt, rsqrt, tanh, sin, cos, relu, gelu, gelu_tanh, silu, sigmoid, erf, square,  # noqa: A001
 reciprocal) = (_unary_api(n) for n in ("neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "sin", "cos", "relu",
                                         "gelu", "gelu_tanh", "silu", "sigmoid", "erf", "square", "reciprocal"))


def logical_and(a, b):
    return emit("sc.logical_and", as_tensor(a, like=BOOL), as_tensor(b, like=BOOL))


def logical_or(a, b):
    return emit("sc.logical_or", as_tensor(a, like=BOOL), as_tensor(b, like=BOOL))


def logical_not(x):
    return emit("sc.logical_not", as_tensor(x))


def where(cond, a=None, b=None):
    """``a`` where ``cond`` else ``b`` (scalars allowed for a or b). With ``cond`` alone it is
    ``sc.ops.nonzero(cond)`` (as ``np.where`` / ``torch.where``): a tuple of index vectors."""
    if a is None and b is None:
        from .dynamic import nonzero
        return nonzero(cond)
    if a is None or b is None:
        from ..errors import TraceError
        from ..frontend.tracer import _user_line
        raise TraceError(f"where: give both a and b, or neither (then it is nonzero(cond))\n  at {_user_line()}")
    a, b = _pair(a, b)
    return emit("sc.where", as_tensor(cond), a, b)
