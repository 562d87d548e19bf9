"""CUDA kernel of ``sc.sparse_input_linear``: ``where(|x| < threshold, 0, x) @ w_t`` with
``w_t`` ``[in, out]``, reading only the weight rows of the inputs that are kept.

One thread per output column ``n`` (consecutive threads: consecutive columns of ``w_t``, so each
weight row is read coalesced), a block of threads per column range and ``RB`` activation rows at
a time: for each input ``k``, the row of weights is read once if any of the ``RB`` rows keeps
input ``k`` (every thread tests the same inputs, so a skipped row is skipped by the whole block
and its bytes are never loaded). At one token a skipped fraction of the inputs is that fraction
fewer weight bytes read. Accumulates in the compute dtype (f32, f64 for f64) like the reference;
NaN and inf inputs are never skipped (the comparison is strict, as ``sparsify_input``). f16/bf16
(``storage``): x and w widened to f32 as they are read (threshold compared in f32, as the
reference), each output rounded once (``runtime.cuda.half``).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import cuda

from . import half
from .launch import kernel
from .types import arr, scalar

RB = 4


@lru_cache(maxsize=None)
def make_sparse_input_linear(dtype: str, rb: int = RB, storage: str | None = None):
    acc_t = scalar(np.dtype(dtype))
    ld, st = (half.load(storage), half.store(storage)) if storage in half.HALF else (half.identity, half.identity)

    def sparse_input_linear(x, w, thr, M, K, N, out):
        acc = cuda.local.array(rb, acc_t)
        n = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        if n >= N:
            return
        for r0 in range(cuda.blockIdx.y * rb, M, cuda.gridDim.y * rb):
            nr = min(rb, M - r0)
            for i in range(rb):
                acc[i] = 0
            for k in range(K):
                keep = False
                for i in range(rb):
                    if i < nr and not (abs(ld(x[(r0 + i) * K + k])) < thr):
                        keep = True
                if keep:
                    wv = ld(w[k * N + n])
                    for i in range(rb):
                        if i < nr:
                            xv = ld(x[(r0 + i) * K + k])
                            if not (abs(xv) < thr):
                                acc[i] += xv * wv
            for i in range(rb):
                if i < nr:
                    out[(r0 + i) * N + n] = st(acc[i])

    sparse_input_linear.__name__ = f"sparse_input_linear_{dtype}" + (f"_{storage}" if storage in half.HALF else "")
    return kernel(sparse_input_linear)


def sparse_input_linear_sig(dtype, compute_dtype=None):
    from numba import types
    i64 = types.int64
    return (arr(dtype), arr(dtype), scalar(compute_dtype or dtype), i64, i64, i64, arr(dtype))

