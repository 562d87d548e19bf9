"""Per-op generators for the random-graph strategy: op name -> ``fn(draw, ctx)`` returning
``(operands, attrs)`` (or ``(operands, attrs, regions)``) for an op whose operand types fit, or
None when nothing fits.

Every op in the registry has an entry here or in ``EXCLUDED`` (with the reason); a test
checks that. Generators keep values in the ops' domains (positive inputs for ``log``, indices
in range for gathers, expert ids in ``[0, E)`` for MoE dispatch) so that interpreting a graph
on random inputs rarely produces NaN/inf and never fails.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ..ir import OpResult, as_dtype
from ..ops.conv import conv_out_size
from .context import BOOL, I64, GraphContext

GENERATORS: dict = {}

#: ops the table does not generate directly, and why
EXCLUDED: dict[str, str] = {
    "sc.param": "declared result type; every generator that needs a weight creates one with ctx.param, "
                "so sc.param appears in most graphs (with its array in graph.weights)",
    "sc.nonzero": "data-dependent result length, which the CPU target cannot lower (random graphs are "
                  "compiled); tested in tests/test_pass_hf_loop.py (op, round trip, interpreter, pass)",
}


def generator(*names: str):
    def deco(fn):
        for n in names:
            GENERATORS[n] = fn
        return fn
    return deco


# ---------------------------------------------------------------------------------------------
# elementwise

_DOMAIN_POSITIVE = ("sc.log", "sc.sqrt", "sc.rsqrt", "sc.reciprocal")
_NEEDS_SMALL = ("sc.exp", "sc.square")
_FLOAT_UNARY = ("sc.exp", "sc.log", "sc.sqrt", "sc.rsqrt", "sc.tanh", "sc.sin", "sc.cos", "sc.erf", "sc.gelu",
                "sc.gelu_tanh", "sc.silu", "sc.sigmoid", "sc.reciprocal")
_ANY_UNARY = ("sc.neg", "sc.abs", "sc.relu", "sc.square")


def _unary(name):
    def gen(draw, ctx: GraphContext):
        x = ctx.pick_float() if name in _FLOAT_UNARY else ctx.pick_numeric()
        if x is None:
            return None
        if name in _DOMAIN_POSITIVE:
            x = ctx.positive(x)
        elif name in _NEEDS_SMALL:
            x = ctx.bounded(x)
        return [x], {}
    return gen


for _n in _FLOAT_UNARY + _ANY_UNARY:
    GENERATORS[_n] = _unary(_n)


@generator("sc.add", "sc.sub", "sc.mul", "sc.maximum", "sc.minimum")
def _binary(draw, ctx):
    a = ctx.pick_numeric()
    if a is None:
        return None
    return [a, ctx.partner(a)], {}


@generator("sc.div")
def _div(draw, ctx):
    a = ctx.pick_numeric()
    if a is None:
        return None
    return [a, ctx.positive(ctx.partner(a))], {}


@generator("sc.pow")
def _pow(draw, ctx):
    a = ctx.pick_float()
    if a is None:
        return None
    b = ctx.bounded(ctx.partner(a))
    return [ctx.positive(a), b], {}


@generator("sc.equal", "sc.not_equal", "sc.less", "sc.less_equal", "sc.greater", "sc.greater_equal")
def _compare(draw, ctx):
    a = ctx.pick()
    return [a, ctx.partner(a)], {}


@generator("sc.logical_and", "sc.logical_or")
def _logic(draw, ctx):
    a = ctx.pick(lambda v: v.type.dtype.is_bool)
    if a is None:
        x = ctx.pick_numeric()
        if x is None:
            return None
        a = ctx.bool_like(x)
    return [a, ctx.bool_like(a)], {}


@generator("sc.logical_not")
def _not(draw, ctx):
    a = ctx.pick(lambda v: v.type.dtype.is_bool)
    if a is None:
        a = ctx.bool_like(ctx.pick())
    return [a], {}


@generator("sc.where")
def _where(draw, ctx):
    a = ctx.pick()
    b = ctx.partner(a)
    cond = ctx.pick(lambda v: v.type.dtype.is_bool and ctx.fits("sc.where", [v, a, b]) is not None)
    if cond is None or not draw(st.integers(0, 2)):
        cond = ctx.emit(draw(st.sampled_from(["sc.greater", "sc.not_equal"])), a, b)
    return [cond, a, b], {}


# ---------------------------------------------------------------------------------------------
# core

@generator("sc.cast")
def _cast(draw, ctx):
    x = ctx.pick()
    targets = [d for d in ctx.dtypes + (BOOL,) if d != x.type.dtype]
    if not targets:
        return None
    dt = draw(st.sampled_from(targets))
    if x.type.dtype.is_float and dt.is_int and not ctx.is_small(x):
        x = ctx.bounded(x)  # float -> int of a huge or non-finite value is undefined
    return [x], {"dtype": dt}


@generator("sc.constant")
def _constant(draw, ctx):
    dt = draw(st.sampled_from(ctx.dtypes + (BOOL,)))
    rank = draw(st.integers(0, 2))
    shape = tuple(ctx.static_dim() for _ in range(rank))
    if dt.is_bool:
        value = ctx.rng.integers(0, 2, size=shape).astype(bool)
    elif dt.is_int:
        value = ctx.rng.integers(0 if dt.name == "ui8" else -3, 4, size=shape).astype(dt.np)
    else:
        value = ctx.rng.uniform(-2, 2, size=shape).astype(dt.np)
    return [], {"value": np.asarray(value)}


@generator("sc.iota")
def _iota(draw, ctx):
    x = ctx.pick_rank(1)
    if x is None:
        return None
    return [x], {"axis": draw(st.integers(-x.type.rank, x.type.rank - 1)),
                 "dtype": draw(st.sampled_from([I64, as_dtype("i32")]))}


# ---------------------------------------------------------------------------------------------
# MoE: topk ids in range -> dispatch -> permute -> grouped_matmul -> combine

def _expert_ids(draw, ctx, num_experts: int):
    """An int ``[T, k]`` tensor of expert ids in ``[0, E)``: top-k of router scores when
    ``sc.topk`` exists, else an existing 2-D value clamped into range."""
    x = ctx.pick_rank(2, 2, "numeric")
    if x is None:
        return None
    if "sc.topk" in _registry() and x.type.dtype.is_float and draw(st.booleans()):
        k = draw(st.integers(1, min(2, num_experts)))
        router = ctx.param((x.type.shape[1], num_experts), x.type.dtype) if isinstance(x.type.shape[1], int) \
            else None
        if router is not None and "sc.matmul" in _registry():
            scores = ctx.emit("sc.matmul", x, router)
            if "sc.softmax_topk" in _registry() and draw(st.booleans()):
                _vals, ids = ctx.emit("sc.softmax_topk", scores, k=k, normalize=draw(st.booleans()))
            else:
                _vals, ids = ctx.emit("sc.topk", scores, k=k)
            return ids
    k = x.type.shape[1]
    if not isinstance(k, int) or k < 1 or k > 4:
        return None
    return ctx.clamp_indices(x, num_experts)


def _registry():
    from ..ir.opdef import REGISTRY
    return REGISTRY


@generator("sc.softmax_topk")
def _softmax_topk(draw, ctx):
    x = ctx.pick_float(lambda v: v.type.rank >= 1 and isinstance(v.type.shape[-1], int) and v.type.shape[-1] >= 1)
    if x is None:
        return None
    return [x], {"k": draw(st.integers(1, min(x.type.shape[-1], 6))), "normalize": draw(st.booleans())}


@generator("sc.moe_dispatch")
def _moe_dispatch(draw, ctx):
    e = draw(st.integers(1, 4))
    ids = _expert_ids(draw, ctx, e)
    if ids is None:
        return None
    return [ids], {"num_experts": e}


def _dispatch(draw, ctx):
    """An existing sc.moe_dispatch (order, offsets, T, k, E) or a new one; None if impossible."""
    recs = [op for op in ctx.function.body.ops if op.name == "sc.moe_dispatch"]
    if recs and draw(st.integers(0, 2)):
        op = draw(st.sampled_from(recs))
    else:
        args = _moe_dispatch(draw, ctx)
        if args is None:
            return None
        op = ctx.create("sc.moe_dispatch", *args)
    ids = op.operands[0]
    t, k = ids.type.shape
    return op.results[0], op.results[1], ids, t, k, op.attrs["num_experts"]


@generator("sc.moe_permute")
def _moe_permute(draw, ctx):
    d = _dispatch(draw, ctx)
    if d is None:
        return None
    order, _offsets, _ids, t, k, _e = d
    x = ctx.pick(lambda v: v.type.rank == 2 and v.type.shape[0] == t)
    if x is None:
        return None
    return [x, order], {"top_k": k}


def _permuted_rows(draw, ctx):
    """``(x_perm, order, offsets, ids, T, k, E)`` with float rows ``x_perm`` in expert order."""
    d = _dispatch(draw, ctx)
    if d is None:
        return None
    order, offsets, ids, t, k, e = d
    xp = ctx.pick(lambda v: isinstance(v, OpResult) and v.op.name in ("sc.moe_permute", "sc.grouped_matmul",
                                                                      "sc.moe_gated_grouped_matmul")
                  and v.op.operands[-1 if v.op.name != "sc.moe_permute" else 1] in (order, offsets)
                  and v.type.dtype.is_float and isinstance(v.type.shape[1], int))
    if xp is None:
        x = ctx.pick_float(lambda v: v.type.rank == 2 and v.type.shape[0] == t and isinstance(v.type.shape[1], int))
        if x is None:
            return None
        xp = ctx.emit("sc.moe_permute", x, order, top_k=k)
    return xp, order, offsets, ids, t, k, e


@generator("sc.grouped_matmul")
def _grouped_matmul(draw, ctx):
    r = _permuted_rows(draw, ctx)
    if r is None:
        return None
    xp, _order, offsets, _ids, _t, _k, e = r
    n = ctx.static_dim()
    kdim = xp.type.shape[1]
    return [xp, ctx.param((e, n, kdim), xp.type.dtype, -1 / np.sqrt(kdim), 1 / np.sqrt(kdim)), offsets], {}


@generator("sc.moe_gated_grouped_matmul")
def _gated_grouped_matmul(draw, ctx):
    r = _permuted_rows(draw, ctx)
    if r is None:
        return None
    xp, _order, offsets, _ids, _t, _k, e = r
    n = ctx.static_dim()
    kdim = xp.type.shape[1]
    s = 1 / np.sqrt(kdim)
    wg = ctx.param((e, n, kdim), xp.type.dtype, -s, s)
    wu = ctx.param((e, n, kdim), xp.type.dtype, -s, s)
    act = draw(st.sampled_from(["silu", "gelu", "gelu_tanh", "relu"]))
    return [xp, wg, wu, offsets], {"activation": act}


@generator("sc.moe_combine")
def _moe_combine(draw, ctx):
    r = _permuted_rows(draw, ctx)
    if r is None:
        return None
    xp, order, _offsets, ids, t, k, _e = r
    w = ctx.pick(lambda v: v.type.shape == (t, k) and v.type.dtype == xp.type.dtype)
    if w is None or not draw(st.integers(0, 2)):
        w = ctx.emit("sc.cast", ids, dtype=xp.type.dtype)  # any [T, k] weights will do
    return [xp, order, w], {}


# ---------------------------------------------------------------------------------------------
# shape ops

@generator("sc.reshape")
def _reshape(draw, ctx):
    from ..ir.types import dim_mul
    x = ctx.pick()
    dims = list(x.type.shape)
    for _ in range(draw(st.integers(1, 2))):
        move = draw(st.sampled_from(["merge", "split", "insert1", "drop1", "infer"]))
        if move == "merge" and len(dims) >= 2:
            i = draw(st.integers(0, len(dims) - 2))
            dims[i:i + 2] = [dim_mul(dims[i], dims[i + 1])]
        elif move == "split":
            cands = [i for i, d in enumerate(dims) if isinstance(d, int) and d in (4, 8)]
            if cands:
                i = draw(st.sampled_from(cands))
                dims[i:i + 1] = [2, dims[i] // 2]
        elif move == "insert1":
            dims.insert(draw(st.integers(0, len(dims))), 1)
        elif move == "drop1" and 1 in dims:
            dims.remove(1)
    # only symbols bound by the inputs may be named (the reference resolves them); else use -1
    from ..ir.types import dim_symbols
    unbound = [i for i, d in enumerate(dims) if isinstance(d, str) and not set(dim_symbols(d)) <= set(ctx.symbols)]
    if len(unbound) > 1:
        return None
    if unbound:
        dims[unbound[0]] = -1
    elif dims and draw(st.integers(0, 3)) == 0:
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    if ctx.fits("sc.reshape", [x], {"shape": dims}) is None:
        return None
    return [x], {"shape": dims}


@generator("sc.transpose")
def _transpose(draw, ctx):
    x = ctx.pick()
    return [x], {"perm": list(draw(st.permutations(range(x.type.rank))))}


@generator("sc.concat")
def _concat(draw, ctx):
    x = ctx.pick_rank(1)
    if x is None:
        return None
    axis = draw(st.integers(-x.type.rank, x.type.rank - 1))
    cands = [v for v in ctx.values if ctx.fits("sc.concat", [x, v], {"axis": axis})]
    others = [draw(st.sampled_from(cands)) for _ in range(draw(st.integers(0, 2)))]
    inputs = [x] + others
    if ctx.fits("sc.concat", inputs, {"axis": axis}) is None:
        return None
    return inputs, {"axis": axis}


@generator("sc.slice")
def _slice(draw, ctx):
    x = ctx.pick_rank(1)
    if x is None:
        return None
    axis = draw(st.integers(-x.type.rank, x.type.rank - 1))
    n = x.type.shape[axis]
    if isinstance(n, int):
        bound = st.none() | st.integers(-n - 1, n + 1)
        start, stop = draw(bound), draw(bound)
        step = draw(st.sampled_from([1, 1, 2, -1, -2]))
    else:  # bounds on a symbolic dim must lie within it: keep the whole dim
        start, stop, step = None, None, draw(st.sampled_from([1, -1]))
    attrs = {"axis": axis, "start": start, "stop": stop, "step": step}
    t = ctx.fits("sc.slice", [x], attrs)
    if t is None or t[0].shape[axis % x.type.rank] == 0:
        return None
    return [x], attrs


@generator("sc.broadcast_to")
def _broadcast_to(draw, ctx):
    x = ctx.pick()
    shape = [ctx.draw(st.sampled_from(ctx.static_dims + ctx.symbols)) if d == 1 and draw(st.booleans()) else d
             for d in x.type.shape]
    shape = [ctx.dim() if not ctx.symbols else draw(st.sampled_from(ctx.static_dims + ctx.symbols))
             for _ in range(draw(st.integers(0, 1)))] + shape
    attrs = {"shape": shape}
    if ctx.fits("sc.broadcast_to", [x], attrs) is None:
        return None
    return [x], attrs


@generator("sc.expand_dims")
def _expand_dims(draw, ctx):
    x = ctx.pick()
    n = draw(st.integers(1, 2))
    rank = x.type.rank + n
    axes = draw(st.lists(st.integers(-rank, rank - 1), min_size=n, max_size=n,
                         unique_by=lambda a: a % rank))
    return [x], {"axes": axes}


@generator("sc.squeeze")
def _squeeze(draw, ctx):
    x = ctx.pick(lambda v: 1 in v.type.shape)
    if x is None:
        return None
    ones = [i for i, d in enumerate(x.type.shape) if d == 1]
    axes = draw(st.lists(st.sampled_from(ones), min_size=1, max_size=len(ones), unique=True))
    return [x], {"axes": axes}


@generator("sc.stack")
def _stack(draw, ctx):
    x = ctx.pick()
    same = [v for v in ctx.values if v.type == x.type]
    inputs = [x] + [draw(st.sampled_from(same)) for _ in range(draw(st.integers(0, 2)))]
    return inputs, {"axis": draw(st.integers(-x.type.rank - 1, x.type.rank))}


# ---------------------------------------------------------------------------------------------
# nn ops

@generator("sc.rms_norm")
def _rms_norm(draw, ctx):
    x = ctx.pick_float(lambda v: v.type.rank >= 1)
    if x is None:
        return None
    w = ctx.vector(x.type.shape[-1], x.type.dtype, 0.5, 1.5)
    if w is None:
        return None
    return [x, w], {"eps": draw(st.sampled_from([1e-6, 1e-5]))}


@generator("sc.layer_norm")
def _layer_norm(draw, ctx):
    x = ctx.pick_float(lambda v: v.type.rank >= 1)
    if x is None:
        return None
    n = draw(st.integers(0, 2))
    ops = [x]
    for _ in range(n):
        v = ctx.vector(x.type.shape[-1], x.type.dtype, 0.5, 1.5)
        if v is None:
            break
        ops.append(v)
    return ops, {"eps": draw(st.sampled_from([1e-5, 1e-6]))}


@generator("sc.rope")
def _rope(draw, ctx):
    x = ctx.pick_float(lambda v: v.type.rank >= 2 and isinstance(v.type.shape[-1], int)
                       and v.type.shape[-1] % 2 == 0)
    if x is None:
        return None
    rank, hd = x.type.rank, x.type.shape[-1]
    if rank >= 3 and draw(st.booleans()):
        iota = ctx.emit("sc.iota", x, axis=rank - 2)
        pos = ctx.emit("sc.expand_dims", iota, axes=[0]) if "sc.expand_dims" in _registry() else iota
    else:
        pos = ctx.emit("sc.iota", x, axis=rank - 2)
    rotary = draw(st.sampled_from([0] + list(range(2, hd + 1, 2))))
    return [x, pos], {"theta": draw(st.sampled_from([10000.0, 100.0])), "rotary_dim": rotary,
                      "interleaved": draw(st.booleans())}


def _to_heads(draw, ctx, x, heads: int):
    """``x [T, C]`` as ``[1, heads, T, C / heads]`` (reshape + transpose)."""
    t, c = x.type.shape
    y = ctx.emit("sc.reshape", x, shape=[1, t if not isinstance(t, str) or t in ctx.symbols else -1,
                                         heads, c // heads])
    return ctx.emit("sc.transpose", y, perm=[0, 2, 1, 3])


@generator("sc.attention")
def _attention(draw, ctx):
    if "sc.reshape" not in _registry() or "sc.transpose" not in _registry():
        return None
    x = ctx.pick_float(lambda v: v.type.rank == 2 and isinstance(v.type.shape[1], int) and v.type.shape[1] >= 2)
    if x is None:
        return None
    c = x.type.shape[1]
    heads = draw(st.sampled_from([h for h in (1, 2, 4) if c % h == 0]))
    q = _to_heads(draw, ctx, x, heads)
    y = ctx.pick(lambda v: v.type.rank == 2 and v.type.shape[1] == c and v.type.dtype == x.type.dtype)
    kv = _to_heads(draw, ctx, y, heads)
    k = ctx.bounded(kv)
    v = kv
    if heads > 1 and draw(st.booleans()):  # grouped-query: fewer kv heads
        k = ctx.emit("sc.slice", k, axis=1, start=0, stop=heads // 2, step=1)
        v = ctx.emit("sc.slice", v, axis=1, start=0, stop=heads // 2, step=1)
    ops = [q, k, v]
    if draw(st.booleans()):  # an existing bool or float value that broadcasts to [B, Hq, S, L]
        mask = ctx.pick(lambda m: (m.type.dtype.is_bool or m.type.dtype.is_float)
                        and ctx.fits("sc.attention", ops + [m]) is not None)
        if mask is not None:
            ops.append(mask)
    return ops, {"causal": draw(st.booleans()), "scale": draw(st.sampled_from([0.0, 0.5]))}


@generator("sc.kv_write")
def _kv_write(draw, ctx):
    cache = ctx.pick_float(lambda v: v.type.rank >= 1 and any(isinstance(d, int) for d in v.type.shape))
    if cache is None:
        return None
    axis = draw(st.sampled_from([i for i, d in enumerate(cache.type.shape) if isinstance(d, int)]))
    n = cache.type.shape[axis]
    s = draw(st.integers(1, n))
    src = ctx.pick(lambda v: v.type == cache.type) or cache
    new = src if s == n else ctx.emit("sc.slice", src, axis=axis, start=0, stop=s, step=1)
    return [cache, new], {"axis": axis - cache.type.rank if draw(st.booleans()) else axis}


# ---------------------------------------------------------------------------------------------
# region ops

@generator("sc.fused")
def _fused(draw, ctx):
    """An elementwise group: one or two operands, a short chain of elementwise ops, one or two yields."""
    from ..ir import Block, Builder, Region
    a = ctx.pick_numeric()
    if a is None:
        return None
    ins = [a] + ([ctx.partner(a)] if draw(st.booleans()) else [])
    block = Block([v.type for v in ins])
    b = Builder(block)
    vals = list(block.args)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["sc.add", "sc.mul", "sc.neg", "sc.maximum", "sc.abs"]))
        x = draw(st.sampled_from(vals))
        if name in ("sc.add", "sc.mul", "sc.maximum"):
            vals.append(b.emit(name, x, draw(st.sampled_from([v for v in vals if v.type == x.type]))))
        else:
            vals.append(b.emit(name, x))
    outs = [vals[-1]] + ([vals[-2]] if len(vals) > len(ins) + 1 and draw(st.booleans()) else [])
    b.create("sc.yield", outs)
    return ins, {"kind": "elementwise"}, [Region([block])]


# ---------------------------------------------------------------------------------------------
# reductions, softmax, top-k

def _axes(draw, rank):
    if rank == 0:
        return []
    return draw(st.lists(st.integers(-rank, rank - 1), max_size=rank, unique_by=lambda a: a % rank))


@generator("sc.sum", "sc.max", "sc.min")
def _reduce(draw, ctx):
    x = ctx.pick_numeric()
    if x is None:
        return None
    return [x], {"axes": _axes(draw, x.type.rank), "keepdims": draw(st.booleans())}


@generator("sc.mean")
def _mean(draw, ctx):
    x = ctx.pick_float()
    if x is None:
        return None
    return [x], {"axes": _axes(draw, x.type.rank), "keepdims": draw(st.booleans())}


@generator("sc.argmax")
def _argmax(draw, ctx):
    x = ctx.pick_numeric(lambda v: v.type.rank >= 1)
    if x is None:
        return None
    return [x], {"axis": draw(st.integers(-x.type.rank, x.type.rank - 1)), "keepdims": draw(st.booleans())}


@generator("sc.softmax", "sc.log_softmax")
def _softmax(draw, ctx):
    x = ctx.pick_float(lambda v: v.type.rank >= 1)
    if x is None:
        return None
    return [x], {"axis": draw(st.integers(-x.type.rank, x.type.rank - 1))}


@generator("sc.topk")
def _topk(draw, ctx):
    x = ctx.pick_numeric(lambda v: any(isinstance(d, int) and d >= 1 for d in v.type.shape))
    if x is None:
        return None
    axis = draw(st.sampled_from([i for i, d in enumerate(x.type.shape) if isinstance(d, int) and d >= 1]))
    k = draw(st.integers(1, x.type.shape[axis]))
    return [x], {"k": k, "axis": axis - x.type.rank if draw(st.booleans()) else axis,
                 "largest": draw(st.booleans())}


# ---------------------------------------------------------------------------------------------
# matmul, linear

def _weight_range(k):
    s = 1 / np.sqrt(max(k, 1))
    return -s, s


@generator("sc.matmul")
def _matmul(draw, ctx):
    a = ctx.pick_numeric()
    if a is None or a.type.rank == 0:
        return None
    ta = a.type.rank >= 2 and draw(st.booleans())
    tb = draw(st.booleans())
    k = a.type.shape[-2] if ta else a.type.shape[-1]
    attrs = {"transpose_a": ta, "transpose_b": tb}
    cands = [v for v in ctx.values if ctx.fits("sc.matmul", [a, v], attrs)]
    if cands and draw(st.booleans()):
        return [a, draw(st.sampled_from(cands))], attrs
    if not isinstance(k, int):
        return None
    n = ctx.static_dim()
    shape = (n, k) if tb else (k, n)
    dt = a.type.dtype
    lo, hi = _weight_range(k) if dt.is_float else (-2, 3)
    b = ctx.param(shape, dt, lo, hi, integer=not dt.is_float)
    return [a, b], attrs


@generator("sc.linear")
def _linear(draw, ctx):
    x = ctx.pick_float(lambda v: v.type.rank >= 1 and isinstance(v.type.shape[-1], int))
    if x is None:
        return None
    k, n = x.type.shape[-1], ctx.static_dim()
    w = ctx.param((n, k), x.type.dtype, *_weight_range(k))
    return [x, w] + ([ctx.param((n,), x.type.dtype)] if draw(st.booleans()) else []), {}


@generator("sc.sparse_input_linear")
def _sparse_input_linear(draw, ctx):
    x = ctx.pick_float(lambda v: v.type.rank >= 1 and isinstance(v.type.shape[-1], int))
    if x is None:
        return None
    k, n = x.type.shape[-1], ctx.static_dim()
    w_t = ctx.param((k, n), x.type.dtype, *_weight_range(k))
    return [x, w_t], {"threshold": draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1e9]))}


# ---------------------------------------------------------------------------------------------
# gather / scatter: indices are made in range by construction

def _indices(draw, ctx, n):
    """An integer tensor (any shape) with values in ``[0, n)``."""
    if isinstance(n, int):
        v = ctx.pick()
        return ctx.clamp_indices(v, n)
    v = ctx.pick(lambda v: n in v.type.shape)
    return ctx.emit("sc.iota", v, axis=v.type.shape.index(n))


def _argmax_keep(draw, ctx, x, axis):
    """``argmax(x, axis, keepdims)``: indices in range along ``axis`` with ``x``'s other dims."""
    src = x if not x.type.dtype.is_bool else ctx.emit("sc.cast", x, dtype=I64)
    return ctx.emit("sc.argmax", src, axis=axis, keepdims=True)


