"""``sc.fused``: a group of ops carried as a region, run as one kernel.

The region's block arguments are the op's operands; its ``sc.yield`` gives the results. The
fuse-elementwise pass forms these groups; lowering generates one kernel per group. Its
reference runs the region with the interpreter, so a fused graph means what the unfused one did.
"""
from __future__ import annotations

from ..ir import Str, register

__all__: list[str] = []


@register
class Fused:
    """ops grouped into one kernel; results are the region's sc.yield operands"""
    name = "sc.fused"
    operands = ("inputs*",)
    attrs = {"kind": Str("elementwise", doc="what the group holds; decides the kernel generator")}
    regions = 1
    region_args = "operands"
    traits = ("pure",)

    def infer(inputs, *, kind, regions):
        if not regions or not regions[0].blocks:
            raise ValueError("sc.fused needs a body region")
        block = regions[0].blocks[0]
        term = block.terminator
        if term is None or term.name != "sc.yield":
            raise ValueError("the body of sc.fused must end with sc.yield")
        if not term.operands:
            raise ValueError("sc.fused must yield at least one value")
        return tuple(v.type for v in term.operands)

    def reference(inputs, *, kind, regions, weights):
        from ..interpreter import run_block
        block = regions[0].blocks[0]
        env = {id(a): x for a, x in zip(block.args, inputs)}
        return tuple(run_block(block, env, weights))
