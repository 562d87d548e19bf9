"""Tracing: ``sc.Tensor`` proxies record ops into a Graph as a Python function runs.

Like torch.fx, tracing runs the user's code once over proxies. Data-dependent Python control
flow (``if x.sum() > 0``) cannot be recorded: it raises ``TraceError`` naming the user's line.
Every recorded op remembers that line (``op.loc``), so verifier and interpreter errors point back
at the user's code.
"""
from __future__ import annotations

import contextvars
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import TraceError, VerifyError
from ..ir import Builder, DType, Function, Graph, TensorType, Value, as_dtype
from ..ir.types import canon_dim, dim_symbols

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_current: contextvars.ContextVar["Tracer | None"] = contextvars.ContextVar("sparsec_tracer", default=None)


def user_location() -> str | None:
    """``file.py:LINE`` of the innermost frame outside the sparsec package (the user's code)."""
    f = sys._getframe(1)
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        if not fn.startswith(_PKG_DIR + os.sep):
            return f"{os.path.basename(fn)}:{f.f_lineno}"
        f = f.f_back
    return None


def _user_line() -> str:
    f = sys._getframe(1)
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        if not fn.startswith(_PKG_DIR + os.sep):
            import linecache
            src = linecache.getline(fn, f.f_lineno).strip()
            return f"{fn}:{f.f_lineno}" + (f"\n    {src}" if src else "")
        f = f.f_back
    return "<unknown>"


@dataclass(frozen=True)
class TensorSpec:
    """Describes one input: ``TensorSpec(("batch", "seq"), "int64")``; dims are ints or symbol names."""

    shape: tuple
    dtype: Any = "float32"
    name: str | None = None

    def __post_init__(self):
        try:
            object.__setattr__(self, "shape", tuple(canon_dim(d) for d in self.shape))
            object.__setattr__(self, "dtype", as_dtype(self.dtype))
        except (TypeError, ValueError) as e:
            raise TraceError(f"TensorSpec{(self.shape, self.dtype)}: {e}") from None

    @property
    def type(self) -> TensorType:
        return TensorType(self.shape, self.dtype)


class Parameter:
    """A weight held by a Module: a NumPy array that becomes ``sc.param`` when traced."""

    __array_priority__ = 1000

    def __init__(self, data):
        self.data = np.asarray(data)

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"

    # Used inside traced code a Parameter behaves like the Tensor it stands for.
    def __getattr__(self, item):
        if item.startswith("__") or item == "data":
            raise AttributeError(item)
        return getattr(as_tensor(self), item)


def _forward_binop(name):
    def method(self, *args):
        return getattr(as_tensor(self), name)(*args)
    method.__name__ = name
    return method


for _n in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
           "__matmul__", "__rmatmul__", "__neg__", "__pow__", "__getitem__", "__lt__", "__le__", "__gt__", "__ge__"):
    setattr(Parameter, _n, _forward_binop(_n))


class Tracer:
    """Holds the graph being built, the insertion point and the weights seen so far."""

    def __init__(self, graph: Graph, function: Function, param_names: dict[int, str] | None = None):
        self.graph = graph
        self.function = function
        self.builder = Builder(function.body)
        self.param_names = dict(param_names or {})
        self.param_values: dict[int, Value] = {}
        self.constants: dict[tuple, Value] = {}
        self.symbols: set[str] = set()   # symbolic dims defined by ops (sc.nonzero's ``size``)

    def fresh_symbol(self, prefix: str) -> str:
        """A symbolic dim name ``<prefix><i>`` used by no function input and no earlier op."""
        used = {s for a in self.function.args if isinstance(a.type, TensorType)
                for d in a.type.shape for s in dim_symbols(d)} | self.symbols
        i = 0
        while f"{prefix}{i}" in used:
            i += 1
        self.symbols.add(f"{prefix}{i}")
        return f"{prefix}{i}"

    def param(self, p: Parameter) -> Value:
        key = id(p)
        if key in self.param_values:
            return self.param_values[key]
        name = self.param_names.get(key) or f"param{len(self.param_values)}"
        if name in self.graph.weights and self.graph.weights[name] is not p.data:
            raise TraceError(f"two different parameters are both named {name!r}")
        try:
            t = TensorType(p.data.shape, as_dtype(p.data.dtype))
        except ValueError as e:
            raise TraceError(f"parameter {name!r}: {e}") from None
        op = self.builder.create("sc.param", [], {"name": name}, result_types=[t], result_hints=[name])
        self.graph.weights[name] = p.data
        self.param_values[key] = op.result
        return op.result

    def constant(self, array: np.ndarray, loc: str | None) -> Value:
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self.constants:
            op = self.builder.create("sc.constant", [], {"value": array}, loc=loc)
            self.constants[key] = op.result
        return self.constants[key]


