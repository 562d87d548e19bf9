"""One converter per ONNX op type: ``fn(ctx, node, inputs, attrs) -> output values``.

``inputs`` are the node's input values in order (``None`` for an absent optional input): a traced
``sc.Tensor``, or a ``Const`` known at import (initializers, constants, shapes). A converter
returns one value per node output (``Tensor`` or ``Const``). Attribute defaults follow the ONNX
operator specs (opset 13 and later; where an attribute became an input, e.g. ``axes`` of
``ReduceMean`` in opset 18, both forms are read). ``sym_fold`` evaluates the shape
computations whose inputs are known but contain symbolic dims.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from .. import ops as O
from ..frontend.tracer import Tensor, as_tensor, emit
from ..ir import as_dtype, broadcast_shapes
from ..ir.types import dim_div, dim_mul, dim_prod
from ..ops._util import norm_axis
from .importer import Const, onnx_dtype

CONVERTERS: dict = {}


def converter(*names):
    def deco(fn):
        for n in names:
            CONVERTERS[n] = fn
        return fn
    return deco


def attributes(node) -> dict:
    """The node's attributes as Python values (tensors as NumPy arrays, strings decoded)."""
    from onnx import AttributeProto, helper, numpy_helper
    out = {}
    for at in node.attribute:
        if at.type == AttributeProto.TENSOR:
            out[at.name] = numpy_helper.to_array(at.t)
        elif at.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            out[at.name] = at
        else:
            v = helper.get_attribute_value(at)
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [s.decode("utf-8") for s in v]
            out[at.name] = v
    return out


def _c(value, dtype) -> Tensor:
    """A scalar constant of ``dtype`` (an sc DType or NumPy dtype)."""
    return as_tensor(np.array(value, dtype=as_dtype(dtype).np))


def _dt(x: Tensor):
    return x.dtype


def _input(ins, i):
    return ins[i] if i < len(ins) else None


def _axes_of(ctx, ins, attrs, i: int = 1):
    """``axes`` from input ``i`` (opset 13/18 style) or the attribute; None when absent."""
    v = _input(ins, i)
    if v is not None:
        return [int(a) for a in ctx.const_input(v, "axes").ints()]
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    return None


# ---------------------------------------------------------------------------------------------
# elementwise

_UNARY = {"Abs": "abs", "Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Tanh": "tanh", "Sin": "sin",
          "Cos": "cos", "Erf": "erf", "Sigmoid": "sigmoid", "Relu": "relu", "Reciprocal": "reciprocal",
          "Not": "logical_not"}


def _unary(sc_name):
    def conv(ctx, node, ins, a):
        return emit(f"sc.{sc_name}", ctx.tensor(ins[0]))
    return conv


for _k, _v in _UNARY.items():
    CONVERTERS[_k] = _unary(_v)

@converter("Add")
def _add(ctx, node, ins, a):
    for lin, b in ((ins[0], ins[1]), (ins[1], ins[0])):
        op = getattr(getattr(lin, "value", None), "op", None)
        if (op is not None and op.name == "sc.linear" and len(op.operands) == 2 and not lin.value.uses
                and isinstance(b, Const) and not b.symbolic and b.arr.shape == (lin.shape[-1],)
                and b.arr.dtype == lin.dtype.np):
            # MatMul + Add(bias) -> one sc.linear with a bias; the op without it is erased at the end
            # of the import when nothing else reads it
            ctx.superseded.append(op)
            return emit("sc.linear", Tensor(op.operands[0]), Tensor(op.operands[1]), ctx.tensor(b))
    return emit("sc.add", ctx.tensor(ins[0]), ctx.tensor(ins[1]))


_BINARY = {"Sub": "sub", "Mul": "mul", "Div": "div", "Equal": "equal", "Less": "less",
           "LessOrEqual": "less_equal", "Greater": "greater", "GreaterOrEqual": "greater_equal",
           "And": "logical_and", "Or": "logical_or", "Xor": "not_equal"}


def _binary(sc_name):
    def conv(ctx, node, ins, a):
        return emit(f"sc.{sc_name}", ctx.tensor(ins[0]), ctx.tensor(ins[1]))
    return conv


for _k, _v in _BINARY.items():
    CONVERTERS[_k] = _binary(_v)


def _variadic(sc_name):
    def conv(ctx, node, ins, a):
        xs = [ctx.tensor(v) for v in ins if v is not None]
        y = xs[0]
        for x in xs[1:]:
            y = emit(f"sc.{sc_name}", y, x)
        return y
    return conv


CONVERTERS["Max"] = _variadic("maximum")
CONVERTERS["Min"] = _variadic("minimum")
CONVERTERS["Sum"] = _variadic("add")


@converter("Mean")
def _mean(ctx, node, ins, a):
    xs = [v for v in ins if v is not None]
    y = _variadic("add")(ctx, node, xs, a)
    return emit("sc.div", y, _c(len(xs), y.dtype)) if len(xs) > 1 else y


@converter("Pow")
def _pow(ctx, node, ins, a):
    x, y = ctx.tensor(ins[0]), ctx.tensor(ins[1])
    if x.dtype.is_float:
        return emit("sc.pow", x, O.cast(y, x.dtype))
    f = as_dtype("f64")
    return O.cast(emit("sc.pow", O.cast(x, f), O.cast(y, f)), x.dtype)


@converter("Where")
def _where(ctx, node, ins, a):
    return emit("sc.where", ctx.tensor(ins[0]), ctx.tensor(ins[1]), ctx.tensor(ins[2]))


@converter("Identity")
def _identity(ctx, node, ins, a):
    return ins[0]


@converter("Dropout")
def _dropout(ctx, node, ins, a):
    tm = _input(ins, 2)
    if tm is not None and bool(ctx.const_input(tm, "training_mode").numeric()):
        ratio = _input(ins, 1)
        r = float(ctx.const_input(ratio, "ratio").numeric()) if ratio is not None else 0.5
        if r != 0.0:
            ctx.fail(f"training_mode=true with ratio {r} (random dropout) is not supported (inference only)")
    x = ins[0]
    if len(node.output) > 1 and node.output[1]:
        shape = x.shape if isinstance(x, Const) else ctx.tensor(x).shape
        mask = O.broadcast_to(_c(True, "bool"), shape) if shape else _c(True, "bool")
        return [x, mask]
    return [x]


@converter("Cast")
def _cast(ctx, node, ins, a):
    dt = onnx_dtype(a["to"], ctx.where())
    return O.cast(ctx.tensor(ins[0]), dt)


@converter("CastLike")
def _castlike(ctx, node, ins, a):
    other = ins[1]
    dt = as_dtype(other.dtype) if isinstance(other, Const) else other.dtype
    return O.cast(ctx.tensor(ins[0]), dt)


