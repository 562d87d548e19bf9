"""CPU lowering rules: elementwise ops, ``sc.cast``, ``sc.iota`` and ``sc.fused {kind="elementwise"}``.

Every elementwise op (and a fused group of them) becomes a *generated* kernel: the op or the
region is turned into a ``codegen.Program`` (an expression DAG over broadcast inputs) and
``codegen.build`` writes, caches and compiles its Numba source (see ``sparsec/lower/codegen.py``
and ``sparsec/runtime/kernel_cache.py``). Identical programs (same ops, dtypes and broadcast
pattern after collapsing dims) share one kernel whatever the ranks and sizes.

``sc.fused`` is dispatched on its ``kind``; other groups can register a lowering with
``FUSED_KINDS[kind] = rule``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ...ir import Operation, TensorType, broadcast_shapes
from .. import codegen
from . import Kernel, LoweringError, cpu_lowering

UNARY = ("exp", "log", "sqrt", "rsqrt", "tanh", "sin", "cos", "erf", "gelu", "gelu_tanh", "silu", "sigmoid",
         "reciprocal", "neg", "abs", "relu", "square")
BINARY = ("add", "sub", "mul", "div", "maximum", "minimum", "pow")
COMPARE = ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")
LOGIC = ("logical_and", "logical_or", "logical_not")
ELEMENTWISE_OPS = tuple(f"sc.{n}" for n in UNARY + BINARY + COMPARE + LOGIC + ("where",)) + ("sc.cast",)

_U16 = ("f16", "bf16")


def _tensor(v, what: str, op: Operation) -> TensorType:
    if not isinstance(v.type, TensorType):
        raise LoweringError(f"{op.describe()}: {what} is {v.type}, not a tensor")
    return v.type


def _static_size(t: TensorType) -> int | None:
    if not t.is_static:
        return None
    return int(np.prod(t.shape, dtype=np.int64))


def _parallel_mode(out: TensorType, prog: codegen.Program) -> str:
    n = _static_size(out)
    if n is None:
        return "lazy"
    return "eager" if n >= codegen.parallel_threshold(prog.cost()) else "never"


def _kernel(op: Operation, prog: codegen.Program, groups, in_types: list[str], out_type: TensorType,
            n_operands: int, constants: list[np.ndarray], label: str, dim_source=None) -> Kernel:
    ek = codegen.build(prog, groups, [d in _U16 for d in in_types], [d in _U16 for d in prog.out_dtypes],
                       n_operands, constants, parallel=_parallel_mode(out_type, prog), dim_source=dim_source)
    return Kernel(ek.fn, name=f"{label}[{ek.key[:10]}]", impl="generated",
                  info={**ek.info, "key": ek.key, "source": ek.source}, bind=ek.bind)


@cpu_lowering(*ELEMENTWISE_OPS)
def lower_elementwise(op: Operation) -> Kernel:
    """One elementwise op as a generated kernel (a group of one)."""
    out = _tensor(op.results[0], "the result", op)
    in_types = [_tensor(v, f"operand {i}", op) for i, v in enumerate(op.operands)]
    groups, flags = codegen.collapse(out.shape, [t.shape for t in in_types])
    nodes = [codegen.Node("input", (j,), t.dtype.name) for j, t in enumerate(in_types)]
    nodes.append(codegen.Node(op.name, tuple(range(len(in_types))), out.dtype.name))
    prog = codegen.Program(len(groups), [(t.dtype.name, f) for t, f in zip(in_types, flags)], nodes,
                           [len(nodes) - 1])
    return _kernel(op, prog, groups, [t.dtype.name for t in in_types], out, len(in_types), [], op.name[3:])


def program_from_region(op: Operation):
    """The program of an elementwise ``sc.fused`` region: ``(program, groups, constants, input
    dtypes, dim_source)``. Block arguments are the first inputs, constants with more than one
    element the next ones (single values become literals), ``sc.broadcast_to`` is the identity
    per element; ``dim_source`` is None when every yield has the iteration space's shape."""
    block = op.regions[0].blocks[0]
    term = block.terminator
    if term is None or term.name != "sc.yield":
        raise LoweringError(f"{op.describe()}: the region does not end with sc.yield")
    out_types = [_tensor(v, "a yielded value", op) for v in term.operands]
    try:  # normally every yield has the iteration space's shape; smaller ones broadcast into it
        space = broadcast_shapes(*[t.shape for t in out_types])
    except ValueError as e:
        raise LoweringError(f"{op.describe()}: yielded values do not share an iteration space: {e}") from None
    shapes: list[tuple] = [_tensor(a, f"block argument {i}", op).shape for i, a in enumerate(block.args)]
    dtypes: list[str] = [a.type.dtype.name for a in block.args]
    nodes: list[codegen.Node] = [codegen.Node("input", (j,), dt) for j, dt in enumerate(dtypes)]
    node_of: dict[int, int] = {id(a): j for j, a in enumerate(block.args)}
    constants: list[np.ndarray] = []
    n_args = len(block.args)
    pending: list[tuple[int, tuple, str]] = []  # constant inputs: (node index, shape, dtype)
    for inner in block.ops:
        name = inner.name
        if name == "sc.yield":
            break
        if name == "sc.broadcast_to":
            node_of[id(inner.results[0])] = node_of[id(inner.operands[0])]
            continue
        if name == "sc.constant":
            value = np.asarray(inner.attrs["value"])
            dt = inner.results[0].type.dtype.name
            if value.size == 1:
                v = value.reshape(-1)[0]
                scalar = bool(v) if dt == "i1" else (float(v) if dt in ("f32", "f64", "f16", "bf16") else int(v))
                nodes.append(codegen.Node("const", (), dt, scalar))
            else:
                nodes.append(codegen.Node("input", (n_args + len(constants),), dt))
                pending.append((len(nodes) - 1, value.shape, dt))
                constants.append(value)
            node_of[id(inner.results[0])] = len(nodes) - 1
            continue
        if name not in ELEMENTWISE_OPS:
            raise LoweringError(f"{op.describe()}: {inner.describe()} cannot be part of an elementwise group "
                                f"(only elementwise ops, sc.broadcast_to and sc.constant)")
        res = _tensor(inner.results[0], "a result", inner)
        try:
            args = tuple(node_of[id(v)] for v in inner.operands)
        except KeyError:
            raise LoweringError(f"{op.describe()}: {inner.describe()} uses a value defined outside the "
                                f"region") from None
        nodes.append(codegen.Node(name, args, res.dtype.name))
        node_of[id(inner.results[0])] = len(nodes) - 1
    try:
        outputs = [node_of[id(v)] for v in term.operands]
    except KeyError:
        raise LoweringError(f"{op.describe()}: sc.yield returns a value defined outside the region") from None
    all_shapes = shapes + [s for _, s, _ in pending]
    out_shapes = [t.shape for t in out_types]
    groups, flags = codegen.collapse(space, all_shapes + out_shapes)
    all_dtypes = dtypes + [dt for _, _, dt in pending]
    n_in = len(all_shapes)
    prog = codegen.Program(len(groups), [(dt, f) for dt, f in zip(all_dtypes, flags[:n_in])], nodes, outputs,
                           out_flags=flags[n_in:])
    dim_source = None
    if any(s != space for s in out_shapes):
        dim_source = {}
        for d, size in enumerate(space):
            for k, s in enumerate(out_shapes):
                j = d - (len(space) - len(s))
                if j >= 0 and s[j] == size:
                    dim_source[d] = (k, j)
                    break
    return prog, groups, constants, all_dtypes, dim_source


