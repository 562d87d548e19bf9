"""CPU lowering rules: ``sc.linear`` and ``sc.matmul``.

A quantized ``sc.linear`` weight (``QuantType``) goes to the quantized kernels (``quant.py``).

f32 products with a ``[out, in]`` right operand (``sc.linear``'s weight, a transposed or 1-D
``sc.matmul`` operand) go to the tile kernel of ``sparsec.runtime.cpu.linalg`` (one row: a
parallel GEMV reading the weight once), or to BLAS from ``BLAS_MIN_ROWS`` rows; other right
operands (``[in, out]``, batched) and f64 go to BLAS (``np.matmul``);
f16/bf16 are widened to f32 around the f32 path and rounded once, as the reference does;
integers use an int64 kernel and wrap to the operand dtype, as the reference does.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import TensorType
from ...ir.types import QuantType
from ...runtime.cpu import linalg as K
from . import Kernel, LoweringError, contiguous, cpu_lowering

F32 = np.dtype(np.float32)


def _half(dtype: np.dtype) -> bool:
    """f16 or bf16: computed in f32 and rounded once."""
    return dtype.kind == "f" and dtype.itemsize == 2 or dtype.name == "bfloat16"


def rows(a: np.ndarray) -> np.ndarray:
    """``a`` (rank >= 1) as a 2-d ``[rows, last dim]`` view (also for zero sizes, where
    ``reshape(-1, n)`` fails)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def refuse_quantized(op, operand: str, t) -> None:
    """For rules without a quantized kernel: a ``LoweringError`` if ``t`` is a quantized type."""
    if isinstance(t, QuantType):
        raise LoweringError(f"{op.describe()}: {operand} is a quantized weight {t} ({t.format}); the CPU target "
                            f"has no kernel for quantized {op.name} (dequantize it to f32 first)")


@cpu_lowering("sc.linear")
def lower_linear(op) -> Kernel:
    x_t, w_t = op.operands[0].type, op.operands[1].type
    if isinstance(w_t, QuantType):
        from . import quant
        return quant.lower_linear(op)
    dtype = x_t.dtype.np
    has_bias = len(op.operands) == 3

    if dtype == F32:
        def run(x, w, *rest):
            bias, out = (rest[0], rest[1]) if has_bias else (None, rest[0])
            K.linear_f32(rows(x), w, bias, rows(out))

        def bind(x, w, *rest):
            bias, out = (rest[0], rest[1]) if has_bias else (None, rest[0])
            if not contiguous(x, w, out, *rest):
                return None
            return K.linear_f32_call(rows(x), w, bias, rows(out))
        return Kernel(run, "linear_f32", impl="numba", info={"blas_min_rows": K.BLAS_MIN_ROWS}, bind=bind)

    if dtype == np.float64:
        def run(x, w, *rest):
            bias, out = (rest[0], rest[1]) if has_bias else (None, rest[0])
            out2 = rows(out)
            np.matmul(rows(x), w.T, out=out2)
            if bias is not None:
                np.add(out2, bias, out=out2)
        return Kernel(run, "linear_f64", impl="blas")

    if _half(dtype):
        def run(x, w, *rest):
            bias, out = (rest[0], rest[1]) if has_bias else (None, rest[0])
            out2 = rows(out)
            y = np.empty(out2.shape, F32)
            K.linear_f32(rows(x).astype(F32), w.astype(F32), None if bias is None else bias.astype(F32), y)
            out2[...] = y
        return Kernel(run, f"linear_{x_t.dtype.name}_via_f32", impl="numba")

    raise LoweringError(f"{op.describe()}: no CPU kernel for sc.linear on {x_t.pretty()}")


def _swap(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


@cpu_lowering("sc.matmul")
def lower_matmul(op) -> Kernel:
    a_t, b_t = op.operands[0].type, op.operands[1].type
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    dtype = a_t.dtype.np
    assert isinstance(a_t, TensorType) and isinstance(b_t, TensorType)

    if dtype.kind in "iu":
        def run_int(a, b, out):
            a = _swap(a) if ta else a
            b = _swap(b) if tb else b
            a2 = a[None, :] if a.ndim == 1 else a
            b2 = b[:, None] if b.ndim == 1 else b
            batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
            m, k, n = a2.shape[-2], a2.shape[-1], b2.shape[-1]
            # fresh C-ordered int64 copies (writable: one Numba specialization for every input)
            nb = math.prod(batch)
            a3 = np.broadcast_to(a2, batch + (m, k)).astype(np.int64, order="C").reshape(nb, m, k)
            b3 = np.broadcast_to(b2, batch + (k, n)).astype(np.int64, order="C").reshape(nb, k, n)
            res = np.empty((nb, m, n), np.int64)
            K.matmul_i64(a3, b3, res)
            out[...] = res.reshape(out.shape)  # wraps to the operand dtype, as the reference
        return Kernel(run_int, "matmul_int", impl="numba")

    half = _half(dtype)
    nt = b_t.rank == 1 or (b_t.rank == 2 and tb)  # b is [N, K] (a 1-D b is one weight row)
    if not nt or dtype == np.float64:
        # b [K, N] (OpenBLAS's few-row path streams it well), batched b, or f64: BLAS through
        # np.matmul, which has the op's semantics
        def run_blas(a, b, out):
            a = _swap(a) if ta else a
            b = _swap(b) if tb else b
            if half:
                out[...] = np.matmul(a.astype(F32), b.astype(F32))
            else:
                np.matmul(a, b, out=out)
        return Kernel(run_blas, "matmul_blas", impl="blas")

    # f32 (or f16/bf16 through f32) rows of a times b [N, K]: the tile kernel of sc.linear
    def run(a, b, out):
        if half:
            a, b = a.astype(F32), b.astype(F32)
        if ta:
            a = np.ascontiguousarray(_swap(a))
        a2 = rows(a)
        w = b.reshape(1, b.shape[0]) if b.ndim == 1 else b
        out2 = out.reshape(a2.shape[0], w.shape[0])
        res = np.empty(out2.shape, F32) if half else out2
        K.linear_f32(a2, w, None, res)
        if half:
            out2[...] = res
    return Kernel(run, "matmul_f32_nt", impl="numba", info={"blas_min_rows": K.BLAS_MIN_ROWS})