@generator("sc.take")
def _take(draw, ctx):
    x = ctx.pick_rank(1)
    if x is None:
        return None
    axis = draw(st.integers(-x.type.rank, x.type.rank - 1))
    return [x, _indices(draw, ctx, x.type.shape[axis])], {"axis": axis}


@generator("sc.take_along_axis")
def _take_along_axis(draw, ctx):
    x = ctx.pick_rank(1)
    if x is None:
        return None
    axis = draw(st.integers(-x.type.rank, x.type.rank - 1))
    n = x.type.shape[axis]
    if isinstance(n, int) and draw(st.booleans()):
        def fits(v):  # v's shape as indices (it is clamped into range and cast to i64 below)
            return ctx.fits("sc.take_along_axis", [x, _Typed(v.type.with_dtype(I64))], {"axis": axis})
        v = ctx.pick(lambda v: v.type.rank == x.type.rank and fits(v) is not None)
        if v is not None:
            return [x, ctx.clamp_indices(v, n)], {"axis": axis}
    if "sc.argmax" not in _registry():
        return None
    return [x, _argmax_keep(draw, ctx, x, axis)], {"axis": axis}


class _Typed:
    """A stand-in operand with only a type, for ``ctx.fits`` checks."""

    def __init__(self, t):
        self.type = t


