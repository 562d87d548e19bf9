"""``cse``: common subexpression elimination. Two pure ops with the same name, operands,
attributes and result types compute the same values; the later one is replaced by the earlier.
Scopes follow regions: an op inside a region may reuse a value computed outside it."""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import Block, Operation
from ..ir.attributes import format_attr
from .registry import Pass, Statistics, register_pass


def op_key(op: Operation):
    """What identifies the computation of a pure op without regions (None: never merged)."""
    d = op.opdef
    if d is None or "pure" not in d.traits or op.regions or not op.results:
        return None
    attrs = tuple(sorted((k, "none" if v is None else format_attr(v)) for k, v in op.attrs.items()))
    return (op.name, tuple(id(v) for v in op.operands), attrs, tuple(str(r.type) for r in op.results))


def _cse_block(block: Block, known: dict, stats: Statistics) -> None:
    scope = dict(known)
    for op in list(block.ops):
        for r in op.regions:
            for b in r.blocks:
                _cse_block(b, scope, stats)
        key = op_key(op)
        if key is None:
            continue
        prev = scope.get(key)
        if prev is None:
            scope[key] = op
            continue
        for old, new in zip(op.results, prev.results):
            old.replace_all_uses_with(new)
        op.erase()
        stats["ops removed"] += 1


@register_pass
@dataclass(frozen=True)
class CommonSubexpressionElimination(Pass):
    """merge pure ops that compute the same value from the same operands"""
    name = "cse"

    def run(self, graph, stats: Statistics) -> None:
        for fn in graph.functions.values():
            _cse_block(fn.body, {}, stats)
