"""The lowered form of one function: value slots and the kernel steps that fill them.

A ``Plan`` is what a target's lowering hands the runtime: every SSA value of the function is a
``Slot`` (an input, a weight, a constant, or a buffer a step writes), and ``steps`` run the
kernels in order. Slots whose step is a view (reshape) or an in-place update alias the storage
of an input slot (``alias_of``); the memory planner gives every other buffer its place.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class Slot:
    index: int
    type: Any                       # TensorType (or QuantType for weights)
    kind: str                       # "input" | "weight" | "constant" | "buffer"
    name: str                       # readable: input name, weight name, or "<op> result"
    alias_of: int | None = None     # buffer that is a view of (or updated in place from) this slot
    value: np.ndarray | None = None  # constants
    weight: str | None = None        # weights: the name in the weight store


@dataclass
class Step:
    fn: Callable
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    op: str                         # op name, for reports and errors
    loc: str | None = None          # source location of the op
    kernel: str = ""                # kernel name
    impl: str = ""                  # "numba" | "blas" | "generated" | "llvm"
    view: bool = False              # fn(*inputs) returns the outputs, aliasing inputs[0]
    inplace: bool = False           # like view, but writes into inputs[0]: runs every call
    bind: Callable | None = None    # bind(*inputs, *outputs) -> callable() | None (CPU kernels)


@dataclass
class Plan:
    function: str
    slots: list[Slot]
    steps: list[Step]
    inputs: list[int]
    outputs: list[int]
    input_names: list[str]
    output_names: list[str]
    weights: dict[str, Any] = field(default_factory=dict)
    target: str = "cpu"
    #: inputs (indices into ``inputs``) a step updates in place: passed as given (views, strided)
    inplace_inputs: tuple[int, ...] = ()

    def kernel_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.steps:
            key = f"{s.kernel} ({s.impl})" if s.impl else s.kernel
            out[key] = out.get(key, 0) + 1
        return out