@converter("Clip")
def _clip(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    lo, hi = _input(ins, 1), _input(ins, 2)
    if lo is not None:
        x = emit("sc.maximum", x, ctx.tensor(lo))
    if hi is not None:
        x = emit("sc.minimum", x, ctx.tensor(hi))
    return x


@converter("LeakyRelu")
def _leaky(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    alpha = a.get("alpha", 0.01)
    return emit("sc.where", emit("sc.less", x, _c(0, x.dtype)), emit("sc.mul", x, _c(alpha, x.dtype)), x)


@converter("PRelu")
def _prelu(ctx, node, ins, a):
    x, s = ctx.tensor(ins[0]), ctx.tensor(ins[1])
    return emit("sc.where", emit("sc.less", x, _c(0, x.dtype)), emit("sc.mul", x, s), x)


@converter("Elu")
def _elu(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    alpha = a.get("alpha", 1.0)
    neg = emit("sc.mul", emit("sc.sub", emit("sc.exp", x), _c(1, x.dtype)), _c(alpha, x.dtype))
    return emit("sc.where", emit("sc.greater", x, _c(0, x.dtype)), x, neg)


@converter("Selu")
def _selu(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    alpha, gamma = a.get("alpha", 1.67326319217681884765625), a.get("gamma", 1.05070102214813232421875)
    neg = emit("sc.sub", emit("sc.mul", emit("sc.exp", x), _c(alpha, x.dtype)), _c(alpha, x.dtype))
    y = emit("sc.where", emit("sc.greater", x, _c(0, x.dtype)), x, neg)
    return emit("sc.mul", y, _c(gamma, x.dtype))


@converter("HardSigmoid")
def _hardsigmoid(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    y = emit("sc.add", emit("sc.mul", x, _c(a.get("alpha", 0.2), x.dtype)), _c(a.get("beta", 0.5), x.dtype))
    return emit("sc.minimum", emit("sc.maximum", y, _c(0, x.dtype)), _c(1, x.dtype))


@converter("HardSwish")
def _hardswish(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    y = emit("sc.add", emit("sc.mul", x, _c(1 / 6, x.dtype)), _c(0.5, x.dtype))
    y = emit("sc.minimum", emit("sc.maximum", y, _c(0, x.dtype)), _c(1, x.dtype))
    return emit("sc.mul", x, y)


def _softplus_t(x):
    # log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)) (no overflow)
    e = emit("sc.exp", emit("sc.neg", emit("sc.abs", x)))
    return emit("sc.add", emit("sc.relu", x), emit("sc.log", emit("sc.add", e, _c(1, x.dtype))))


@converter("Softplus")
def _softplus(ctx, node, ins, a):
    return _softplus_t(ctx.tensor(ins[0]))


@converter("Softsign")
def _softsign(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    return emit("sc.div", x, emit("sc.add", emit("sc.abs", x), _c(1, x.dtype)))


@converter("Mish")
def _mish(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    return emit("sc.mul", x, emit("sc.tanh", _softplus_t(x)))


@converter("ThresholdedRelu")
def _trelu(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    return emit("sc.where", emit("sc.greater", x, _c(a.get("alpha", 1.0), x.dtype)), x, _c(0, x.dtype))


@converter("Gelu")
def _gelu(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    approx = a.get("approximate", "none")
    if approx not in ("none", "tanh"):
        ctx.fail(f"approximate={approx!r} (expected 'none' or 'tanh')")
    return emit("sc.gelu_tanh" if approx == "tanh" else "sc.gelu", x)


@converter("Sign")
def _sign(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    z = _c(0, x.dtype)
    return emit("sc.where", emit("sc.greater", x, z), _c(1, x.dtype),
                emit("sc.where", emit("sc.less", x, z), _c(-1 if x.dtype.np.kind != "u" else 0, x.dtype), z))


@converter("IsNaN")
def _isnan(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    return emit("sc.not_equal", x, x)


@converter("IsInf")
def _isinf(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    pos, neg = a.get("detect_positive", 1), a.get("detect_negative", 1)
    out = None
    for on, v in ((pos, np.inf), (neg, -np.inf)):
        if on:
            t = emit("sc.equal", x, _c(v, x.dtype))
            out = t if out is None else emit("sc.logical_or", out, t)
    if out is None:
        out = emit("sc.not_equal", x, x)
        out = emit("sc.logical_and", out, emit("sc.logical_not", out))
    return out


# ---------------------------------------------------------------------------------------------
# shape ops

def _sym_vals(values, dtype=np.int64) -> Const:
    """A Const of dims (ints and symbols): numeric when every element is an int."""
    vals = list(values)
    if any(isinstance(v, str) for v in vals):
        return Const(np.array(vals + [None], dtype=object)[:-1], dtype)
    return Const(np.array(vals, dtype=dtype).reshape(len(vals)), dtype)


def _shape_of(ctx, v) -> tuple:
    return tuple(v.shape) if isinstance(v, Const) else tuple(ctx.tensor(v).shape)


@converter("Shape")
def _shape(ctx, node, ins, a):
    shape = list(_shape_of(ctx, ins[0]))
    start, end = a.get("start", 0), a.get("end", None)
    return _sym_vals(shape[builtins.slice(start, end)])


@converter("Size")
def _size(ctx, node, ins, a):
    n = dim_prod(_shape_of(ctx, ins[0]))
    return Const(np.array(n, dtype=object) if isinstance(n, str) else np.array(n, np.int64), np.int64)


def _target_shape(ctx, x: Tensor, shape: list, allowzero: int) -> tuple:
    out = []
    for k, d in enumerate(shape):
        if d == 0 and not allowzero:
            if k >= x.ndim:
                ctx.fail(f"shape entry {k} is 0 (copy the input dim) but the input has rank {x.ndim}")
            d = x.shape[k]
        out.append(d)
    return tuple(out)


@converter("Reshape")
def _reshape(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    shape = ctx.const_input(ins[1], "the target shape of Reshape").ints()
    return O.reshape(x, _target_shape(ctx, x, shape, a.get("allowzero", 0)))


@converter("Flatten")
def _flatten(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    axis = a.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return O.reshape(x, (dim_prod(x.shape[:axis]), dim_prod(x.shape[axis:])))


@converter("Transpose")
def _transpose(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    perm = a.get("perm") or list(range(x.ndim))[::-1]
    return O.transpose(x, tuple(perm))


@converter("Concat")
def _concat(ctx, node, ins, a):
    xs = [ctx.tensor(v) for v in ins if v is not None]
    return emit("sc.concat", xs, axis=a["axis"])


@converter("Squeeze")
def _squeeze(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    axes = _axes_of(ctx, ins, a)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
        if any(not isinstance(d, int) for d in x.shape):
            ctx.fail(f"Squeeze without axes on {x.type.pretty()}: symbolic dims might be 1 at run time; give axes")
    return O.squeeze(x, tuple(axes)) if axes else x


@converter("Unsqueeze")
def _unsqueeze(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    axes = _axes_of(ctx, ins, a)
    return O.expand_dims(x, tuple(axes))


@converter("Expand")
def _expand(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    shape = tuple(ctx.const_input(ins[1], "the shape of Expand").ints())
    target = broadcast_shapes(tuple(x.shape), shape)
    return O.broadcast_to(x, target)


@converter("Tile")
def _tile(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    reps = [int(r) for r in ctx.const_input(ins[1], "the repeats of Tile").ints()]
    if all(r == 1 for r in reps):
        return x
    inter, big, out = [], [], []
    for d, r in zip(x.shape, reps):
        inter += [1, d]
        big += [r, d]
        out.append(dim_mul(r, d))
    y = O.reshape(x, tuple(inter))
    y = O.broadcast_to(y, tuple(big))
    return O.reshape(y, tuple(out))


@converter("ConstantOfShape")
def _constant_of_shape(ctx, node, ins, a):
    shape = ctx.const_input(ins[0], "the shape of ConstantOfShape")
    value = a.get("value", np.zeros((1,), np.float32)).reshape(())
    dims = shape.ints()
    if not shape.symbolic:
        return Const(np.full(dims, value, dtype=value.dtype))
    return O.broadcast_to(as_tensor(np.array(value)), tuple(dims))


@converter("Range")
def _range(ctx, node, ins, a):
    start, limit, delta = (ctx.const_input(v, "the bounds of Range") for v in ins)
    s, lim, d = start.ints()[0], limit.ints()[0], delta.ints()[0]
    if s == 0 and d == 1 and isinstance(lim, str):
        dt = as_dtype(limit.dtype)
        base = O.broadcast_to(_c(0, "int64"), (lim,))
        return O.cast(emit("sc.iota", base, axis=0, dtype=as_dtype("int64")), dt)
    ctx.fail(f"Range({s}, {lim}, {d}) has a length that is not a symbolic dim")


@converter("Constant")
def _constant(ctx, node, ins, a):
    if "value" in a:
        return Const(a["value"])
    for k, dt in (("value_float", np.float32), ("value_int", np.int64)):
        if k in a:
            return Const(np.array(a[k], dt))
    for k, dt in (("value_floats", np.float32), ("value_ints", np.int64)):
        if k in a:
            return Const(np.array(a[k], dt).reshape(-1))
    ctx.fail(f"unsupported Constant attribute(s): {', '.join(a) or '(none)'}")


_BIG = 2 ** 31 - 1


def _slice_items(ctx, shape, starts, ends, axes, steps):
    items = [builtins.slice(None)] * len(shape)
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = norm_axis(int(ax), len(shape))
        s, e, st = int(s), int(e), int(st)
        if st == 0:
            ctx.fail("slice step 0")
        n = shape[ax]
        if not isinstance(n, int):
            if (st > 0 and e >= _BIG) or (st < 0 and e <= -_BIG):
                e = None
            if (st > 0 and s <= -_BIG) or (st < 0 and s >= _BIG):
                s = None
            if s is not None and st > 0 and s >= _BIG:
                ctx.fail(f"start {s} past the end of symbolic dim {n}")
        items[ax] = builtins.slice(s, e, st)
    return tuple(items)


def _slice_args(ctx, ins, rank):
    starts = ctx.const_input(ins[1], "the starts of Slice").ints()
    ends = ctx.const_input(ins[2], "the ends of Slice").ints()
    axes = ctx.const_input(ins[3], "the axes of Slice").ints() if _input(ins, 3) is not None else list(range(len(starts)))
    steps = ctx.const_input(ins[4], "the steps of Slice").ints() if _input(ins, 4) is not None else [1] * len(starts)
    return starts, ends, axes, steps


@converter("Slice")
def _slice(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    starts, ends, axes, steps = _slice_args(ctx, ins, x.ndim)
    static, symbolic = [], []
    for spec in zip(starts, ends, axes, steps):
        (symbolic if any(isinstance(v, str) for v in spec[:2]) else static).append(spec)
    if static:
        x = O.getitem(x, _slice_items(ctx, x.shape, *zip(*static)))
    for s, e, ax, st in symbolic:
        # a bound that is a symbolic dim (x[:seq] of a static buffer): gather the positions
        # s .. e-1, whose count e - s must be a symbolic dim itself
        ax = norm_axis(int(ax), x.ndim)
        n = x.shape[ax]
        if int(st) != 1 or (isinstance(s, int) and s < 0) or (isinstance(e, int) and e < 0):
            ctx.fail(f"slice [{s}:{e}:{st}] with a symbolic bound needs step 1 and non-negative bounds")
        if s == 0 and e == n:
            continue
        length = _d_sub(e, s)
        if length is None or isinstance(length, int) and length < 0:
            ctx.fail(f"slice [{s}:{e}] of dim {n}: its length {e} - {s} is not a symbolic dim")
        key = ("positions", length)
        if key not in ctx.dim_tensors:
            ctx.dim_tensors[key] = emit("sc.iota", O.broadcast_to(_c(0, "int64"), (length,)), axis=0,
                                        dtype=as_dtype("int64"))
        idx = ctx.dim_tensors[key]
        if s != 0:
            idx = emit("sc.add", idx, _c(s, "int64") if isinstance(s, int) else ctx.dim_tensor(s))
        x = emit("sc.take", x, idx, axis=ax)
    return x


@converter("Split")
def _split(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    axis = norm_axis(a.get("axis", 0), x.ndim)
    n = x.shape[axis]
    k = len(node.output)
    sp = _input(ins, 1)
    if sp is not None:
        sizes = [int(v) for v in ctx.const_input(sp, "the split sizes").ints()]
    elif "split" in a:
        sizes = list(a["split"])
    else:
        if not isinstance(n, int):
            q = dim_div(n, k)
            if q is None:
                ctx.fail(f"cannot split symbolic dim {n} into {k} equal parts")
            return [_sym_split(x, axis, q, i, k) for i in range(k)]
        chunk = -(-n // k)
        sizes = [min(chunk, n - i * chunk) for i in range(k)]
    outs, pos = [], 0
    for s in sizes:
        outs.append(O.getitem(x, (builtins.slice(None),) * axis + (builtins.slice(pos, pos + s),)))
        pos += s
    return outs


def _sym_split(x, axis, q, i, k):
    # equal parts of a symbolic dim: reshape [.., k, n/k, ..], take part i, squeeze
    shape = list(x.shape)
    y = O.reshape(x, tuple(shape[:axis] + [k, q] + shape[axis + 1:]))
    return O.getitem(y, (builtins.slice(None),) * axis + (i,))


# ---------------------------------------------------------------------------------------------
# gather / scatter

def _nonneg(ctx, idx: Tensor, n) -> Tensor:
    """ONNX indices may be negative (counting from the end); sc indices may not."""
    producer = getattr(idx.value, "op", None)
    if producer is not None and (producer.name, idx.value.index) in (("sc.topk", 1), ("sc.argmax", 0), ("sc.iota", 0)):
        return idx      # never negative
    if isinstance(n, int):
        nn = _c(n, idx.dtype)
    else:
        nn = O.cast(ctx.dim_tensor(n), idx.dtype)
    return emit("sc.where", emit("sc.less", idx, _c(0, idx.dtype)), emit("sc.add", idx, nn), idx)


def _index(ctx, v, n) -> Tensor:
    if isinstance(v, Const) and not v.symbolic and isinstance(n, int):
        i = v.numeric()
        if i.size and (i.min() < -n or i.max() >= n):
            bad = i[(i < -n) | (i >= n)].flat[0]
            ctx.fail(f"index {int(bad)} is out of range for a dim of size {n}")
        return as_tensor(np.where(i < 0, i + n, i).astype(i.dtype))
    return _nonneg(ctx, ctx.tensor(v), n)


@converter("Gather")
def _gather(ctx, node, ins, a):
    table = ins[0]
    if (isinstance(table, Const) and not table.symbolic and table.arr.ndim == 2 and table.arr.dtype.kind == "f"
            and a.get("axis", 0) in (0, -2)):
        # rows of a weight matrix: an embedding lookup (sc.embedding, which quantized tables support)
        return emit("sc.embedding", _index(ctx, ins[1], table.arr.shape[0]), ctx.tensor(table))
    x = ctx.tensor(table)
    ax = norm_axis(a.get("axis", 0), x.ndim)
    return emit("sc.take", x, _index(ctx, ins[1], x.shape[ax]), axis=ax)


@converter("GatherElements")
def _gather_elements(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    ax = norm_axis(a.get("axis", 0), x.ndim)
    return emit("sc.take_along_axis", x, _index(ctx, ins[1], x.shape[ax]), axis=ax)


@converter("ScatterElements")
def _scatter_elements(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    ax = norm_axis(a.get("axis", 0), x.ndim)
    red = a.get("reduction", "none")
    if red not in ("none", "add"):
        ctx.fail(f"reduction={red!r} is not supported (only 'none' and 'add')")
    idx = _index(ctx, ins[1], x.shape[ax])
    return emit("sc.scatter" if red == "none" else "sc.scatter_add", x, idx, ctx.tensor(ins[2]), axis=ax)


@converter("Trilu")
def _trilu(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    k = int(ctx.const_input(ins[1], "k of Trilu").ints()[0]) if _input(ins, 1) is not None else 0
    rows = emit("sc.iota", x, axis=x.ndim - 2, dtype=as_dtype("int64"))
    cols = emit("sc.iota", x, axis=x.ndim - 1, dtype=as_dtype("int64"))
    diff = emit("sc.sub", O.expand_dims(cols, 0), O.expand_dims(rows, 1))       # j - i, [N, M]
    keep = emit("sc.greater_equal" if a.get("upper", 1) else "sc.less_equal", diff, _c(k, "int64"))
    return emit("sc.where", keep, x, _c(0, x.dtype))


@converter("NonZero")
def _nonzero(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    return O.stack(list(O.nonzero(x)), 0)


def _along(v: Tensor, axis: int, rank: int) -> Tensor:
    """A 1-D ``v`` reshaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    return O.reshape(v, (v.shape[0],) + (1,) * (rank - axis - 1)) if axis < rank - 1 else v


@converter("OneHot")
def _one_hot(ctx, node, ins, a):
    idx = ctx.tensor(ins[0])
    depth = int(np.asarray(ctx.const_input(ins[1], "the depth of OneHot").numeric()).reshape(-1)[0])
    values = ctx.tensor(ins[2])
    rank = idx.ndim + 1
    axis = norm_axis(a.get("axis", -1), rank)
    i = O.cast(idx, "int64")
    i = emit("sc.where", emit("sc.less", i, _c(0, "int64")), emit("sc.add", i, _c(depth, "int64")), i)
    hit = emit("sc.equal", O.expand_dims(i, axis), _along(as_tensor(np.arange(depth, dtype=np.int64)), axis, rank))
    off, on = O.getitem(values, 0), O.getitem(values, 1)
    return emit("sc.where", hit, on, off)


@converter("Hardmax")
def _hardmax(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    axis = norm_axis(a.get("axis", -1), x.ndim)
    best = emit("sc.argmax", x, axis=axis, keepdims=True)
    pos = _along(emit("sc.iota", x, axis=axis, dtype=as_dtype("int64")), axis, x.ndim)
    return O.cast(emit("sc.equal", best, pos), x.dtype)


@converter("CumSum")
def _cumsum(ctx, node, ins, a):
    """``sc.cumsum`` (the same ``exclusive``/``reverse`` semantics), along any axis, symbolic too."""
    x = ctx.tensor(ins[0])
    axis = norm_axis(int(ctx.const_input(ins[1], "the axis of CumSum").ints()[0]), x.ndim)
    return emit("sc.cumsum", x, axis=axis, exclusive=bool(a.get("exclusive", 0)), reverse=bool(a.get("reverse", 0)))


@converter("Pad")
def _pad(ctx, node, ins, a):
    """Every mode (constant, edge, reflect, wrap) as a gather of positions computed at import
    (static dims), plus a select of the fill value for constant padding; negative pads crop."""
    x = ctx.tensor(ins[0])
    mode = a.get("mode", "constant")
    if mode not in ("constant", "edge", "reflect", "wrap"):
        ctx.fail(f"mode {mode!r}")
    pads = [int(v) for v in ctx.const_input(ins[1], "the pads of Pad").ints()]
    cval = _input(ins, 2)
    axes = ([int(v) for v in ctx.const_input(ins[3], "the axes of Pad").ints()] if _input(ins, 3) is not None
            else list(range(x.ndim)))
    axes = [norm_axis(ax, x.ndim) for ax in axes]
    k = len(axes)
    fill = ctx.tensor(cval) if cval is not None else _c(0, x.dtype)
    if fill.ndim:
        fill = O.reshape(fill, ())
    for ax, before, after in zip(axes, pads[:k], pads[k:]):
        if before == 0 and after == 0:
            continue
        n = x.shape[ax]
        if not isinstance(n, int) or n == 0:
            ctx.fail(f"padding dim {ax} of size {n} (needs a static, non-empty dim)")
        p = np.arange(-before, n + after)
        if mode == "reflect":
            period = 2 * (n - 1) if n > 1 else 1
            q = np.mod(p, period)
            idx = np.where(q < n, q, period - q)
        elif mode == "wrap":
            idx = np.mod(p, n)
        else:
            idx = np.clip(p, 0, n - 1)
        y = emit("sc.take", x, as_tensor(idx.astype(np.int64)), axis=ax)
        if mode == "constant" and (before > 0 or after > 0):
            valid = ((p >= 0) & (p < n))
            y = emit("sc.where", _along(as_tensor(valid), ax, x.ndim), y, fill)
        x = y
    return x


@converter("Mod")
def _mod(ctx, node, ins, a):
    x, y = ctx.tensor(ins[0]), ctx.tensor(ins[1])
    if x.dtype.is_float:
        q = emit("sc.div", x, y)
        t = O.cast(O.cast(q, "int64"), x.dtype)                   # trunc(x / y)
        r = emit("sc.sub", x, emit("sc.mul", t, y))
    else:
        r = emit("sc.sub", x, emit("sc.mul", emit("sc.div", x, y), y))   # sc.div truncates integers
    if a.get("fmod", 0) or x.dtype.np.kind == "u":
        return r
    z = _c(0, x.dtype)
    wrong = emit("sc.logical_and", emit("sc.not_equal", r, z),
                 emit("sc.not_equal", emit("sc.less", r, z), emit("sc.less", y, z)))
    return emit("sc.where", wrong, emit("sc.add", r, y), r)


# ---------------------------------------------------------------------------------------------
# reductions, softmax, top-k

def _reduce(kind):
    def conv(ctx, node, ins, a):
        x = ctx.tensor(ins[0])
        axes = _axes_of(ctx, ins, a)
        keep = bool(a.get("keepdims", 1))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.ndim))
        axes = tuple(sorted(norm_axis(v, x.ndim) for v in axes))
        if x.ndim == 0:
            return x
        empty = [ax for ax in axes if x.shape[ax] == 0]
        if empty and kind in ("max", "min", "log_sum_exp"):
            # over no elements: the identity of the reduction (-inf / +inf, or the integer extremes)
            info = np.finfo if x.dtype.is_float else np.iinfo
            ident = {"max": -np.inf, "min": np.inf, "log_sum_exp": -np.inf}[kind]
            if x.dtype.is_bool:
                ident = kind == "min"
            elif not x.dtype.is_float:
                ident = info(x.dtype.np).min if ident < 0 else info(x.dtype.np).max
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
            return O.broadcast_to(_c(ident, x.dtype), shape)
        if kind in ("max", "min") and x.dtype.is_bool:     # any / all
            y = emit(f"sc.{kind}", O.cast(x, "int8"), axes=axes, keepdims=keep)
            return O.cast(y, "bool")
        if kind == "mean" and not x.dtype.is_float:
            return O.cast(emit("sc.mean", O.cast(x, "float64"), axes=axes, keepdims=keep), x.dtype)
        if kind in ("sum", "mean", "max", "min"):
            return emit(f"sc.{kind}", x, axes=axes, keepdims=keep)
        if kind == "sum_square":
            return emit("sc.sum", emit("sc.square", x), axes=axes, keepdims=keep)
        if kind == "l1":
            return emit("sc.sum", emit("sc.abs", x), axes=axes, keepdims=keep)
        if kind == "l2":
            return emit("sc.sqrt", emit("sc.sum", emit("sc.square", x), axes=axes, keepdims=keep))
        if kind == "log_sum":
            return emit("sc.log", emit("sc.sum", x, axes=axes, keepdims=keep))
        # log_sum_exp, stable: m + log(sum(exp(x - m)))
        m = emit("sc.max", x, axes=axes, keepdims=True)
        m = emit("sc.where", emit("sc.equal", emit("sc.abs", m), _c(np.inf, x.dtype)), _c(0, x.dtype), m)
        s = emit("sc.log", emit("sc.sum", emit("sc.exp", emit("sc.sub", x, m)), axes=axes, keepdims=True))
        y = emit("sc.add", s, m)
        return y if keep else O.squeeze(y, axes)
    return conv


for _k, _v in {"ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min",
               "ReduceSumSquare": "sum_square", "ReduceL1": "l1", "ReduceL2": "l2", "ReduceLogSum": "log_sum",
               "ReduceLogSumExp": "log_sum_exp"}.items():
    CONVERTERS[_k] = _reduce(_v)


def _argext(largest):
    def conv(ctx, node, ins, a):
        x = ctx.tensor(ins[0])
        ax = norm_axis(a.get("axis", 0), x.ndim)
        keep = bool(a.get("keepdims", 1))
        if x.dtype.is_bool:
            x = O.cast(x, "int32")
        y = x
        if not largest:
            y = emit("sc.sub", _c(np.iinfo(x.dtype.np).max, x.dtype), x) if x.dtype.np.kind == "u" else emit("sc.neg", x)
        if a.get("select_last_index", 0):
            n = x.shape[ax]
            y = O.getitem(y, (builtins.slice(None),) * ax + (builtins.slice(None, None, -1),))
            i = emit("sc.argmax", y, axis=ax, keepdims=keep)
            nn = _c(n - 1, "int64") if isinstance(n, int) else emit("sc.sub", ctx.dim_tensor(n), _c(1, "int64"))
            return emit("sc.sub", nn, i)
        return emit("sc.argmax", y, axis=ax, keepdims=keep)
    return conv


CONVERTERS["ArgMax"] = _argext(True)
CONVERTERS["ArgMin"] = _argext(False)


@converter("Softmax", "LogSoftmax")
def _softmax(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    name = "sc.softmax" if node.op_type == "Softmax" else "sc.log_softmax"
    return emit(name, x, axis=a.get("axis", -1))


@converter("TopK")
def _topk(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    k = int(ctx.const_input(ins[1], "k of TopK").ints()[0])
    return list(emit("sc.topk", x, k=k, axis=a.get("axis", -1), largest=bool(a.get("largest", 1))))


# ---------------------------------------------------------------------------------------------
# matrix products

def _weight_const(c: Const, transpose: bool) -> Const:
    arr = c.numeric()
    if transpose:
        return Const(np.ascontiguousarray(arr.T), name=f"{c.name}.T" if c.name else None)
    return c


@converter("MatMul")
def _matmul(ctx, node, ins, a):
    A, B = ins
    if (isinstance(B, Const) and not B.symbolic and B.arr.ndim == 2 and B.arr.dtype.kind == "f"
            and isinstance(A, Tensor) and A.dtype.is_float and A.ndim >= 1 and as_dtype(B.arr.dtype) == A.dtype):
        # a weight [K, N]: sc.linear over the pre-transposed [N, K] weight (the kernels' and the
        # quantize pass's layout)
        return emit("sc.linear", A, ctx.tensor(_weight_const(B, True)))
    return emit("sc.matmul", ctx.tensor(A), ctx.tensor(B))


@converter("Gemm")
def _gemm(ctx, node, ins, a):
    A, B, C = ins[0], ins[1], _input(ins, 2)
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    x = ctx.tensor(A)
    if a.get("transA", 0):
        x = O.transpose(x, (1, 0))
    transB = a.get("transB", 0)
    bias = None
    if isinstance(B, Const) and not B.symbolic and B.arr.dtype.kind == "f" and x.dtype.is_float:
        w = ctx.tensor(_weight_const(B, not transB))
        if (C is not None and alpha == 1.0 and beta == 1.0 and isinstance(C, Const)
                and C.arr.shape == (w.shape[0],) and as_dtype(C.dtype) == x.dtype):
            bias, C = ctx.tensor(C), None
        y = emit("sc.linear", x, w, bias) if bias is not None else emit("sc.linear", x, w)
    else:
        y = emit("sc.matmul", x, ctx.tensor(B), transpose_b=bool(transB))
    if alpha != 1.0:
        y = emit("sc.mul", y, _c(alpha, y.dtype))
    if C is not None:
        c = ctx.tensor(C)
        if beta != 1.0:
            c = emit("sc.mul", c, _c(beta, c.dtype))
        y = emit("sc.add", y, c)
    return y


@converter("Conv")
def _conv(ctx, node, ins, a):
    """2-D ``sc.conv2d`` (a 1-D Conv runs as 2-D over a unit height). ``pads`` (begin..., end...)
    is the op's (top, left, bottom, right); ``auto_pad`` SAME_UPPER/SAME_LOWER pad to
    ``ceil(in / stride)`` outputs with the odd element at the end/beginning, as the spec says."""
    x, w, b = ctx.tensor(ins[0]), ctx.tensor(ins[1]), ctx.tensor(_input(ins, 2))
    if x.ndim not in (3, 4) or w.ndim != x.ndim:
        ctx.fail(f"Conv over {x.ndim - 2} spatial dims (input {list(x.shape)}, weight {list(w.shape)}); "
                 f"only 1-D and 2-D convolutions are supported")
    k = x.ndim - 2
    one_d = k == 1
    if one_d:  # [N, C, L] -> [N, C, 1, L]
        x, w = O.expand_dims(x, 2), O.expand_dims(w, 2)
    kernel = [int(v) for v in w.shape[2:]]
    if "kernel_shape" in a and [int(v) for v in a["kernel_shape"]] != kernel[-k:]:
        ctx.fail(f"kernel_shape {list(a['kernel_shape'])} differs from the weight's {kernel[-k:]}")
    strides = [int(v) for v in a.get("strides", [1] * k)]
    dilations = [int(v) for v in a.get("dilations", [1] * k)]
    pads = [int(v) for v in a.get("pads", [0] * 2 * k)]
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * 2 * k
        for i in range(k):
            n = x.shape[x.ndim - k + i]
            if not isinstance(n, int):
                ctx.fail(f"auto_pad {auto_pad} over the symbolic spatial dim {n!r} (the padding depends on its size)")
            out = -(-n // strides[i])
            total = builtins.max(0, (out - 1) * strides[i] + (kernel[-k + i] - 1) * dilations[i] + 1 - n)
            lo = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            pads[i], pads[k + i] = lo, total - lo
    elif auto_pad == "VALID":
        pads = [0] * 2 * k
    elif auto_pad != "NOTSET":
        ctx.fail(f"auto_pad {auto_pad!r}")
    if one_d:
        strides, dilations, pads = [1] + strides, [1] + dilations, [0, pads[0], 0, pads[1]]
    y = O.conv2d(x, w, b, stride=tuple(strides), padding=tuple(pads), dilation=tuple(dilations),
                 groups=int(a.get("group", 1)))
    return O.squeeze(y, (2,)) if one_d else y


# ---------------------------------------------------------------------------------------------
# normalization, attention, rotary embedding

def _stash(x: Tensor, stash_type: int) -> Tensor:
    if stash_type == 1 and x.dtype.is_float and x.dtype.bits < 32:
        return O.cast(x, "float32")
    return x


@converter("LayerNormalization")
def _layer_norm(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    scale, bias = ins[1], _input(ins, 2)
    axis = norm_axis(a.get("axis", -1), x.ndim)
    eps = float(a.get("epsilon", 1e-5))
    extra = any(o for o in node.output[1:])
    n = x.shape[-1]
    if (not extra and axis == x.ndim - 1 and _shape_of(ctx, scale) == (n,)
            and (bias is None or _shape_of(ctx, bias) == (n,))):
        w = ctx.tensor(scale)
        b = ctx.tensor(bias)
        if w.dtype == x.dtype and (b is None or b.dtype == x.dtype):
            return emit("sc.layer_norm", x, w, b, eps=eps) if b is not None else emit("sc.layer_norm", x, w, eps=eps)
    axes = tuple(range(axis, x.ndim))
    xf = _stash(x, a.get("stash_type", 1))
    mean = emit("sc.mean", xf, axes=axes, keepdims=True)
    d = emit("sc.sub", xf, mean)
    var = emit("sc.mean", emit("sc.square", d), axes=axes, keepdims=True)
    inv = emit("sc.rsqrt", emit("sc.add", var, _c(eps, xf.dtype)))
    y = O.cast(emit("sc.mul", d, inv), x.dtype)
    y = emit("sc.mul", y, ctx.tensor(scale))
    if bias is not None:
        y = emit("sc.add", y, ctx.tensor(bias))
    return [y, mean, inv]


@converter("RMSNormalization")
def _rms_norm(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    scale = ins[1]
    axis = norm_axis(a.get("axis", -1), x.ndim)
    eps = float(a.get("epsilon", 1e-5))
    n = x.shape[-1]
    if axis == x.ndim - 1 and _shape_of(ctx, scale) == (n,):
        w = ctx.tensor(scale)
        if w.dtype == x.dtype:
            return emit("sc.rms_norm", x, w, eps=eps)
    axes = tuple(range(axis, x.ndim))
    xf = _stash(x, a.get("stash_type", 1))
    ms = emit("sc.mean", emit("sc.square", xf), axes=axes, keepdims=True)
    y = O.cast(emit("sc.mul", xf, emit("sc.rsqrt", emit("sc.add", ms, _c(eps, xf.dtype)))), x.dtype)
    return emit("sc.mul", y, ctx.tensor(scale))


def _heads(x: Tensor, h: int) -> Tensor:
    """[B, S, H*D] -> [B, H, S, D]."""
    B, S, hidden = x.shape
    d = dim_div(hidden, h)
    return O.transpose(O.reshape(x, (B, S, h, d)), (0, 2, 1, 3))


@converter("Attention")
def _attention(ctx, node, ins, a):
    q, k, v = (ctx.tensor(t) for t in ins[:3])
    mask, past_k, past_v, nonpad = _input(ins, 3), _input(ins, 4), _input(ins, 5), _input(ins, 6)
    three_d = q.ndim == 3
    if three_d:
        q = _heads(q, a["q_num_heads"])
        k = _heads(k, a["kv_num_heads"])
        v = _heads(v, a["kv_num_heads"])
    past_len = 0
    if past_k is not None:
        past_len = ctx.tensor(past_k).shape[2]
        k = emit("sc.concat", [ctx.tensor(past_k), k], axis=2)
        v = emit("sc.concat", [ctx.tensor(past_v), v], axis=2)
    S, L = q.shape[2], k.shape[2]
    m = ctx.tensor(mask) if mask is not None else None
    causal = bool(a.get("is_causal", 0))
    want_qk = len(node.output) > 3 and bool(node.output[3])
    windowed = a.get("left_window_size", -1) >= 0 or a.get("right_window_size", -1) >= 0
    simple = (not want_qk and not a.get("softcap", 0.0) and nonpad is None and not windowed
              and (m is None or m.shape[-1] == L))
    if simple:
        # sc.attention: its causal mask is bottom-right aligned (offset L - S), as ONNX's with a
        # past (offset = past length) or when S == L; otherwise ONNX's is top-left (offset 0)
        if causal and not (past_k is not None or S == L):
            rows = emit("sc.iota", q, axis=2, dtype=as_dtype("int64"))
            cols = emit("sc.iota", k, axis=2, dtype=as_dtype("int64"))
            allowed = emit("sc.less_equal", O.expand_dims(cols, 0), O.expand_dims(rows, 1))
            if m is None:
                m = allowed
            elif m.dtype.is_bool:
                m = emit("sc.logical_and", m, allowed)
            else:
                m = emit("sc.where", allowed, m, _c(-np.inf, m.dtype))
            causal = False
        scale = a.get("scale", None)
        y = emit("sc.attention", q, k, v, m, causal=causal, scale=0.0 if scale is None else float(scale))
        qk = None
    else:
        y, qk = _attention_composed(ctx, q, k, v, m, ctx.tensor(nonpad), past_len, a)
    if three_d:
        B, H, S_, Dv = y.shape
        y = O.reshape(O.transpose(y, (0, 2, 1, 3)), (B, S_, dim_mul(H, Dv)))
    return [y, k, v, qk]


def _repeat_heads(x: Tensor, g: int) -> Tensor:
    """[B, H, L, D] -> [B, H*g, L, D], each head repeated g times in place (np.repeat on axis 1)."""
    B, H, L, D = x.shape
    y = O.broadcast_to(O.expand_dims(x, 2), (B, H, g, L, D))
    return O.reshape(y, (B, dim_mul(H, g), L, D))


def _attention_composed(ctx, q, k, v, m, nonpad, past_len, a):
    """ONNX Attention op by op (onnx.reference's order): scaled QK^T, softcap, additive bias
    (mask, causal, sliding window, key padding), softmax (fully masked rows give 0), AV."""
    dt = q.dtype
    S, L, D = q.shape[2], k.shape[2], q.shape[3]
    scale = a.get("scale", None)
    if scale is None:
        scale = 1.0 / math.sqrt(D)
    root = _c(math.sqrt(scale), dt)            # q and k are each scaled by sqrt(scale)
    qs, ks, vv = emit("sc.mul", q, root), emit("sc.mul", k, root), v
    hq, hkv = q.shape[1], k.shape[1]
    if hq != hkv:
        ks, vv = _repeat_heads(ks, hq // hkv), _repeat_heads(v, hq // hkv)
    qk = emit("sc.matmul", qs, ks, transpose_b=True)                   # [B, Hq, S, L]
    softcap = float(a.get("softcap", 0.0) or 0.0)
    if softcap > 0:
        c = _c(softcap, dt)
        qk = emit("sc.mul", emit("sc.tanh", emit("sc.div", qk, c)), c)
    zero, ninf = _c(0, dt), _c(-np.inf, dt)
    bias = None
    if m is not None:
        if m.shape[-1] != L:                   # a shorter mask: the missing keys are masked
            if not isinstance(m.shape[-1], int) or not isinstance(L, int):
                ctx.fail(f"a mask of {m.shape[-1]} keys for {L} keys")
            fill = _c(False, "bool") if m.dtype.is_bool else _c(-np.inf, m.dtype)
            m = emit("sc.concat", [m, O.broadcast_to(fill, tuple(m.shape[:-1]) + (L - m.shape[-1],))], axis=-1)
        bias = emit("sc.where", m, zero, ninf) if m.dtype.is_bool else O.cast(m, dt)
    causal = bool(a.get("is_causal", 0))
    left, right = a.get("left_window_size", -1), a.get("right_window_size", -1)
    if causal or left >= 0 or right >= 0:
        # diff = (i + offset) - j; offset: past length, or nonpad_kv_seqlen[b] - S (external cache)
        rows = emit("sc.iota", q, axis=2, dtype=as_dtype("int64"))
        cols = emit("sc.iota", k, axis=2, dtype=as_dtype("int64"))
        diff = emit("sc.sub", O.expand_dims(rows, 1), O.expand_dims(cols, 0))              # [S, L]
        if nonpad is not None:
            n_s = _c(S, "int64") if isinstance(S, int) else ctx.dim_tensor(S)
            off = emit("sc.sub", O.cast(nonpad, "int64"), n_s)
            diff = emit("sc.add", diff, O.expand_dims(off, (1, 2, 3)))                   # [B, 1, S, L]
        elif past_len:
            diff = emit("sc.add", diff, _c(past_len, "int64") if isinstance(past_len, int)
                        else ctx.dim_tensor(past_len))
        allowed = []
        if causal:
            allowed.append(emit("sc.greater_equal", diff, _c(0, "int64")))
        if left >= 0:
            allowed.append(emit("sc.less_equal", diff, _c(left, "int64")))
        if right >= 0:
            allowed.append(emit("sc.less_equal", emit("sc.neg", diff), _c(right, "int64")))
        for al in allowed:
            term = emit("sc.where", al, zero, ninf)
            bias = term if bias is None else emit("sc.add", bias, term)
    if nonpad is not None:
        cols = emit("sc.iota", k, axis=2, dtype=as_dtype("int64"))
        pad = emit("sc.less", cols, O.expand_dims(O.cast(nonpad, "int64"), (1, 2, 3)))    # [B, 1, 1, L]
        term = emit("sc.where", pad, zero, ninf)
        bias = term if bias is None else emit("sc.add", bias, term)
    qkb = qk if bias is None else emit("sc.add", qk, bias)
    mode = a.get("qk_matmul_output_mode", 0)
    qk_out = qkb if mode == 2 else qk
    x = qkb
    if a.get("softmax_precision"):
        x = O.cast(x, onnx_dtype(a["softmax_precision"], ctx.where()))
    p = emit("sc.softmax", x, axis=-1)
    if bias is not None:                       # a row whose every key is masked attends nothing
        dead = emit("sc.equal", emit("sc.max", bias, axes=(bias.ndim - 1,), keepdims=True), ninf)
        p = emit("sc.where", dead, _c(0, p.dtype), p)
    if mode == 3:
        qk_out = p
    p = O.cast(p, dt)
    return emit("sc.matmul", p, vv), O.cast(qk_out, dt)


@converter("RotaryEmbedding")
def _rotary(ctx, node, ins, a):
    x = ctx.tensor(ins[0])
    cos, sin, pos = ctx.tensor(ins[1]), ctx.tensor(ins[2]), _input(ins, 3)
    interleaved = a.get("interleaved", 0)
    shape3 = None
    if x.ndim == 3:                                   # [B, S, H*D] -> [B, S, H, D]
        h = a.get("num_heads", 0)
        if not h:
            ctx.fail("a 3-D input needs num_heads")
        shape3 = x.shape
        x = O.reshape(x, (x.shape[0], x.shape[1], h, dim_div(x.shape[2], h)))
        head_axis = 2
    else:                                             # [B, H, S, D]
        head_axis = 1
    D = x.shape[-1]
    r = a.get("rotary_embedding_dim", 0) or D
    if pos is not None:
        p = _nonneg(ctx, ctx.tensor(pos), cos.shape[0])
        cos, sin = emit("sc.take", cos, p, axis=0), emit("sc.take", sin, p, axis=0)   # [B, S, r/2]
    cos, sin = O.expand_dims(cos, head_axis), O.expand_dims(sin, head_axis)
    last = x.ndim - 1
    lead = (builtins.slice(None),) * last
    xr = O.getitem(x, lead + (builtins.slice(0, r),)) if r != D else x
    if interleaved:
        x1, x2 = O.getitem(xr, lead + (builtins.slice(0, r, 2),)), O.getitem(xr, lead + (builtins.slice(1, r, 2),))
    else:
        x1, x2 = O.getitem(xr, lead + (builtins.slice(0, r // 2),)), O.getitem(xr, lead + (builtins.slice(r // 2, r),))
    real = emit("sc.sub", emit("sc.mul", cos, x1), emit("sc.mul", sin, x2))
    imag = emit("sc.add", emit("sc.mul", sin, x1), emit("sc.mul", cos, x2))
    if interleaved:
        rot = O.reshape(O.stack([real, imag], -1), tuple(xr.shape))
    else:
        rot = emit("sc.concat", [real, imag], axis=-1)
    out = emit("sc.concat", [rot, O.getitem(x, lead + (builtins.slice(r, None),))], axis=-1) if r != D else rot
    return O.reshape(out, shape3) if shape3 is not None else out


# ---------------------------------------------------------------------------------------------
# import-time evaluation over shapes with symbolic dims

class _NoSym(Exception):
    pass


def _obj(c: Const) -> np.ndarray:
    return c.arr if c.arr.dtype == object else c.arr.astype(object)


def _mk(arr, dtype) -> Const:
    if not isinstance(arr, np.ndarray):
        v, arr = arr, np.empty((), dtype=object)
        arr[()] = v
    if arr.dtype == object and any(isinstance(v, str) for v in arr.flat):
        return Const(arr, dtype)
    return Const(np.array(arr.tolist(), dtype=dtype).reshape(arr.shape), dtype)


def _d_mul(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return x * y
    if (isinstance(x, int) and x < 0) or (isinstance(y, int) and y < 0):
        return None
    return dim_mul(x, y)


def _d_add(x, y):
    from ..ops.shape import _dim_add
    if isinstance(x, int) and isinstance(y, int):
        return x + y
    if (isinstance(x, int) and x < 0) or (isinstance(y, int) and y < 0):
        return None
    return _dim_add(x, y)


def _d_sub(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return x - y
    if y == 0:
        return x
    if x == y:
        return 0
    return None


def _d_div(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return int(x / y) if y else None
    if isinstance(y, int) and y <= 0:
        return None
    return dim_div(x, y)


def _d_eq(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return x == y
    if x == y:
        return True
    if isinstance(x, int) and isinstance(y, str) or isinstance(y, int) and isinstance(x, str):
        if (x if isinstance(x, int) else y) < 0:
            return False    # a dim is never negative (the -1 of a reshape target)
    return None


def _d_max(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return max(x, y)
    if x == y:
        return x
    if isinstance(x, int) and x <= 1:
        return y        # dims are >= 1 where max is used for broadcasting
    if isinstance(y, int) and y <= 1:
        return x
    return None


def _d_min(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return min(x, y)
    return x if x == y else None


def _elementwise(f, *cs):
    arrs = np.broadcast_arrays(*[_obj(c) for c in cs])
    out = np.empty(arrs[0].shape, dtype=object)
    for idx in np.ndindex(out.shape):
        r = f(*(a[idx] for a in arrs))
        if r is None:
            raise _NoSym
        out[idx] = r
    return out


def sym_fold(ctx, node, ins, a):
    """Evaluate ``node`` at import over known inputs holding symbolic dims; None if not possible."""
    op = node.op_type
    try:
        if op == "Identity":
            return [ins[0]]
        if op == "Cast":
            to = onnx_dtype(a["to"], ctx.where()).np
            return [Const(_obj(ins[0]), to)] if to.kind in "iu" else None
        if op in ("Mul", "Add", "Sub", "Div", "Max", "Min"):
            f = {"Mul": _d_mul, "Add": _d_add, "Sub": _d_sub, "Div": _d_div, "Max": _d_max, "Min": _d_min}[op]
            cs = [c for c in ins if c is not None]
            out = cs[0]
            for c in cs[1:]:
                out = _mk(_elementwise(f, out, c), ins[0].dtype)
            return [out]
        if op == "Equal":
            return [Const(np.array(_elementwise(_d_eq, ins[0], ins[1]).tolist(), dtype=bool))]
        if op == "Where":
            if ins[0].symbolic:
                return None
            return [_mk(np.where(ins[0].numeric(), _obj(ins[1]), _obj(ins[2])), ins[1].dtype)]
        if op == "Gather":
            x, i = ins
            if i.symbolic:
                return None
            ax = norm_axis(a.get("axis", 0), x.arr.ndim)
            idx = i.numeric().astype(np.int64)
            idx = np.where(idx < 0, idx + x.arr.shape[ax], idx)
            return [_mk(np.take(_obj(x), idx, axis=ax), x.dtype)]
        if op == "Concat":
            cs = [c for c in ins if c is not None]
            return [_mk(np.concatenate([_obj(c) for c in cs], axis=a["axis"]), cs[0].dtype)]
        if op in ("Unsqueeze", "Squeeze"):
            x = ins[0]
            axes = _axes_of(ctx, ins, a)
            if op == "Unsqueeze":
                return [_mk(np.expand_dims(_obj(x), tuple(axes)), x.dtype)]
            return [_mk(np.squeeze(_obj(x), axis=None if axes is None else tuple(axes)), x.dtype)]
        if op == "Reshape":
            x, s = ins
            if s.symbolic:
                return None
            shape = [int(v) for v in s.ints()]
            shape = [x.arr.shape[k] if d == 0 and not a.get("allowzero", 0) else d for k, d in enumerate(shape)]
            return [_mk(_obj(x).reshape(shape), x.dtype)]
        if op == "Slice":
            x = ins[0]
            if any(c is not None and c.symbolic for c in ins[1:]):
                return None
            items = _slice_items(ctx, x.arr.shape, *_slice_args(ctx, ins, x.arr.ndim))
            return [_mk(_obj(x)[items], x.dtype)]
        if op == "Expand":
            x, s = ins
            if s.symbolic:
                return None
            shape = np.broadcast_shapes(x.arr.shape, tuple(int(v) for v in s.ints()))
            return [_mk(np.broadcast_to(_obj(x), shape).copy(), x.dtype)]
        if op in ("Shape", "Size"):
            return None   # the converters read the Const's shape
    except _NoSym:
        return None
    return None

