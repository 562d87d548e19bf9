"""The state of a graph under construction by the ``graphs()`` strategy, and the helpers the
per-op generators use to find (or make) operands of the right type.

A generator (``generators.GENERATORS[name]``) is ``fn(draw, ctx) -> (operands, attrs) | None``.
It may emit helper ops through ``ctx`` (``ctx.positive(x)`` emits ``abs(x) + 1``), so inputs
of ``log``/``sqrt``/``rsqrt`` stay in their domain and graphs rarely produce NaN or inf.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from hypothesis import strategies as st

from ..ir import Builder, Function, Graph, TensorType, Value, as_dtype
from ..ir.types import broadcast_shapes

F32 = as_dtype("f32")
I64 = as_dtype("i64")
BOOL = as_dtype("i1")

#: ops whose float results stay within a few units of zero whatever their inputs
BOUNDED_OPS = frozenset({"sc.tanh", "sc.sin", "sc.cos", "sc.sigmoid", "sc.erf", "sc.softmax", "sc.rms_norm",
                         "sc.layer_norm", "sc.rope"})


class GeneratorBug(AssertionError):
    """A generator proposed operands or attributes the op's definition rejects."""


class GraphContext:
    """Values available so far, the builder, the weight store and the dims in play."""

    def __init__(self, draw, graph: Graph, function: Function, dtypes, static_dims, symbols, seed: int):
        self.draw = draw
        self.graph = graph
        self.function = function
        self.builder = Builder(function.body)
        self.values: list[Value] = list(function.args)
        self.dtypes = tuple(as_dtype(d) for d in dtypes)
        self.static_dims = tuple(static_dims)
        # symbols bound by the inputs (attributes may only name these: references resolve them at run time)
        self.symbols = tuple(s for s in symbols
                             if any(s in (a.type.shape if isinstance(a.type, TensorType) else ())
                                    for a in function.args))
        self.rng = np.random.default_rng(seed)
        self.small: set[int] = {id(a) for a in function.args}  # values known to be within ~[-4, 4]
        self.dispatches: list[dict] = []  # sc.moe_dispatch results: order, offsets, ids, T, k, E
        self._param_count = 0

    # -- creating ops ----------------------------------------------------------------------
    def create(self, name: str, operands, attrs: dict | None = None, regions=None):
        from ..errors import VerifyError
        try:
            op = self.builder.create(name, list(operands), dict(attrs or {}), regions=regions)
        except VerifyError as e:
            types = ", ".join(v.type.pretty() for v in operands)
            raise GeneratorBug(f"the generator for {name} proposed operands ({types}) attrs {attrs}: {e}") from None
        self.values.extend(op.results)
        if name in BOUNDED_OPS:
            self.small.update(id(r) for r in op.results)
        return op

    def emit(self, name: str, *operands: Value, **attrs):
        op = self.create(name, operands, attrs)
        return op.results[0] if len(op.results) == 1 else tuple(op.results)

    def constant(self, array) -> Value:
        arr = np.asarray(array)
        v = self.emit("sc.constant", value=arr)
        if arr.dtype.kind in "fiu" and arr.size and np.abs(arr.astype(np.float64)).max() <= 4:
            self.small.add(id(v))
        return v

    def scalar(self, x, dtype) -> Value:
        return self.constant(np.array(x, dtype=as_dtype(dtype).np))

    def param(self, shape, dtype=F32, low: float = -1.0, high: float = 1.0, integer: bool = False) -> Value:
        """``sc.param`` of a static shape with a random weight in ``graph.weights``."""
        dt = as_dtype(dtype)
        name = f"w{self._param_count}"
        self._param_count += 1
        if integer:
            data = self.rng.integers(int(low), int(high), size=shape).astype(dt.np)
        else:
            data = self.rng.uniform(low, high, size=shape).astype(dt.np)
        t = TensorType(tuple(shape), dt)
        op = self.builder.create("sc.param", [], {"name": name}, result_types=[t], result_hints=[name])
        self.graph.weights[name] = data
        self.values.append(op.result)
        if max(abs(low), abs(high)) <= 4:
            self.small.add(id(op.result))
        return op.result

    # -- choosing operands ------------------------------------------------------------------
    @staticmethod
    def fits(name: str, operands, attrs: dict | None = None):
        """The result types of op ``name`` on ``operands``, or None when its definition rejects them."""
        from ..ir.opdef import get_opdef
        opdef = get_opdef(name)
        try:
            attrs = opdef.normalize_attrs(attrs)
            return opdef.infer_types([v.type for v in operands], attrs)
        except Exception:  # noqa: BLE001 - any rejection means "does not fit"
            return None

    def vector(self, n, dtype, low=-1.0, high=1.0) -> Value | None:
        """A 1-d value of length ``n``: an existing one, or a new param when ``n`` is static."""
        v = self.pick(lambda v: v.type.shape == (n,) and v.type.dtype == as_dtype(dtype))
        if v is not None and self.draw(st.booleans()):
            return v
        if isinstance(n, int):
            return self.param((n,), dtype, low, high)
        return v

    def pick(self, pred: Callable[[Value], bool] = lambda v: True) -> Value | None:
        cands = [v for v in self.values if isinstance(v.type, TensorType) and pred(v)]
        if not cands:
            return None
        return self.draw(st.sampled_from(cands))

    def pick_float(self, pred=lambda v: True) -> Value | None:
        return self.pick(lambda v: v.type.dtype.is_float and pred(v))

    def pick_numeric(self, pred=lambda v: True) -> Value | None:
        return self.pick(lambda v: not v.type.dtype.is_bool and pred(v))

    def pick_rank(self, lo: int, hi: int = 8, kind: str | None = None) -> Value | None:
        def ok(v):
            t = v.type
            if not lo <= t.rank <= hi:
                return False
            return kind is None or t.dtype.kind == kind or (kind == "numeric" and not t.dtype.is_bool)
        return self.pick(ok)

    def partner(self, a: Value, dtype=None) -> Value:
        """A value whose shape broadcasts with ``a``'s, of ``a``'s dtype (or ``dtype``); a scalar
        constant when nothing fits."""
        dt = as_dtype(dtype) if dtype is not None else a.type.dtype

        v = self.pick(lambda v: v.type.dtype == dt and broadcasts(a, v)) if self.draw(st.integers(0, 4)) else None
        if v is None:
            choices = [1, 2, 0] + ([-1] if dt.np.kind in "fi" else [])
            v = self.scalar(self.draw(st.sampled_from(choices)) if not dt.is_bool else True, dt)
        return v

    def is_small(self, v: Value) -> bool:
        return id(v) in self.small

    # -- keeping values in range -------------------------------------------------------------
    def positive(self, x: Value) -> Value:
        """``abs(x) + 1`` (floats) or ``max(abs(x), 1)`` (ints): strictly positive."""
        a = self.emit("sc.abs", x)
        if x.type.dtype.is_float:
            return self.emit("sc.add", a, self.scalar(1, x.type.dtype))
        return self.emit("sc.maximum", a, self.scalar(1, x.type.dtype))

    def bounded(self, x: Value) -> Value:
        """``x`` itself when known small, else ``tanh(x)`` (floats)."""
        if self.is_small(x) or not x.type.dtype.is_float:
            return x
        return self.emit("sc.tanh", x)

    def as_float(self, x: Value) -> Value:
        if x.type.dtype.is_float:
            return x
        return self.emit("sc.cast", x, dtype=self.float_dtype())

    def float_dtype(self):
        floats = [d for d in self.dtypes if d.is_float]
        return floats[0] if floats else F32

    def bool_like(self, a: Value) -> Value:
        """A boolean that broadcasts with ``a``: an existing one or a fresh comparison."""
        b = self.pick(lambda v: v.type.dtype.is_bool and broadcasts(a, v))
        if b is not None and self.draw(st.integers(0, 2)):
            return b
        x = a if not a.type.dtype.is_bool else self.emit("sc.cast", a, dtype=self.float_dtype())
        return self.emit("sc.greater", x, self.partner(x))

    def clamp_indices(self, x: Value, n: int) -> Value:
        """An integer copy of ``x`` with every value in ``[0, n)`` (``n`` static)."""
        if not x.type.dtype.is_int:
            x = self.emit("sc.cast", x, dtype=I64)
        if x.type.dtype != I64:
            x = self.emit("sc.cast", x, dtype=I64)
        lo = self.emit("sc.maximum", x, self.scalar(0, I64))
        return self.emit("sc.minimum", lo, self.scalar(n - 1, I64))

    def static_dim(self) -> int:
        return self.draw(st.sampled_from(self.static_dims))

    def dim(self):
        return self.draw(st.sampled_from(self.static_dims + self.symbols))


def broadcasts(a: Value, b: Value) -> bool:
    try:
        broadcast_shapes(a.type.shape, b.type.shape)
    except ValueError:
        return False
    return True