def current_tracer() -> Tracer:
    t = _current.get()
    if t is None:
        raise TraceError("no trace is active: sparsec ops run on sc.Tensor values inside sc.trace(...)")
    return t


class Tensor:
    """A traced value: shape, dtype and operator overloading; every operation records an op."""

    __slots__ = ("value",)
    __array_priority__ = 1000

    def __init__(self, value: Value):
        self.value = value

    @property
    def type(self) -> TensorType:
        return self.value.type

    @property
    def shape(self) -> tuple:
        return self.value.type.shape

    @property
    def dtype(self) -> DType:
        return self.value.type.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"sc.Tensor({self.value.type.pretty()})"

    # -- what tracing cannot record ------------------------------------------------------------
    def _no(self, what: str):
        raise TraceError(f"{what} of a traced sc.Tensor depends on runtime data and cannot be traced "
                         f"(data-dependent Python control flow); use sc.ops.where / masks instead.\n"
                         f"  at {_user_line()}")

    def __bool__(self):
        self._no("the truth value")

    def __int__(self):
        self._no("int()")

    def __float__(self):
        self._no("float()")

    def __index__(self):
        self._no("using it as a Python index")

    def __array__(self, *a, **k):
        self._no("converting it to a NumPy array")

    def __iter__(self):
        self._no("iterating over it")

    def __len__(self):
        d = self.shape[0] if self.shape else None
        if isinstance(d, int):
            return d
        self._no("len() of a symbolic dim")

    __hash__ = object.__hash__

    # -- operators (the functional API lives in sc.ops) ---------------------------------------------
    def __add__(self, o): return _ops().add(self, o)
    def __radd__(self, o): return _ops().add(o, self)
    def __sub__(self, o): return _ops().sub(self, o)
    def __rsub__(self, o): return _ops().sub(o, self)
    def __mul__(self, o): return _ops().mul(self, o)
    def __rmul__(self, o): return _ops().mul(o, self)
    def __truediv__(self, o): return _ops().div(self, o)
    def __rtruediv__(self, o): return _ops().div(o, self)
    def __pow__(self, o): return _ops().pow(self, o)
    def __rpow__(self, o): return _ops().pow(o, self)
    def __matmul__(self, o): return _ops().matmul(self, o)
    def __rmatmul__(self, o): return _ops().matmul(o, self)
    def __neg__(self): return _ops().neg(self)
    def __lt__(self, o): return _ops().less(self, o)
    def __le__(self, o): return _ops().less_equal(self, o)
    def __gt__(self, o): return _ops().greater(self, o)
    def __ge__(self, o): return _ops().greater_equal(self, o)
    def __eq__(self, o): return _ops().equal(self, o)  # noqa: PLR0124 - elementwise, like NumPy
    def __ne__(self, o): return _ops().not_equal(self, o)
    def __and__(self, o): return _ops().logical_and(self, o)
    def __or__(self, o): return _ops().logical_or(self, o)
    def __invert__(self): return _ops().logical_not(self)
    def __getitem__(self, idx): return _ops().getitem(self, idx)

    # -- NumPy-like methods ---------------------------------------------------------------------
    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _ops().reshape(self, shape)

    def transpose(self, *perm):
        if len(perm) == 1 and isinstance(perm[0], (tuple, list)):
            perm = tuple(perm[0])
        return _ops().transpose(self, perm or None)

    @property
    def T(self):
        return _ops().transpose(self, None)

    def astype(self, dtype): return _ops().cast(self, dtype)
    def sum(self, axis=None, keepdims=False): return _ops().sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _ops().mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _ops().max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return _ops().min(self, axis, keepdims)
    def argmax(self, axis=-1, keepdims=False): return _ops().argmax(self, axis, keepdims)
    def softmax(self, axis=-1): return _ops().softmax(self, axis)
    def exp(self): return _ops().exp(self)
    def sqrt(self): return _ops().sqrt(self)


