"""CUDA lowering: each op's rule turns one operation into a ``CudaKernel`` (a host callable that
launches numba.cuda kernels on device arrays, with the op's attributes bound), registered on the
op's definition as ``opdef.lowerings["cuda"]`` by ``@cuda_lowering("sc.x")``. The target is a
set of rules on the same op definitions as the CPU target, not a fork: the same ``Plan``, the
same liveness, the same memory planner (``sparsec.runtime.memory``); only the kernels and the
executable (``sparsec.runtime.cuda.executable``) differ.

Kernel contract (stable: op groups are added as new rule modules against it)
---------------------------------------------------------------------------

A rule is ``rule(op) -> CudaKernel``. It runs at lowering time, may run without a GPU (``sparsec
compile --emit-ptx``), and must not touch device memory then.

- compute kernels: ``kernel.fn(*inputs, *outputs) -> None``. ``inputs`` are the op's present
  operands (absent optionals are skipped) as device arrays (``numba.cuda`` ``DeviceNDArray``, or
  the simulator's ``FakeCUDAArray``) of exactly the operand types, C-contiguous; ``outputs`` are
  preallocated C-contiguous device arrays of the result types' concrete shapes, carved out of
  the executable's one device arena (garbage, not zeros). The kernel writes every element of
  every output. ``fn`` chooses the launch configuration per call from the shapes
  (``sparsec.runtime.cuda.launch``) and launches on the default stream; it never copies data to
  the host and never synchronizes: the runtime synchronizes once, at the end of a call. A
  quantized weight (``QuantType``) arrives as a ``sparsec.runtime.cuda.device.DeviceQuantized``
  (format, shape, layout, and each part of the ``QuantizedTensor`` as a device array),
  uploaded once with the other weights.
- view kernels (``view=True``): ``fn(*inputs) -> tuple of device arrays`` aliasing ``inputs[0]``
  (reshape of a contiguous array).
- in-place kernels (``info["inplace"] = True``, the donated KV cache of ``sc.kv_write``):
  ``fn(cache, new) -> (cache,)`` after writing into ``cache``, which may be a strided device view
  (``generate`` passes the first ``ctx`` positions of a longer cache).
- checked kernels (``checked=True``): called as ``fn(*inputs, *outputs, err)``, ``err`` a device
  ``int64[2]`` that is zero on entry. A kernel that meets bad data (an index out of range, an
  integer division by zero) stores ``err[0] = code`` (>0) and ``err[1] = the bad value`` with
  ``sparsec.runtime.cuda.launch.report_error`` (or the same compare-and-swap inline; the first
  error wins) and carries on without reading
  out of bounds. After the call the runtime reads every step's ``err`` at once and raises
  ``KernelError`` with ``kernel.error(code, value)`` (a sentence naming what was wrong) and the
  op's source line. No kernel raises on the device.
- ``kernels``: every numba.cuda kernel ``fn`` may launch, as ``PtxSpec(name, pyfunc, signature)``
  with the exact argument types, so ``--emit-ptx`` compiles each for sm_90 without a device
  (``numba.cuda.compile_ptx(pyfunc, signature, cc=(9, 0))``). Kernels are plain Python functions
  in ``sparsec.runtime.cuda.*`` wrapped by ``launch.CudaFunction`` (jitted on first launch).
- host data a kernel needs (constants, a frequency table) is uploaded on first call and cached
  (``sparsec.runtime.cuda.device.Uploaded``), never at lowering.
- dtypes: f32, f64, the integers and bool where the op allows them, and f16/bf16
  (``sparsec.runtime.cuda.half``): f16 tensors are numba ``float16`` device arrays; numba cannot
  type ``ml_dtypes.bfloat16``, so every bfloat16 array a kernel is launched with is viewed as its
  ``uint16`` bits by ``launch.CudaFunction`` (the executable, weights and results keep bfloat16;
  ``PtxSpec`` signatures say ``uint16``: ``runtime.cuda.types.arr`` maps it). Kernels widen 16-bit
  elements to f32 as they load them, compute as for f32 and round once to the storage dtype when
  they store (round to nearest even, NaN kept), as the references. Data movement (shape ops,
  gathers, permute, KV writes) moves 2-byte elements unchanged. Every rule handles f16/bf16 (the
  quantized matmuls read f32, f16 or bf16 activations); a rule that cannot handle a 16-bit dtype
  must refuse it with ``refuse_half`` (a ``LoweringError`` naming the op and the dtype).

Ops without a CUDA rule make ``lower_function(..., target="cuda")`` raise one
``LoweringError`` listing every missing op (``missing_ops``).

Adding an op group (MoE dispatch/permute/grouped matmuls/combine and the quantized matmuls are
next): kernels in ``runtime/cuda/<group>.py`` (``@launch.kernel`` Python functions), rules in
``sparsec/lower/cuda/<group>.py`` with ``@cuda_lowering(...)`` returning
``CudaKernel(fn, name, kernels=[...])``, the module's name added to ``RULE_MODULES`` below (a
missing module is skipped, so groups land independently), tests in
``tests/test_cuda_<group>.py`` (starting with ``MODE = cuda_test_process()`` from
``sparsec.lower.cuda.testing``, so ``tests/test_cuda_suite.py`` runs them in a process with the
simulator, and ``benchmarks/cuda_check.py`` on a GPU; ``assert_matches_reference`` checks a graph
against the interpreter). ``sc.linear`` (float or quantized weights) and the grouped expert
matmuls share one GEMV and one register-tiled GEMM (``runtime/cuda/moe.py``; ``linear`` is one
group of all rows, ``sparsec.lower.cuda.moe.linear_kernel``); ``sc.matmul`` has its own batched,
strided GEMM (``runtime/cuda/linalg.py``). The ``sc.linear`` rule hands a ``QuantType`` weight to
``QUANT_LINEAR[format]`` (``sparsec.lower.cuda.linalg``) when a quantized module registers a rule
there.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from ...errors import SparsecError
from ...ir import Operation
from ..rules import has_lowering, lowering_decorator

TARGET = "cuda"


class LoweringError(SparsecError):
    """An op that the CUDA target cannot lower (names the op and what is missing)."""


@dataclass(frozen=True)
class PtxSpec:
    """One numba.cuda kernel a ``CudaKernel`` launches: ``compile_ptx(pyfunc, signature)``."""
    name: str
    pyfunc: Callable
    signature: tuple


@dataclass(frozen=True)
class CudaKernel:
    """A lowered op for the CUDA target (see the module docstring)."""
    fn: Callable
    name: str
    view: bool = False
    impl: str = "cuda"
    kernels: tuple = ()
    checked: bool = False
    #: ``error(code, value) -> str`` for checked kernels
    error: Callable | None = None
    info: dict = field(default_factory=dict)


#: ops the CUDA target does not lower, and why (as the CPU target's NOT_LOWERED)
NOT_LOWERED: dict[str, str] = {
    "sc.nonzero": "its results have a data-dependent length, which the runtime cannot plan memory for "
                  "(the sparse-activation pass rewrites the loops that produce it into top-k dispatch)",
}


#: ``@cuda_lowering("sc.x")`` registers ``rule(op) -> CudaKernel`` as the CUDA lowering of ``sc.x``
cuda_lowering = lowering_decorator(TARGET, "CUDA")


def has_cuda_lowering(name: str) -> bool:
    return has_lowering(TARGET, name, NOT_LOWERED)


def missing_ops(ops) -> list[str]:
    """Names of the ops in ``ops`` (skipping sc.param/sc.constant/func.return) without a CUDA
    rule, each once, in first-seen order."""
    seen: list[str] = []
    for op in ops:
        if op.name in ("sc.param", "sc.constant", "func.return"):
            continue
        if not has_cuda_lowering(op.name) and op.name not in seen:
            seen.append(op.name)
    return seen


def lower_op(op: Operation) -> CudaKernel:
    """The CUDA kernel for ``op`` (``LoweringError`` naming the op if it has no rule or the rule
    refuses its types)."""
    d = op.opdef
    if op.name in NOT_LOWERED:
        raise LoweringError(f"{op.describe()}: cannot be lowered to the CUDA target: {NOT_LOWERED[op.name]}")
    if d is None or TARGET not in d.lowerings:
        raise LoweringError(f"{op.describe()}: no CUDA lowering")
    k = d.lowerings[TARGET](op)
    if not isinstance(k, CudaKernel):
        raise LoweringError(f"{op.describe()}: the CUDA rule returned {type(k).__name__}, not a CudaKernel")
    return k


def refuse_half(op: Operation, *types) -> None:
    """A ``LoweringError`` when any of ``types`` (TensorTypes) is f16/bf16."""
    for t in types:
        dt = getattr(getattr(t, "dtype", None), "name", None)
        if dt in ("f16", "bf16"):
            raise LoweringError(f"{op.describe()}: the CUDA target does not lower {dt} tensors yet "
                                f"(cast to f32 before, or use target='cpu')")


#: rule modules by op group, imported in order; a module that does not exist yet is skipped (op
#: groups land in separate files), any other import error propagates
RULE_MODULES = ("elementwise", "shape", "reduce", "linalg", "nn", "index", "attention", "moe", "quant", "sparsity",
                "conv")

for _m in RULE_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_m}")
    except ModuleNotFoundError as _e:
        if _e.name != f"{__name__}.{_m}":
            raise
