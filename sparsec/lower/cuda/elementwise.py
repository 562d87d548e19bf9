"""CUDA lowering rules: elementwise ops, ``sc.cast``, ``sc.iota`` and ``sc.fused
{kind="elementwise"}``: one generated kernel per op or fused region (``codegen.py`` here), from the
same ``codegen.Program`` the CPU rules build (``sparsec.lower.cpu.elementwise``).

``sc.fused`` is dispatched on its ``kind``; other groups can register a CUDA lowering with
``FUSED_KINDS[kind] = rule``.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ...ir import Operation, TensorType, broadcast_shapes
from .. import codegen as cpu_codegen
from ..cpu.elementwise import ELEMENTWISE_OPS, program_from_region
from . import CudaKernel, LoweringError, cuda_lowering
from . import codegen


def _tensor(v, what: str, op: Operation) -> TensorType:
    if not isinstance(v.type, TensorType):
        raise LoweringError(f"{op.describe()}: {what} is {v.type}, not a tensor")
    return v.type


@cuda_lowering(*ELEMENTWISE_OPS)
def lower_elementwise(op: Operation) -> CudaKernel:
    out = _tensor(op.results[0], "the result", op)
    in_types = [_tensor(v, f"operand {i}", op) for i, v in enumerate(op.operands)]
    groups, flags = cpu_codegen.collapse(out.shape, [t.shape for t in in_types])
    nodes = [cpu_codegen.Node("input", (j,), t.dtype.name) for j, t in enumerate(in_types)]
    nodes.append(cpu_codegen.Node(op.name, tuple(range(len(in_types))), out.dtype.name))
    prog = cpu_codegen.Program(len(groups), [(t.dtype.name, f) for t, f in zip(in_types, flags)], nodes,
                               [len(nodes) - 1])
    return codegen.build(prog, groups, len(in_types), [], op.name[3:])


def lower_fused_elementwise(op: Operation) -> CudaKernel:
    try:
        prog, groups, constants, dtypes, dim_source = program_from_region(op)
    except Exception as e:  # the CPU helper raises its target's LoweringError
        raise LoweringError(str(e)) from None
    n = sum(1 for n_ in prog.nodes if n_.op not in ("input", "const"))
    return codegen.build(prog, groups, len(op.operands), constants, f"fused_elementwise{n}", dim_source)


#: kind -> rule for sc.fused (other op groups may add theirs)
FUSED_KINDS: dict[str, Callable[[Operation], CudaKernel]] = {"elementwise": lower_fused_elementwise}


@cuda_lowering("sc.fused")
def lower_fused(op: Operation) -> CudaKernel:
    kind = op.attrs.get("kind", "elementwise")
    rule = FUSED_KINDS.get(kind)
    if rule is None:
        raise LoweringError(f"{op.describe()}: no CUDA lowering for fused groups of kind {kind!r} "
                            f"(known: {', '.join(sorted(FUSED_KINDS))})")
    return rule(op)


@cuda_lowering("sc.iota")
def lower_iota(op: Operation) -> CudaKernel:
    from ...runtime.cuda import elementwise as rt
    from ...runtime.cuda import launch
    out = _tensor(op.results[0], "the result", op)
    dt = out.dtype
    k = rt.iota_half(dt.name) if dt.name in ("f16", "bf16") else rt.iota

    def fn(*args):
        o = args[-1]
        launch.launch_1d(k, o.size, o.reshape(o.size), np.int64(o.size))
    return CudaKernel(fn, f"iota_{dt.name}", kernels=(k.spec(rt.sig_iota(dt.name)),))


_ = broadcast_shapes  # (re-exported for rule modules that build regions)