def lower_fused_elementwise(op: Operation) -> Kernel:
    prog, groups, constants, dtypes, dim_source = program_from_region(op)
    shapes = [r.type.shape for r in op.results]
    out = TensorType(broadcast_shapes(*shapes), op.results[0].type.dtype)
    n = sum(1 for n_ in prog.nodes if n_.op not in ("input", "const"))
    return _kernel(op, prog, groups, dtypes, out, len(op.operands), constants, f"fused_elementwise{n}",
                   dim_source)


#: kind -> rule for sc.fused (other op groups may add theirs)
FUSED_KINDS: dict[str, Callable[[Operation], Kernel]] = {"elementwise": lower_fused_elementwise}


@cpu_lowering("sc.fused")
def lower_fused(op: Operation) -> Kernel:
    kind = op.attrs.get("kind", "elementwise")
    rule = FUSED_KINDS.get(kind)
    if rule is None:
        raise LoweringError(f"{op.describe()}: no CPU lowering for fused groups of kind {kind!r} "
                            f"(known: {', '.join(sorted(FUSED_KINDS))})")
    return rule(op)


@cpu_lowering("sc.iota")
def lower_iota(op: Operation) -> Kernel:
    from ...runtime.cpu import elementwise as rt
    out = op.results[0].type
    dt = out.dtype
    if dt.name in ("i64", "i32", "f32", "f64"):
        k = rt.compiled_iota(dt.np)
        return Kernel(lambda x, o: k(o), name=f"iota_{dt.name}", impl="numba")
    return Kernel(rt.iota_numpy, name=f"iota_{dt.name}", impl="numpy")
