"""CUDA lowering rule: ``sc.sparse_input_linear`` (activation sparsity; kernel in
``runtime.cuda.sparsity``: only the weight rows of kept inputs are read). f32 and f64; f16/bf16
are refused like the other CUDA rules, and quantized weights too (the op's weight is a plain
``[in, out]`` tensor)."""
from __future__ import annotations

import numpy as np

from ...ir.types import QuantType
from ...runtime.cuda import launch
from ...runtime.cuda import sparsity as S
from . import CudaKernel, LoweringError, cuda_lowering

MAX_BLOCKS_Y = 4096


@cuda_lowering("sc.sparse_input_linear")
def lower_sparse_input_linear(op) -> CudaKernel:
    x_t, w_t = op.operands[0].type, op.operands[1].type
    if isinstance(w_t, QuantType):
        raise LoweringError(f"{op.describe()}: the CUDA target has no sc.sparse_input_linear on quantized weights")
    dtype = x_t.dtype.np
    if not x_t.dtype.is_float:
        raise LoweringError(f"{op.describe()}: no CUDA sc.sparse_input_linear for {x_t.pretty()}")
    half = x_t.dtype.name if x_t.dtype.name in ("f16", "bf16") else None   # computed in f32, rounded once
    cdt = np.dtype(np.float32) if half else dtype
    thr = cdt.type(op.attrs["threshold"])
    K, N = (int(d) for d in w_t.shape)

    def run(x, w, out):
        m = out.size // N if N else 0
        if m == 0:
            return
        t = launch.block_size(N)
        ky = S.make_sparse_input_linear(cdt.name, S.RB, half)
        ky[((N + t - 1) // t, max(1, min(MAX_BLOCKS_Y, -(-m // S.RB)))), t](
            x.reshape(x.size), w.reshape(w.size), thr, np.int64(m), np.int64(K), np.int64(N), out.reshape(out.size))
    specs = (S.make_sparse_input_linear(cdt.name, S.RB, half).spec(S.sparse_input_linear_sig(dtype, cdt)),)
    return CudaKernel(run, f"sparse_input_linear_{dtype.name}", kernels=specs,
                      info={"threshold": float(op.attrs["threshold"])})
