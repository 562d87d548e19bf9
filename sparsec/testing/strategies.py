"""Hypothesis strategies: random well-typed graphs over the ``sc`` dialect, and input arrays and
weights that fit a graph.

``graphs()`` draws 1-3 inputs (some with symbolic dims such as ``tokens``), then repeatedly
picks an op from the generator table and operands whose types fit. Everything it decides is a
hypothesis draw, so a failing example shrinks to a graph with few ops, simple ops (the table is
ordered simplest first) and small inputs.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ..ir import Function, Graph, TensorType, as_dtype
from ..ir.opdef import REGISTRY
from ..ir.types import QuantType, dim_symbols
from .context import GraphContext
from .generators import GENERATORS

SYMBOLS = ("tokens", "batch")
DEFAULT_DTYPES = ("f32", "i64")
INPUT_NAMES = ("x", "y", "z")

# simple ops first: hypothesis shrinks a drawn op towards the front of this order
_FIRST = ("sc.add", "sc.neg", "sc.mul", "sc.sub", "sc.abs", "sc.cast", "sc.exp", "sc.tanh", "sc.greater",
          "sc.where", "sc.constant")


def available_ops(ops=None) -> list[str]:
    """Ops the strategy can generate now (declared and in the table), simplest first."""
    names = [n for n in GENERATORS if n in REGISTRY and (ops is None or n in ops)]
    if ops is not None:
        unknown = sorted(set(ops) - set(names))
        if unknown:
            raise ValueError(f"graphs(ops=...): no generator or no declaration for {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(names))}")
    first = [n for n in _FIRST if n in names]
    return first + sorted(n for n in names if n not in first)


@st.composite
def graphs(draw, max_ops: int = 8, ops=None, dtypes=DEFAULT_DTYPES, symbolic: bool = True, min_ops: int = 1,
           max_inputs: int = 3) -> Graph:
    """A random well-typed ``Graph`` (function ``main``) with up to ``max_ops`` drawn ops (plus
    the helper ops that keep values in range), weights in ``graph.weights``.

    ``ops`` restricts the drawn ops (helpers such as ``sc.abs``/``sc.add``/``sc.tanh``/
    ``sc.cast``/``sc.param`` may still appear); ``dtypes`` are the input and cast dtypes.
    """
    names = available_ops(ops)
    dtypes = tuple(as_dtype(d) for d in dtypes)
    seed = draw(st.integers(0, 2**32 - 1), label="weights seed")
    static_dims = (1,) + tuple(draw(st.lists(st.sampled_from([2, 3, 4, 8]), min_size=1, max_size=2, unique=True),
                                    label="static dims"))
    symbols = SYMBOLS[:draw(st.integers(1, len(SYMBOLS)))] if symbolic else ()
    pool = static_dims[1:] + symbols + (1,)
    n_in = draw(st.integers(1, max_inputs), label="inputs")
    types = []
    for _ in range(n_in):
        rank = draw(st.integers(1, 3))
        shape = tuple(draw(st.sampled_from(pool)) for _ in range(rank))
        types.append(TensorType(shape, draw(st.sampled_from(dtypes))))
    f = Function("main", types, list(INPUT_NAMES[:n_in]))
    g = Graph([f])
    ctx = GraphContext(draw, g, f, dtypes, static_dims, symbols, seed)
    n_ops = draw(st.integers(min_ops, max_ops), label="ops")
    for _ in range(n_ops):
        for _attempt in range(4):
            name = draw(st.sampled_from(names))
            args = GENERATORS[name](draw, ctx)
            if args is not None:
                ctx.create(name, *args)  # (operands, attrs) or (operands, attrs, regions)
                break
    _add_return(draw, ctx)
    return g


def _add_return(draw, ctx: GraphContext) -> None:
    """Return the unused results (the last op's always; others may be left dead for DCE to find)."""
    f = ctx.function
    sinks = [r for op in f.body.ops if op.name not in ("sc.param", "sc.constant") for r in op.results if not r.uses]
    outs = [v for v in sinks[:-1] if not draw(st.booleans())] + sinks[-1:]
    if not outs:
        outs = [f.args[0]]
    ctx.builder.create("func.return", outs)
    f.result_names = [f"out{i}" for i in range(len(outs))] if draw(st.booleans()) else []


# ---------------------------------------------------------------------------------------------
# inputs and weights

def graph_symbols(graph: Graph, function: str | None = None) -> list[str]:
    fn = graph.functions[function] if function else graph.main
    out: list[str] = []
    for a in fn.args:
        if isinstance(a.type, TensorType):
            for d in a.type.shape:
                for s in (dim_symbols(d) if isinstance(d, str) else ()):
                    if s not in out:
                        out.append(s)
    return out


def random_array(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Values that keep graphs finite: floats in [-2, 2], ints in [-4, 4] (unsigned [0, 8])."""
    dt = as_dtype(dtype)
    if dt.is_bool:
        return rng.random(shape) < 0.5
    if dt.is_int:
        lo = 0 if dt.np.kind == "u" else -4
        return rng.integers(lo, lo + 9, size=shape).astype(dt.np)
    return rng.uniform(-2, 2, size=shape).astype(dt.np)


def random_inputs(graph: Graph, rng: np.random.Generator, bindings: dict[str, int] | None = None,
                  max_size: int = 4, function: str | None = None) -> tuple[np.ndarray, ...]:
    """Arrays for ``graph``'s inputs; symbolic dims bound consistently (``bindings`` or random)."""
    fn = graph.functions[function] if function else graph.main
    b = dict(bindings or {})
    for s in graph_symbols(graph, function):
        b.setdefault(s, int(rng.integers(1, max_size + 1)))
    out = []
    for a in fn.args:
        if isinstance(a.type, QuantType):
            raise ValueError(f"input {a.name_hint or a.index} is quantized ({a.type}); pass inputs explicitly")
        out.append(random_array(rng, a.type.concrete(b), a.type.dtype))
    return tuple(out)


def bindings_of(graph: Graph, arrays, function: str | None = None) -> dict[str, int]:
    """The sizes ``arrays`` give the symbolic dims of ``graph``'s inputs."""
    fn = graph.functions[function] if function else graph.main
    b: dict[str, int] = {}
    for a, x in zip(fn.args, arrays):
        if isinstance(a.type, TensorType):
            for d, n in zip(a.type.shape, np.shape(x)):
                if isinstance(d, str) and dim_symbols(d) == (d,):
                    b[d] = n
    return b


@st.composite
def inputs_for(draw, graph: Graph, max_size: int = 4, function: str | None = None) -> tuple[np.ndarray, ...]:
    """Input arrays for ``graph``: each symbolic dim bound to one size in ``[1, max_size]``."""
    bindings = {s: draw(st.integers(1, max_size), label=f"dim {s}") for s in graph_symbols(graph, function)}
    seed = draw(st.integers(0, 2**32 - 1), label="inputs seed")
    return random_inputs(graph, np.random.default_rng(seed), bindings, function=function)


def random_weights(graph: Graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh arrays for every ``sc.param`` of tensor type, in the ranges of ``random_array``,
    scaled by 1/sqrt(fan-in) for matrices so activations stay O(1)."""
    out = {}
    for name, t in graph.params().items():
        if not isinstance(t, TensorType):
            continue
        shape = t.concrete({})
        a = random_array(rng, shape, t.dtype)
        if t.dtype.is_float and len(shape) >= 2:
            a = (a / np.sqrt(max(shape[-1], 1))).astype(t.dtype.np)
        out[name] = a
    return out


@st.composite
def weights_for(draw, graph: Graph) -> dict[str, np.ndarray]:
    """A weight store for ``graph``'s params (integer params keep the range of the graph's own
    weights, since they are index tables)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="weights seed"))
    out = random_weights(graph, rng)
    for name, a in list(out.items()):
        old = graph.weights.get(name)
        if old is not None and old.dtype.kind in "iub" and old.size:
            out[name] = rng.integers(old.min(), old.max() + 1, size=old.shape).astype(old.dtype)
    return out
