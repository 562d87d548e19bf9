"""IR -> ``Plan`` for the CUDA target: the same slots and steps as the CPU target's
``lower_function``, with ``CudaKernel``s; every op without a CUDA rule is listed in one error.

The plan also carries ``plan.cuda_kernels`` (step index -> ``CudaKernel``), which the CUDA
executable reads for the checked kernels' error slots and ``--emit-ptx`` for the PTX specs.
"""
from __future__ import annotations

import numpy as np

from ...ir import Graph, TensorType
from ...runtime.plan import Plan, Slot, Step
from . import LoweringError, has_cuda_lowering, lower_op, missing_ops


def lower_function_cuda(graph: Graph, function: str | None = None, fallback=None,
                        donate: frozenset[str] | set[str] = frozenset()) -> Plan:
    fn = graph.functions[function] if function else graph.main
    if fallback is None:
        missing = missing_ops(fn.ops)
        if missing:
            raise LoweringError(f"@{fn.name}: the CUDA target has no lowering for {len(missing)} op(s) in this "
                                f"function: {', '.join(missing)} (use target='cpu' for this model)")
    slots: list[Slot] = []
    index: dict[int, int] = {}

    def new_slot(v, kind, name, **kw) -> int:
        i = len(slots)
        slots.append(Slot(i, v.type, kind, name, **kw))
        index[id(v)] = i
        return i

    inputs = [new_slot(a, "input", n) for a, n in zip(fn.args, fn.input_names())]
    steps: list[Step] = []
    kernels: dict = {}
    weights = {}
    absent = []
    for op in fn.ops:
        if op.name == "func.return":
            break
        if op.name == "sc.param":
            name = op.attrs["name"]
            if name not in graph.weights:
                absent.append(name)
                new_slot(op.result, "weight", name, weight=name)
                continue
            w = graph.weights[name]
            if isinstance(op.result.type, TensorType):
                w = np.require(w, requirements="C")
                want = op.result.type
                if w.dtype != want.dtype.np or tuple(w.shape) != tuple(want.shape):
                    raise LoweringError(f"weight {name!r}: the graph declares {want.pretty()}, the weight store "
                                        f"has shape {tuple(w.shape)} dtype {w.dtype}")
            weights[name] = w
            new_slot(op.result, "weight", name, weight=name)
            continue
        if op.name == "sc.constant":
            new_slot(op.result, "constant", "constant", value=np.require(op.attrs["value"], requirements="C"))
            continue
        if op.name == "sc.kv_write" and _donated(op.operands[0], fn, donate):
            from .attention import lower_kv_write_inplace
            k = lower_kv_write_inplace(op)
        elif fallback is not None and not has_cuda_lowering(op.name):
            k = fallback(op)
        else:
            k = lower_op(op)
        ins = tuple(index[id(v)] for v in op.operands)
        inplace = bool(k.info.get("inplace", False))
        alias = ins[0] if (k.view or inplace) else None
        outs = tuple(new_slot(r, "buffer", f"{op.name} result {r.index}", alias_of=alias) for r in op.results)
        kernels[len(steps)] = k
        steps.append(Step(k.fn, ins, outs, op.name, op.loc, k.name, k.impl, view=k.view or inplace,
                          inplace=inplace))
    if absent:
        raise LoweringError(f"the weight store lacks {len(absent)} weight(s) the graph reads: "
                            f"{', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}")
    outputs = [index[id(v)] for v in fn.outputs]
    inplace = tuple(sorted({inputs.index(s.inputs[0]) for s in steps if s.inplace and s.inputs[0] in inputs}))
    plan = Plan(fn.name, slots, steps, inputs, outputs, fn.input_names(), fn.output_names(), weights, "cuda",
                inplace)
    plan.cuda_kernels = kernels
    return plan


def _donated(v, fn, donate) -> bool:
    return (v.owner is fn.body and fn.input_names()[v.index] in donate and len(v.uses) == 1)
