"""CPU lowering rule: ``sc.sparse_input_linear`` (activation sparsity).

f32 goes to ``sparsec.runtime.cpu.sparse_linear`` (few rows: only the kept weight rows are read;
many rows: threshold, then BLAS); f16/bf16 are widened to f32 around it and rounded once, as the
reference does; f64 thresholds and multiplies with NumPy (BLAS).
"""
from __future__ import annotations

import numpy as np

from ...ops.sparsity import sparsify_input
from ...runtime.cpu import sparse_linear as S
from . import Kernel, LoweringError, cpu_lowering
from .linalg import _half, refuse_quantized, rows

F32 = np.dtype(np.float32)


@cpu_lowering("sc.sparse_input_linear")
def lower_sparse_input_linear(op) -> Kernel:
    x_t, w_t = op.operands[0].type, op.operands[1].type
    refuse_quantized(op, "weight", w_t)
    dtype = x_t.dtype.np
    t = float(op.attrs["threshold"])

    if dtype == F32:
        def run(x, w, out):
            S.sparse_input_linear_f32(rows(x), w, t, rows(out))
        return Kernel(run, "sparse_input_linear_f32", impl="numba",
                      info={"threshold": t, "sparse_max_rows": S.SPARSE_MAX_ROWS})

    if dtype == np.float64:
        def run(x, w, out):
            np.matmul(sparsify_input(rows(x), t), w, out=rows(out))
        return Kernel(run, "sparse_input_linear_f64", impl="blas", info={"threshold": t})

    if _half(dtype):
        def run(x, w, out):
            out2 = rows(out)
            y = np.empty(out2.shape, F32)
            S.sparse_input_linear_f32(rows(x).astype(F32), w.astype(F32), t, y)
            out2[...] = y
        return Kernel(run, f"sparse_input_linear_{x_t.dtype.name}_via_f32", impl="numba", info={"threshold": t})

    raise LoweringError(f"{op.describe()}: no CPU kernel for sc.sparse_input_linear on {x_t.pretty()}")
