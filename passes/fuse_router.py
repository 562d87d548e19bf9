"""``fuse-router``: the softmax MoE router as one op.

A softmax router traces to four small ops (Mixtral, Qwen-MoE, OLMoE; ``sc.nn.MoE``)::

    p       = sc.softmax(logits, axis=-1)
    w, ids  = sc.topk(p, k)                       # largest, last axis
    w       = w / sc.sum(w, axes=[-1], keepdims)  # only with norm_topk_prob

At one token each is a kernel call of a few microseconds, the whole MoE layer's matmuls a few
hundred; in a decode step of a small model they add up. The pass replaces the chain with
``sc.softmax_topk(logits, k, normalize)``, whose reference *is* that composition, so the rewrite
is exact in the interpreter, and whose CPU kernel computes the same values as the four kernels
(the tests compare them bit for bit).

Matched: ``sc.topk`` (``largest``, last axis) of an ``sc.softmax`` over the last axis that
nothing else uses. When the top-k values are used exactly by ``sc.sum`` over the last axis with
``keepdims`` and by ``sc.div(values, that sum)`` (the sum used only there), the division is
folded in as ``normalize``; otherwise the values are replaced as they are. Routers of other
forms (sigmoid with group limits and score bias, DeepSeek-V3) are left alone.

Runs after ``sparse-activation`` (which recognizes ``sc.topk`` or ``sc.softmax_topk`` ids) in
the default pipeline. Statistics: ``routers fused``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import Operation, Value
from ..ops._util import norm_axes, norm_axis
from .registry import Pass, Statistics, register_pass
from .rewrite import Pattern, Rewriter, apply_patterns, producer


def _normalization(vals: Value) -> Operation | None:
    """The ``sc.div`` of ``vals / sum(vals, last axis, keepdims)`` when those two are its only uses."""
    users = {id(u): u for u in vals.users}
    if len(vals.uses) != 2 or len(users) != 2:
        return None
    ops = list(users.values())
    total = next((u for u in ops if u.name == "sc.sum"), None)
    div = next((u for u in ops if u.name == "sc.div"), None)
    if total is None or div is None:
        return None
    rank = vals.type.rank
    axes = total.attrs["axes"]
    if not total.attrs["keepdims"] or tuple(norm_axes(axes, rank) if axes else range(rank)) != (rank - 1,):
        return None
    s = total.results[0]
    if len(s.uses) != 1 or div.operands[0] is not vals or div.operands[1] is not s:
        return None
    if div.results[0].type != vals.type:
        return None
    return div


def _fuse(stats: Statistics):
    def fuse_router(op: Operation, rw: Rewriter) -> bool:
        x = op.operands[0]
        rank = x.type.rank
        if not op.attrs["largest"] or norm_axis(op.attrs["axis"], rank) != rank - 1 or op.attrs["k"] < 1:
            return False
        sm = producer(x, "sc.softmax")
        if sm is None or len(x.uses) != 1 or norm_axis(sm.attrs["axis"], rank) != rank - 1:
            return False
        vals, ids = op.results
        div = _normalization(vals)
        fused = rw.create(op, "sc.softmax_topk", [sm.operands[0]], {"k": op.attrs["k"], "normalize": div is not None})
        w, i = fused.results
        w.name_hint, i.name_hint = (div.results[0] if div is not None else vals).name_hint, ids.name_hint
        if div is not None:
            total = div.operands[1].op
            rw.replace(div, [w])
            rw.erase(total)
            rw.replace_uses(ids, i)
            rw.erase(op)
        else:
            rw.replace(op, [w, i])
        rw.erase(sm)
        stats["routers fused"] += 1
        return True
    return fuse_router


@register_pass
@dataclass(frozen=True)
class FuseRouter(Pass):
    """softmax -> topk (-> divide by the sum) of a MoE router into one sc.softmax_topk"""
    name = "fuse-router"

    def run(self, graph, stats: Statistics) -> None:
        apply_patterns(graph, [Pattern("sc.topk", _fuse(stats), "fuse-router")], erase_dead=False)
