"""``dce``: erase ops whose results nothing uses (every op in the dialect is pure)."""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..ir import Block
from ..ir.nxgraph import to_networkx
from .registry import Pass, Statistics, register_pass
from .rewrite import is_trivially_dead


def _erase_dead_in_block(block: Block) -> int:
    """Reverse sweep: an op whose users were all erased becomes dead in the same sweep."""
    n = 0
    for op in reversed(list(block.ops)):
        for r in op.regions:
            for b in r.blocks:
                n += _erase_dead_in_block(b)
        if is_trivially_dead(op):
            op.erase()
            n += 1
    return n


@register_pass
@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    """erase ops whose results do not reach a function result"""
    name = "dce"

    def run(self, graph, stats: Statistics) -> None:
        for fn in graph.functions.values():
            g = to_networkx(fn)
            ret = fn.return_op
            live = nx.ancestors(g, id(ret)) | {id(ret)}
            for op in reversed(list(fn.ops)):
                if id(op) not in live and is_trivially_dead(op):
                    op.erase()
                    stats["ops removed"] += 1
            for op in fn.ops:  # unused values inside regions (sc.fused bodies)
                for r in op.regions:
                    for b in r.blocks:
                        stats["ops removed"] += _erase_dead_in_block(b)