@generator("sc.embedding")
def _embedding(draw, ctx):
    vocab, dim = draw(st.integers(2, 8)), ctx.static_dim()
    ids = _indices(draw, ctx, vocab)
    table = ctx.param((vocab, dim), ctx.float_dtype())
    return [ids, table], {}


def _scatter(name):
    def gen(draw, ctx):
        base = ctx.pick(lambda v: v.type.rank >= 1 and (name == "sc.scatter" or not v.type.dtype.is_bool))
        if base is None or "sc.argmax" not in _registry():
            return None
        axis = draw(st.integers(-base.type.rank, base.type.rank - 1))
        idx = _argmax_keep(draw, ctx, base, axis)
        upd = ctx.pick(lambda v: v.type.shape == idx.type.shape and v.type.dtype == base.type.dtype)
        if upd is None or not draw(st.integers(0, 2)):
            upd = ctx.emit("sc.slice", base, axis=axis, start=0, stop=1, step=1)
            if name == "sc.scatter_add" and base.type.dtype.is_float:
                upd = ctx.bounded(upd)
        return [base, idx, upd], {"axis": axis}
    return gen


GENERATORS["sc.scatter"] = _scatter("sc.scatter")
GENERATORS["sc.scatter_add"] = _scatter("sc.scatter_add")


