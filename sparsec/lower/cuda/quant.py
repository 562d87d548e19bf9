"""CUDA lowering of ops on quantized weights: ``sc.linear`` (registered in
``linalg.QUANT_LINEAR``) and ``sc.embedding`` on a quantized table (``index.QUANT_EMBEDDING``),
for every format (q8_0, q4_0, i8c, int4, int4g64, int4g128); the grouped matmuls' quantized
cases are in ``moe.py``. One set of kernels: ``runtime.cuda.moe``'s grouped GEMV (a 32-bit-word
variant for q8_0 / q4_0 / int4 when K is whole blocks) and tiled GEMM, reading the weight
through a dequantizing loader (``runtime.cuda.quant``); ``sc.linear`` is one group of all rows.

Semantics and error bound: the kernels dequantize each weight element exactly as
``sparsec.quant.dequantize`` does (bit for bit) and accumulate ``w * x`` in f32, so against the
reference interpreter (dequantize, then compute in f32) the only difference is the order of the
f32 sums (any order, including the word GEMV's partial sums of 4 or 8 products): for an output
``y[r, n]`` over ``K`` inputs, with both sides bounded by the standard ``gamma_K = K u / (1 - K u)``,
``u = 2^-24``::

    |y_cuda[r, n] - y_ref[r, n]| <= 2 * gamma_K * sum_k |w[n, k] * x[r, k]|    (+ the bias rounding)

(``tests/test_cuda_quant.py`` checks it). The activations are not quantized (unlike the CPU
kernels' int8 activations): numba.cuda has no dp4a intrinsic, a decode step is bound by the
weight bytes, which this does not change, and the result is closer to the reference. The
embedding gathers dequantized rows: exact. f32, f16 or bf16 activations (16-bit rows widened to
f32 as they are read, each output rounded once); f64 is refused.
"""
from __future__ import annotations

import numpy as np

from ...runtime.cuda import launch
from ...runtime.cuda import quant as Q
from . import CudaKernel, LoweringError
from .index import QUANT_EMBEDDING
from .linalg import QUANT_LINEAR
from .moe import WeightArgs, linear_kernel


def lower_quant_linear(op) -> CudaKernel:
    """``sc.linear(x, w, b?)`` with a quantized ``w [N, K]`` (f32, f16 or bf16 ``x [..., K]``; 16-bit
    rows are widened to f32 as they are read and each output rounded once)."""
    x_t, w_t = op.operands[0].type, op.operands[1].type
    if x_t.dtype.name not in ("f32", "f16", "bf16"):
        raise LoweringError(f"{op.describe()}: a quantized sc.linear takes f32, f16 or bf16 activations on the CUDA "
                            f"target, got {x_t.pretty()} (insert sc.cast)")
    w = WeightArgs(op, w_t, np.dtype(np.float32))
    half = x_t.dtype.name if x_t.dtype.name != "f32" else None
    return linear_kernel(op, w, x_t.dtype.np, half, f"linear_{w_t.format}", format=w_t.format)




def lower_quant_embedding(op) -> CudaKernel:
    """``sc.embedding(ids, table)`` with a quantized ``table [vocab, dim]``: dequantized rows (exact)."""
    i_t, t_t = op.operands[0].type, op.operands[1].type
    w = WeightArgs(op, t_t, np.dtype(np.float32))
    vocab, dim = (int(d) for d in t_t.shape)
    spec = Q.make_dequant_rows(w.kind, w.G).spec(Q.dequant_rows_sig(w.kind, i_t.dtype.np))

    def fn(ids, table, out, err):
        if out.size == 0:
            return
        wa, wb, wc = w(table)
        launch.launch_1d(Q.make_dequant_rows(w.kind, w.G), out.size, wa, wb, wc, ids.reshape(ids.size),
                         np.int64(vocab), np.int64(dim), np.int64(w.nb), out.reshape(out.size), err)

    def error(code, value):
        return f"index {value} is out of range for an embedding table of {vocab} rows in {op.describe()}"
    return CudaKernel(fn, f"embedding_{t_t.format}", kernels=(spec,), checked=True, error=error,
                      info={"format": t_t.format})


for _fmt in Q.FORMAT_KINDS:
    QUANT_LINEAR[_fmt] = lower_quant_linear
    QUANT_EMBEDDING[_fmt] = lower_quant_embedding
