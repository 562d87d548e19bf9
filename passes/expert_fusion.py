"""``expert-fusion``: fewer, bigger expert kernels after ``sparse-activation``.

``sparse-activation`` already turns E per-expert matmuls into one ``sc.grouped_matmul`` over
stacked ``[E, N, K]`` weights (per-expert token groups have data-dependent sizes, which only the
grouped form expresses). This pass fuses what is left around those grouped matmuls:

1. **Gate and up in one kernel.** ``act(grouped_matmul(x, Wg, off)) * grouped_matmul(x, Wu, off)``
   (either ``mul`` operand order; ``act`` silu, gelu, gelu_tanh or relu; the two products over the
   same rows ``x`` and the same ``offsets``, each inner value used only there) becomes one
   ``sc.moe_gated_grouped_matmul(x, Wg, Wu, off, activation=act)``: its kernel reads a row's
   gate and up weights in one pass and applies ``act(g) * u`` in the epilogue, so the ``[T*k, F]``
   gate and up results are never written.

2. **Shared experts in the same pass over the tokens.** ``moe_combine(...) + shared(x)`` where
   ``shared`` is a gated MLP of the same activation over the same tokens ``x`` whose intermediate
   size ``S`` is a multiple ``m`` of the routed experts' ``F`` (``linear(act(linear(x, Sg)) *
   linear(x, Su), Sd)``, no biases, optionally times a ``[T, 1]`` gate such as Qwen2-MoE's
   ``sigmoid(shared_expert_gate(x))``; either operand order throughout). A gated MLP splits
   exactly along its intermediate dim (``down(act(g)·u) = Σ_j down_j(act(g_j)·u_j)`` over chunks
   of ``F`` rows), so the shared expert becomes ``m`` more experts ``E .. E+m-1`` that every token
   is routed to, with weight 1 (or the gate): ``ids`` and ``weights`` get ``m`` more columns,
   the stacks get the ``m`` chunks (``[S, H] -> [m, F, H]``; the down ``[H, S] -> [m, H, F]``),
   and one dispatch / gated grouped matmul / down / combine chain computes routed and shared
   experts together (one parallel region whose (expert, row tile) items include the shared
   chunks). The extended stacks are computed from params only, so
   ``fold-constants{fold-params=true}`` (after this pass in the default pipeline) turns them into
   weights at compile time. Needs step 1 first (the routed chain must be gated + down).

The routing weight is applied by ``sc.moe_combine`` (the weighted sum of each token's expert
rows), which is where the issue's "fold the routing weight into the down projection or the
combine" lands: there is no separate multiply.

Exactness: step 1 computes the same values; step 2 sums the shared expert's down projection in
``m`` chunks after the routed experts (fp32 re-association only).

Statistics: ``gate/up matmuls fused`` (grouped pairs), ``expert matmuls fused`` (per-expert
matmuls that now share a kernel: ``2E`` per fused pair, plus the shared expert's three),
``shared experts folded``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Operation, OpResult, TensorType, Value
from .registry import Pass, Statistics, register_pass
from .rewrite import Pattern, Rewriter, apply_patterns, is_trivially_dead, producer

#: elementwise op -> the activation name of ``sc.moe_gated_grouped_matmul``
GATED_ACTIVATIONS = {"sc.silu": "silu", "sc.gelu": "gelu", "sc.gelu_tanh": "gelu_tanh", "sc.relu": "relu"}


def _used_once(v: Value) -> bool:
    return len(v.uses) == 1


def _static(t) -> bool:
    return isinstance(t, TensorType) and all(isinstance(d, int) for d in t.shape)


# ---------------------------------------------------------------------------------------------
# 1. gate + up -> sc.moe_gated_grouped_matmul

def _gated_pair(op: Operation):
    """``(x, Wg, Wu, offsets, activation)`` when ``op`` (an ``sc.mul``) is
    ``act(grouped_matmul(x, Wg, off)) * grouped_matmul(x, Wu, off)`` with the inner values used once."""
    for a, u in (op.operands, reversed(op.operands)):
        act = producer(a, *GATED_ACTIVATIONS)
        up = producer(u, "sc.grouped_matmul")
        if act is None or up is None or not _used_once(a) or not _used_once(u):
            continue
        gate = producer(act.operands[0], "sc.grouped_matmul")
        if gate is None or not _used_once(act.operands[0]):
            continue
        x, wg, off = gate.operands
        if up.operands[0] is not x or up.operands[2] is not off:
            continue
        wu = up.operands[1]
        if wg.type != wu.type or gate.result.type != op.result.type or up.result.type != op.result.type:
            continue
        return x, wg, wu, off, GATED_ACTIVATIONS[act.name]
    return None


def _fuse_gate_up(stats: Statistics):
    def fuse_gate_up(op: Operation, rw: Rewriter) -> bool:
        parts = _gated_pair(op)
        if parts is None:
            return False
        x, wg, wu, off, act = parts
        fused = rw.create(op, "sc.moe_gated_grouped_matmul", [x, wg, wu, off], {"activation": act})
        old = list(op.operands)
        rw.replace(op, fused.results)
        _erase_dead(old, rw)
        stats["gate/up matmuls fused"] += 1
        stats["expert matmuls fused"] += 2 * wg.type.shape[0]
        return True
    return fuse_gate_up


# ---------------------------------------------------------------------------------------------
# 2. shared expert -> m more routed experts

@dataclass
class _Routed:
    """The routed chain ``dispatch -> permute -> gated grouped -> grouped (down) -> combine``."""
    combine: Operation
    dispatch: Operation
    permute: Operation
    gated: Operation
    down: Operation

    @property
    def x(self) -> Value:
        return self.permute.operands[0]


def _routed_chain(v: Value) -> _Routed | None:
    combine = producer(v, "sc.moe_combine")
    if combine is None or not _used_once(v):
        return None
    yp, order, _weights = combine.operands
    down = producer(yp, "sc.grouped_matmul")
    dispatch = producer(order, "sc.moe_dispatch")
    if down is None or dispatch is None or not _used_once(yp):
        return None
    gated = producer(down.operands[0], "sc.moe_gated_grouped_matmul")
    if gated is None or not _used_once(down.operands[0]):
        return None
    permute = producer(gated.operands[0], "sc.moe_permute")
    offsets = dispatch.results[1]
    if permute is None or permute.operands[1] is not order:
        return None
    if gated.operands[3] is not offsets or down.operands[2] is not offsets:
        return None
    # nothing else may use the chain's values: the whole chain is replaced
    if len(order.uses) != 2 or len(offsets.uses) != 2 or not _used_once(gated.operands[0]):
        return None
    if not all(_static(w.type) for w in (gated.operands[1], gated.operands[2], down.operands[1])):
        return None
    return _Routed(combine, dispatch, permute, gated, down)


def _linear_weight(v: Value, h: Value | None = None) -> tuple[Value, Value] | None:
    """``(input, W)`` for ``v = sc.linear(input, W)`` without bias (input ``h`` when given)."""
    lin = producer(v, "sc.linear")
    if lin is None or len(lin.operands) != 2 or not _used_once(v):
        return None
    if h is not None and lin.operands[0] is not h:
        return None
    return lin.operands[0], lin.operands[1]


def _shared_mlp(v: Value, x: Value, activation: str):
    """``(Sg, Su, Sd)`` when ``v = linear(act(linear(x, Sg)) * linear(x, Su), Sd)`` (used once)."""
    down = _linear_weight(v)
    if down is None:
        return None
    h, sd = down
    mul = producer(h, "sc.mul")
    if mul is None or not _used_once(h):
        return None
    for a, u in (mul.operands, reversed(mul.operands)):
        act = producer(a, *GATED_ACTIVATIONS)
        if act is None or GATED_ACTIVATIONS[act.name] != activation or not _used_once(a):
            continue
        gate, up = _linear_weight(act.operands[0], x), _linear_weight(u, x)
        if gate is None or up is None:
            continue
        return gate[1], up[1], sd
    return None


def _shared_term(v: Value, x: Value, activation: str):
    """``(Sg, Su, Sd, gate or None)`` for ``shared(x)`` or ``shared(x) * gate`` (gate ``[T, 1]``)."""
    mlp = _shared_mlp(v, x, activation)
    if mlp is not None:
        return mlp + (None,)
    mul = producer(v, "sc.mul")
    if mul is None or not _used_once(v):
        return None
    t = x.type.shape[0]
    for s, g in (mul.operands, reversed(mul.operands)):
        mlp = _shared_mlp(s, x, activation)
        gt = g.type
        if mlp is not None and isinstance(gt, TensorType) and tuple(gt.shape) == (t, 1) \
                and gt.dtype == x.type.dtype and s.type == v.type:
            return mlp + (g,)
    return None


def _fold_shared(stats: Statistics):
    def fold_shared_expert(op: Operation, rw: Rewriter) -> bool:
        for c, s in (op.operands, reversed(op.operands)):
            routed = _routed_chain(c)
            if routed is None:
                continue
            act = routed.gated.attrs["activation"]
            shared = _shared_term(s, routed.x, act)
            if shared is None:
                continue
            if _fold(op, rw, routed, *shared):
                stats["shared experts folded"] += 1
                stats["expert matmuls fused"] += 3
                return True
        return False
    return fold_shared_expert


def _fold(op: Operation, rw: Rewriter, r: _Routed, sg: Value, su: Value, sd: Value, gate: Value | None) -> bool:
    wg, wu, wd = r.gated.operands[1], r.gated.operands[2], r.down.operands[1]
    E, F, H = wg.type.shape
    if not (_static(sg.type) and _static(su.type) and _static(sd.type)):
        return False
    S = sg.type.shape[0]
    if S % F or tuple(sg.type.shape) != (S, H) or su.type != sg.type or tuple(sd.type.shape) != (H, S) \
            or tuple(wd.type.shape) != (E, H, F) or sg.type.dtype != wg.type.dtype or sd.type.dtype != wd.type.dtype:
        return False
    m = S // F
    ids = r.dispatch.operands[0]
    weights = r.combine.operands[2]
    T, k = ids.type.shape
    def new(name, operands, attrs=None, hint=None):
        created = rw.create(op, name, operands, attrs)
        created.results[0].name_hint = hint
        return created.result

    extra_ids = np.arange(E, E + m, dtype=ids.type.dtype.np).reshape(1, m)
    ids2 = new("sc.concat", [ids, new("sc.broadcast_to", [new("sc.constant", [], {"value": extra_ids})],
                                      {"shape": (T, m)})], {"axis": 1})
    if gate is None:
        one = np.ones((1, 1), weights.type.dtype.np)
        col = new("sc.constant", [], {"value": one})
    else:
        col = gate
    weights2 = new("sc.concat", [weights, new("sc.broadcast_to", [col], {"shape": (T, m)})], {"axis": 1})

    def chunks_rows(w: Value) -> Value:        # [S, H] -> [m, F, H]
        return new("sc.reshape", [w], {"shape": (m, F, H)})
    def named(w: Value) -> str | None:   # the folded weight's name: experts.gate_proj.weight.with_shared
        return f"{w.name_hint}.with_shared" if w.name_hint and not w.name_hint[0].isdigit() else None
    wg2 = new("sc.concat", [wg, chunks_rows(sg)], {"axis": 0}, named(wg))
    wu2 = new("sc.concat", [wu, chunks_rows(su)], {"axis": 0}, named(wu))
    sd_chunks = new("sc.transpose", [new("sc.reshape", [sd], {"shape": (H, m, F)})], {"perm": (1, 0, 2)})
    wd2 = new("sc.concat", [wd, sd_chunks], {"axis": 0}, named(wd))

    order, offsets = rw.create(op, "sc.moe_dispatch", [ids2], {"num_experts": E + m}).results
    xp = new("sc.moe_permute", [r.x, order], {"top_k": k + m})
    h = new("sc.moe_gated_grouped_matmul", [xp, wg2, wu2, offsets], {"activation": r.gated.attrs["activation"]})
    yp = new("sc.grouped_matmul", [h, wd2, offsets])
    out = new("sc.moe_combine", [yp, order, weights2])
    if out.type != op.result.type:
        return False  # pragma: no cover - the checks above make the types equal
    old = list(op.operands)
    rw.replace(op, [out])
    _erase_dead(old, rw)
    return True


def _erase_dead(values: list[Value], rw: Rewriter) -> None:
    """Erase the pure ops that computed ``values`` once nothing uses them (the replaced chain),
    and so on upwards; dead code elsewhere is left to ``dce``."""
    work = [v.op for v in values if isinstance(v, OpResult)]
    while work:
        op = work.pop()
        if op.parent is None or not is_trivially_dead(op):
            continue
        work.extend(v.op for v in op.operands if isinstance(v, OpResult))
        rw.erase(op)


@register_pass
@dataclass(frozen=True)
class ExpertFusion(Pass):
    """fuse the experts' gate and up grouped matmuls into one kernel and fold shared experts into the routed ones"""
    name = "expert-fusion"

    def run(self, graph, stats: Statistics) -> None:
        # gate/up first: folding a shared expert needs the routed chain in its gated form
        apply_patterns(graph, [Pattern("sc.mul", _fuse_gate_up(stats), "fuse-gate-up")], erase_dead=False)
        apply_patterns(graph, [Pattern("sc.add", _fold_shared(stats), "fold-shared-expert")], erase_dead=False)