@generator("sc.index_add")
def _index_add(draw, ctx):
    base = ctx.pick_numeric(lambda v: v.type.rank >= 1)
    if base is None:
        return None
    axis = draw(st.integers(-base.type.rank, base.type.rank - 1))
    n = base.type.shape[axis]
    if isinstance(n, int) and draw(st.booleans()):
        v = ctx.pick(lambda v: v.type.rank == 1 and isinstance(v.type.shape[0], int) and v.type.shape[0] <= n)
        if v is not None:
            index = ctx.clamp_indices(v, n)
            m = v.type.shape[0]
            src = ctx.emit("sc.slice", base, axis=axis, start=0, stop=m, step=1)
            return [base, index, src], {"axis": axis}
    index = ctx.emit("sc.iota", base, axis=axis)
    src = ctx.pick(lambda v: v.type == base.type) or base
    return [base, index, src], {"axis": axis}


@generator("sc.one_hot")
def _one_hot(draw, ctx):
    depth = draw(st.integers(1, 6))
    return [_indices(draw, ctx, depth)], {"depth": depth,
                                          "dtype": draw(st.sampled_from(ctx.dtypes + (BOOL,)))}


def _static(d) -> bool:
    return isinstance(d, int) and d >= 1


@generator("sc.conv2d")
def gen_conv2d(draw, ctx):
    """A 4-d float operand (an existing one, or a lower-rank value whose dims after the first are
    static, given unit channel/height axes or a batch axis), a random weight ``[O, C/g, kh, kw]``,
    maybe a bias; random stride, padding, dilation and groups (sometimes the patch-embedding form)."""
    x = ctx.pick_float(lambda v: 1 <= v.type.rank <= 4 and all(_static(d) for d in v.type.shape[v.type.rank > 1:]))
    if x is None:
        return None
    if x.type.rank == 3:
        as_channels = _static(x.type.shape[0]) and draw(st.booleans())
        x = ctx.emit("sc.expand_dims", x, axes=[0] if as_channels else [1])
    elif x.type.rank < 3:  # [W] -> [1, 1, 1, W], [A, W] -> [A, 1, 1, W]
        x = ctx.emit("sc.expand_dims", x, axes=[0, 1, 2] if x.type.rank == 1 else [1, 2])
    _, C, H, W = x.type.shape
    if draw(st.booleans()) and H >= 2 and W >= 2:  # patch embedding
        kh, kw = draw(st.integers(1, H)), draw(st.integers(1, W))
        stride, padding, dilation, groups = (kh, kw), (0, 0, 0, 0), (1, 1), 1
    else:
        kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        groups = draw(st.sampled_from([g for g in (1, 2, 3, 4) if C % g == 0]))
        if conv_out_size(H, kh, stride[0], padding[0], padding[2], dilation[0]) < 1 or \
                conv_out_size(W, kw, stride[1], padding[1], padding[3], dilation[1]) < 1:
            return None
    O = groups * draw(st.integers(1, 3))
    fan_in = C // groups * kh * kw
    s = 1 / np.sqrt(fan_in)
    dt = x.type.dtype
    ops = [x, ctx.param((O, C // groups, kh, kw), dt, -s, s)]
    if draw(st.booleans()):
        ops.append(ctx.param((O,), dt, -1, 1))
    return ops, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


@generator("sc.cumsum")
def gen_cumsum(draw, ctx):
    """Any non-boolean value of rank >= 1, a random axis (either sign), exclusive, reverse."""
    x = ctx.pick_numeric(lambda v: v.type.rank >= 1)
    if x is None:
        return None
    r = x.type.rank
    return [x], {"axis": draw(st.integers(-r, r - 1)), "exclusive": draw(st.booleans()),
                 "reverse": draw(st.booleans())}
