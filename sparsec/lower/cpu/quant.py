"""CPU lowering of ops on quantized weights (``QuantType`` operands whose run-time value is a
``sparsec.quant.QuantizedTensor``): ``sc.linear``, ``sc.grouped_matmul``,
``sc.moe_gated_grouped_matmul`` and ``sc.embedding``, for every format (q8_0, q4_0, i8c, int4,
int4g64, int4g128). The rules of ``linalg.py``, ``moe.py`` and ``index.py`` hand their quantized
cases to the functions here.

Semantics: the reference dequantizes the weight and computes in f32. The matmul kernels
(``sparsec.runtime.cpu.quant``, whose docstring derives the error bound) quantize the
activations to int8 in blocks of 32 once per matmul, so they differ from the reference by that
quantization error; the embedding dequantizes the gathered rows and is exact. f16/bf16 (and
f64) activations are widened to f32 around the kernels and the result rounded once.

The instruction-set path (``vnni`` / ``avx2`` / ``generic``) is chosen when the op is lowered
(``sparsec.runtime.cpu.quant.current_isa``) and named in the kernel (``linear_q8_0_vnni``).
A weight in a layout other than the kernels' (``"r16i"``; ``"r16"`` for i8c; see
``sparsec.quant.repack``), the canonical ``"blocks"`` say, is repacked on the kernel's first
call and the repacked form cached beside it.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.types import QuantType
from ...runtime.cpu import common
from ...runtime.cpu import linalg as L
from ...runtime.cpu import quant as Q
from . import Kernel, LoweringError, contiguous

F32 = np.dtype(np.float32)


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _check_float(op, dtype: np.dtype) -> None:
    if not (dtype.kind == "f" or dtype.name == "bfloat16"):
        raise LoweringError(f"{op.describe()}: no CPU kernel for quantized {op.name} on {dtype} activations")


def _path(op, fmt: str) -> tuple[str, int]:
    try:
        isa = Q.current_isa()
    except (ValueError, RuntimeError) as e:
        raise LoweringError(f"{op.describe()}: {e}") from None
    return isa, Q.kernel_address(fmt, isa)


def _prepared(op, w, t: QuantType) -> Q.Prepared:
    """The run-time weight as the kernels read it (checked against its IR type)."""
    fmt = getattr(w, "fmt", None)
    if fmt is None or not hasattr(w, "parts"):
        raise TypeError(f"{op.describe()}: expected a quantized weight ({t}), got {type(w).__name__}")
    if fmt != t.format or tuple(w.shape) != tuple(t.shape):
        raise ValueError(f"{op.describe()}: the weight is {fmt} {list(w.shape)}, the graph declares {t}")
    return Q.prepare(w)


class _LastWeight:
    """The prepared form of the last weight object a kernel saw: a step is called with the same
    weight every time, so the checks of ``_prepared`` run once, not per call."""
    __slots__ = ("op", "t", "w", "p")

    def __init__(self, op, t: QuantType):
        self.op, self.t, self.w, self.p = op, t, None, None

    def __call__(self, w) -> Q.Prepared:
        if w is not self.w:
            self.p = _prepared(self.op, w, self.t)
            self.w = w
        return self.p


def _impl(isa: str) -> str:
    return "numba" if isa == "generic" else "llvm"


def lower_linear(op) -> Kernel:
    """``sc.linear(x, w, b?)`` with a quantized ``w [N, K]``."""
    x_t, w_t = op.operands[0].type, op.operands[1].type
    dtype = x_t.dtype.np
    _check_float(op, dtype)
    has_bias = len(op.operands) == 3
    fmt = w_t.format
    isa, fn = _path(op, fmt)
    native = dtype == F32

    prep = _LastWeight(op, w_t)

    def run(x, w, *rest):
        bias, out = (rest[0], rest[1]) if has_bias else (None, rest[0])
        p = prep(w)
        x2, out2 = (x, out) if x.ndim == 2 else (_rows(x), _rows(out))
        if not native:
            x2 = x2.astype(F32)
            bias = None if bias is None else bias.astype(F32)
        res = out2 if native else np.empty(out2.shape, F32)
        Q.linear(fn, x2, p, bias, res)
        if not native:
            out2[...] = res

    def bind(x, w, *rest):
        bias, out = (rest[0], rest[1]) if has_bias else (None, rest[0])
        if not (native and contiguous(x, out) and (bias is None or contiguous(bias))):
            return None
        x2, out2 = (x, out) if x.ndim == 2 else (_rows(x), _rows(out))
        p = prep(w)
        return Q.fixed_call(fn, p, p, x2, Q._NO_OFFSETS, Q._NO_BIAS if bias is None else bias, L.ACT_NONE, out2)
    return Kernel(run, f"linear_{fmt}_{isa}", impl=_impl(isa), info={"isa": isa, "format": fmt}, bind=bind)


def lower_grouped(op, act: int) -> Kernel:
    """``sc.grouped_matmul`` (``act`` = ACT_NONE) / ``sc.moe_gated_grouped_matmul`` with quantized
    expert weights ``[E, N, K]`` (gate and up may be of different formats)."""
    from .index import as_i64
    x_t = op.operands[0].type
    dtype = x_t.dtype.np
    _check_float(op, dtype)
    gated = act != L.ACT_NONE
    w_t = op.operands[1].type
    w2_t = op.operands[2].type if gated else None
    if gated and not (isinstance(w_t, QuantType) and isinstance(w2_t, QuantType)):
        raise LoweringError(f"{op.describe()}: w_gate {w_t} and w_up {w2_t} must both be quantized or both not")
    isa, fn = _path(op, w_t.format)
    fn2 = Q.kernel_address(w2_t.format, isa) if gated else 0
    same = not gated or w2_t.format == w_t.format
    native = dtype == F32
    name = f"grouped_{'gated_' if gated else ''}{w_t.format}{'' if same else '_' + w2_t.format}_{isa}"

    def bad(offsets, rows):
        return ValueError(f"{op.describe()}: offsets must rise from 0 to {rows} (the row count), "
                          f"got {offsets.tolist()}")

    prep, prep2 = _LastWeight(op, w_t), (_LastWeight(op, w2_t) if gated else None)

    def run(x, w, *rest):
        w2, offsets, out = rest if gated else (None,) + rest
        offsets = as_i64(offsets)
        p = prep(w)
        if not native:
            x = x.astype(F32)
        res = out if native else np.empty(out.shape, F32)
        if same:
            ok = Q.qmatmul(fn, x, p, prep2(w2) if gated else None, offsets, None, act, res)
        else:  # gate and up in different formats: two products, then the epilogue
            ok = Q.qmatmul(fn, x, p, None, offsets, None, L.ACT_NONE, res)
            up = np.empty(res.shape, F32)
            ok = ok and Q.qmatmul(fn2, x, prep2(w2), None, offsets, None, L.ACT_NONE, up)
            if ok:
                L.gated_epilogue(res, up, act)
        if not ok:
            raise bad(offsets, x.shape[0])
        if not native:
            out[...] = res

    def bind(x, w, *rest):
        w2, offsets, out = rest if gated else (None,) + rest
        if not (native and same and offsets.dtype == np.int64):
            return None
        p = prep(w)
        call = Q.fixed_call(fn, p, prep2(w2) if gated else p, x, offsets, Q._NO_BIAS, act, out)
        if call is None:
            return None

        def on_bad(_status):
            raise bad(offsets, x.shape[0])
        return common.checked(call, on_bad, ok=0)
    return Kernel(run, name, impl=_impl(isa), info={"isa": isa, "format": w_t.format}, bind=bind)


def lower_embedding(op) -> Kernel:
    """``sc.embedding(ids, table)`` with a quantized ``table [vocab, dim]``: the gathered rows,
    dequantized (exactly the reference's values)."""
    from .index import as_i64, out_of_range
    t = op.operands[1].type

    def run(ids, table, out):
        p = _prepared(op, table, t)
        idx = as_i64(ids).reshape(-1)
        bad = Q.embedding(p, idx, out.reshape(idx.size, t.shape[1]))
        if bad >= 0:
            raise out_of_range(op, idx, bad, t.shape[0], f"an embedding table of {t.shape[0]} rows")
    return Kernel(run, f"embedding_{t.format}", impl="numba", info={"format": t.format})
