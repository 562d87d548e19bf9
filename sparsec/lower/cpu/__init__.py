"""CPU lowering: each op's rule turns one operation into a ``Kernel`` (a compiled callable with
the op's attributes bound), registered on the op's definition as ``opdef.lowerings["cpu"]``.

A rule is ``rule(op) -> Kernel``. The kernel contract:

- compute kernels: ``kernel.fn(*inputs, *outputs) -> None``. ``inputs`` are the op's present
  operands (absent optionals are skipped) as C-contiguous NumPy arrays of exactly the operand
  types; ``outputs`` are preallocated C-contiguous arrays (``np.empty``: garbage, not zeros) of
  the result types' concrete shapes. The kernel writes every element of every output.
- view kernels (``view=True``): ``kernel.fn(*inputs) -> tuple of arrays`` that may alias the
  inputs (reshape of a contiguous array); the runtime keeps the input alive while views live.
- optional ``kernel.bind(*inputs, *outputs) -> callable() or None``: the same computation with
  these arrays fixed. The executable binds a step whose arrays are all the same every call
  (arena buffers, weights, constants) once per set of sizes, so the call skips the wrapper's
  per-call NumPy work (reshapes, size checks), which at one token costs as much as a small
  kernel, most of all with cold caches after the weight streams. ``None``: not bindable here.

Rules live in this package by op group (``elementwise.py``, ``reduce.py``, ...); the compiled
kernels they call live in ``sparsec.runtime.cpu``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...errors import SparsecError
from ...ir import Operation, TensorType
from ...ir.types import QuantType
from ..rules import has_lowering, lowering_decorator

TARGET = "cpu"


class LoweringError(SparsecError):
    """An op that the CPU target cannot lower (names the op and what is missing)."""


@dataclass(frozen=True)
class Kernel:
    """A lowered op: ``fn`` and how to call it (see the module docstring)."""
    fn: Callable
    name: str
    view: bool = False
    #: what the kernel is built from, for reports ("numba", "blas", "generated", "llvm")
    impl: str = "numba"
    info: dict = field(default_factory=dict)
    #: ``bind(*inputs, *outputs) -> callable() | None`` (see the module docstring)
    bind: Callable | None = None


#: ops the CPU target does not lower, and why: ``lower_op`` raises a ``LoweringError`` naming the op,
#: the user's line and this reason (tests check that these ops indeed have no rule)
NOT_LOWERED: dict[str, str] = {
    "sc.nonzero": "its results have a data-dependent length, which the CPU runtime cannot plan memory for. "
                  "It comes from a per-expert 'index the tokens routed to me' loop (Hugging Face MoE: "
                  "nonzero(ids == e) / x[tok] / index_add); the sparse-activation pass, in the default "
                  "pipeline, rewrites that loop into top-k dispatch (sc.moe_dispatch ... sc.moe_combine) "
                  "when it recognizes it; here the pass did not run or did not recognize the loop (the "
                  "forms it recognizes are listed in passes/sparse_activation.py)",
}


def contiguous(*arrays) -> bool:
    """Whether every array is C-contiguous (a bind's precondition: its reshapes must be views)."""
    return all(a.flags.c_contiguous for a in arrays)


#: ``@cpu_lowering("sc.x")`` registers ``rule(op) -> Kernel`` as the CPU lowering of ``sc.x``
cpu_lowering = lowering_decorator(TARGET, "CPU")


def has_cpu_lowering(name: str) -> bool:
    return has_lowering(TARGET, name)


def lower_op(op: Operation) -> Kernel:
    """The CPU kernel for ``op`` (``LoweringError`` naming the op if it has no rule or the rule
    refuses its types)."""
    d = op.opdef
    if op.name in NOT_LOWERED:
        raise LoweringError(f"{op.describe()}: cannot be lowered to the CPU target: {NOT_LOWERED[op.name]}")
    if d is None or TARGET not in d.lowerings:
        raise LoweringError(f"{op.describe()}: no CPU lowering")
    k = d.lowerings[TARGET](op)
    if not isinstance(k, Kernel):
        raise LoweringError(f"{op.describe()}: the CPU rule returned {type(k).__name__}, not a Kernel")
    return k


def run_naive(graph, *arrays, reference_fallback: frozenset[str] | set[str] = frozenset()):
    """Run ``graph`` op by op with the CPU kernels, fresh output arrays for each op (no memory
    planning): the simplest executable, used to test kernels one op at a time.

    Ops named in ``reference_fallback`` without a CPU rule run their NumPy reference instead
    (tests of one op's kernel use this for the helper ops around it). Returns a tuple of arrays
    and records which ops ran as kernels in ``run_naive.last_kernels``.
    """
    from ...interpreter import _bind_inputs, run_op
    from ...ir.types import bound_dims
    fn = graph.main
    arrays = [np.require(a, requirements="C") for a in arrays]
    bindings = _bind_inputs(fn, arrays)
    env = {id(a): x for a, x in zip(fn.args, arrays)}
    used: list[str] = []
    with bound_dims(bindings):
        for op in fn.ops:
            if op.name == "func.return":
                run_naive.last_kernels = used
                return tuple(env[id(v)] for v in op.operands)
            if op.name == "sc.param":
                w = graph.weights[op.attrs["name"]]
                env[id(op.result)] = w if isinstance(op.result.type, QuantType) else np.require(w, requirements="C")
                continue
            if op.name == "sc.constant":
                env[id(op.result)] = np.require(op.attrs["value"], requirements="C")
                continue
            if not has_cpu_lowering(op.name) and op.name in reference_fallback:
                for r, x in zip(op.results, run_op(op, env, graph.weights)):
                    env[id(r)] = np.require(x, requirements="C")
                continue
            k = lower_op(op)
            ins = [env[id(v)] for v in op.operands]
            if k.view:
                outs = k.fn(*ins)
            else:
                outs = [np.empty(r.type.concrete(bindings), r.type.dtype.np) if isinstance(r.type, TensorType)
                        else None for r in op.results]
                k.fn(*ins, *outs)
            used.append(op.name)
            for r, x in zip(op.results, outs):
                env[id(r)] = x
    raise LoweringError("function has no func.return")


run_naive.last_kernels = []

# rule modules register themselves on import
from . import attention, cache, elementwise, index, linalg, moe, nn, reduce, shape  # noqa: E402,F401
from . import sparsity  # noqa: E402,F401
from . import conv, scan  # noqa: E402,F401
from . import quant  # noqa: E402,F401  (quantized weights: dispatched to from linalg, moe, index)