def _ops():
    from .. import ops
    return ops


def as_tensor(x, like: DType | None = None) -> Tensor:
    """Operands of traced ops: Tensors pass, Parameters become ``sc.param``, scalars and small
    NumPy arrays become ``sc.constant`` (scalars take the dtype ``like``)."""
    if isinstance(x, Tensor):
        return x
    tr = current_tracer()
    if isinstance(x, Parameter):
        return Tensor(tr.param(x))
    if isinstance(x, (bool, int, float, np.number, np.bool_)):
        if like is None:
            like = as_dtype("bool") if isinstance(x, (bool, np.bool_)) else (
                as_dtype("int64") if isinstance(x, (int, np.integer)) else as_dtype("float32"))
        return Tensor(tr.constant(np.array(x, dtype=like.np), user_location()))
    if isinstance(x, np.ndarray):
        if x.size > 4096:
            raise TraceError(f"a NumPy array of {x.size} elements used in traced code; "
                             f"make it a Parameter of the module (weights are never inlined)\n  at {_user_line()}")
        try:
            as_dtype(x.dtype)
        except ValueError as e:
            raise TraceError(f"{e}\n  at {_user_line()}") from None
        return Tensor(tr.constant(x, user_location()))
    raise TraceError(f"cannot use {type(x).__name__} as a tensor in traced code\n  at {_user_line()}")


def emit(name: str, *operands, **attrs):
    """Record op ``name`` on traced operands; returns a Tensor or a tuple of Tensors.

    Operands may be ``None`` (absent optional), Tensors, Parameters or lists of them (variadic).
    Shape-rule failures become ``TraceError`` pointing at the user's line.
    """
    tr = current_tracer()
    flat: list[Value] = []
    for o in operands:
        if o is None:
            continue
        if isinstance(o, (list, tuple)):
            flat.extend(as_tensor(x).value for x in o)
        else:
            flat.append(as_tensor(o).value)
    loc = user_location()
    try:
        op = tr.builder.create(name, flat, attrs, loc=loc)
    except VerifyError as e:
        raise TraceError(f"{e}\n  at {_user_line()}") from None
    res = tuple(Tensor(r) for r in op.results)
    return res[0] if len(res) == 1 else res


def _specs_and_names(fn, specs: Sequence[TensorSpec]) -> list[str | None]:
    target = fn.forward if hasattr(fn, "forward") and callable(fn.forward) else fn
    try:
        params = [p for p in inspect.signature(target).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = []
    for i, s in enumerate(specs):
        names.append(s.name or (params[i].name if i < len(params) else None))
    return names


def trace(fn: Callable, *specs: TensorSpec, name: str = "main") -> Graph:
    """Run ``fn`` (a function or ``sc.nn.Module``) over ``sc.Tensor`` proxies; return the Graph.

    ``fn`` may return a Tensor, a tuple/list of Tensors, or a dict (keys become output names).
    """
    for i, s in enumerate(specs):
        if not isinstance(s, TensorSpec):
            raise TraceError(f"sc.trace: input {i} must be an sc.TensorSpec, got {type(s).__name__}")
    names = _specs_and_names(fn, specs)
    f = Function(name, [s.type for s in specs], names)
    g = Graph([f])
    param_names = {}
    if hasattr(fn, "named_parameters"):
        param_names = {id(p): n for n, p in fn.named_parameters()}
    tr = Tracer(g, f, param_names)
    token = _current.set(tr)
    try:
        out = fn(*[Tensor(a) for a in f.args])
    finally:
        _current.reset(token)
    result_names: list[str | None] = []
    if isinstance(out, dict):
        result_names = [str(k) for k in out]
        outs = list(out.values())
    elif isinstance(out, (tuple, list)):
        outs = list(out)
    else:
        outs = [out]
    values = []
    for i, o in enumerate(outs):
        if isinstance(o, Parameter):
            token = _current.set(tr)
            try:
                o = as_tensor(o)
            finally:
                _current.reset(token)
        if not isinstance(o, Tensor):
            raise TraceError(f"sc.trace: output {i} of {getattr(fn, '__name__', type(fn).__name__)} is "
                             f"{type(o).__name__}, expected an sc.Tensor computed from the inputs")
        values.append(o.value)
    tr.builder.create("func.return", values)
    f.result_names = result_names
    return g.verify()
