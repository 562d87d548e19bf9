"""IR -> ``Plan``: one slot per SSA value of a function, one kernel step per op, for any target
(a target is a set of rules: ``sparsec.lower.cpu``, ``sparsec.lower.cuda``)."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..ir import Graph, TensorType
from ..runtime.plan import Plan, Slot, Step


class Target(NamedTuple):
    """What ``lower_function`` needs of a target's rule package."""
    error: type                   # its LoweringError
    has_rule: object              # has_rule(op name) -> bool
    lower_op: object              # lower_op(op) -> kernel (.fn .name .impl .view .info)
    kv_write_inplace: object      # rule for an sc.kv_write on a donated cache (updated in place)
    missing_ops: object = None    # missing_ops(ops) -> names without a rule, all reported at once


def target_rules(target: str) -> Target:
    """The rule package of ``target`` (the CUDA one is imported only when asked for: it loads
    numba.cuda)."""
    if target == "cpu":
        from .cpu import LoweringError, has_cpu_lowering, lower_op
        from .cpu.cache import lower_kv_write_inplace
        return Target(LoweringError, has_cpu_lowering, lower_op, lower_kv_write_inplace)
    if target == "cuda":
        from .cuda import LoweringError, has_cuda_lowering, lower_op, missing_ops
        from .cuda.attention import lower_kv_write_inplace
        return Target(LoweringError, has_cuda_lowering, lower_op, lower_kv_write_inplace, missing_ops)
    from .cpu import LoweringError
    raise LoweringError(f"target {target!r} has no lowering here (available: cpu, cuda)")


def lower_function(graph: Graph, function: str | None = None, target: str = "cpu", fallback=None,
                   donate: frozenset[str] | set[str] = frozenset()) -> Plan:
    """Lower ``graph``'s function (default: main) for ``target``; every op must have a rule.

    ``fallback(op) -> Kernel`` is used for ops without a rule (tests of the runtime use
    ``sparsec.testing.reference_kernel``); by default a missing rule is a ``LoweringError`` (on a
    target with ``missing_ops``, one error listing every op without a rule).
    ``donate`` names inputs whose arrays the caller hands over: a ``sc.kv_write`` that is the
    only user of a donated cache updates it in place (its result aliases the input).
    The plan's ``kernels`` maps each step index to its kernel object (the CUDA executable reads
    the checked kernels' error slots there, ``--emit-ptx`` the PTX specs).
    """
    t = target_rules(target)
    LoweringError = t.error
    fn = graph.functions[function] if function else graph.main
    if fallback is None and t.missing_ops is not None:
        missing_rules = t.missing_ops(fn.ops)
        if missing_rules:
            raise LoweringError(f"@{fn.name}: the {target.upper()} target has no lowering for {len(missing_rules)} "
                                f"op(s) in this function: {', '.join(missing_rules)} (use target='cpu' for this "
                                f"model)")
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
    missing = []
    for op in fn.ops:
        if op.name == "func.return":
            break
        if op.name == "sc.param":
            name = op.attrs["name"]
            if name not in graph.weights:
                missing.append(name)
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
            k = t.kv_write_inplace(op)
        elif fallback is not None and not t.has_rule(op.name):
            k = fallback(op)
        else:
            k = t.lower_op(op)
        ins = tuple(index[id(v)] for v in op.operands)
        inplace = bool(k.info.get("inplace", False))
        alias = ins[0] if (k.view or inplace) else None
        outs = tuple(new_slot(r, "buffer", f"{op.name} result {r.index}", alias_of=alias) for r in op.results)
        kernels[len(steps)] = k
        steps.append(Step(k.fn, ins, outs, op.name, op.loc, k.name, k.impl, view=k.view or inplace,
                          inplace=inplace, bind=getattr(k, "bind", None)))
    if missing:
        raise LoweringError(f"the weight store lacks {len(missing)} weight(s) the graph reads: "
                            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    outputs = [index[id(v)] for v in fn.outputs]
    inplace = tuple(sorted({inputs.index(s.inputs[0]) for s in steps if s.inplace and s.inputs[0] in inputs}))
    plan = Plan(fn.name, slots, steps, inputs, outputs, fn.input_names(), fn.output_names(), weights, target,
                inplace)
    plan.kernels = kernels
    return plan


def _donated(v, fn, donate) -> bool:
    """``v`` is a donated function input used by exactly one op."""
    return (v.owner is fn.body and fn.input_names()[v.index] in donate and len(v.uses) == 1)
