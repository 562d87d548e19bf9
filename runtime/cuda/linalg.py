"""CUDA matrix products for ``sc.matmul``: a shared-memory tiled GEMM (batched, strided, either
operand layout). ``sc.linear`` runs on the grouped matmul kernels (``runtime.cuda.moe``, one group
of all rows): its GEMV and register-tiled GEMM, with launch geometry per shape.

GEMM: ``C[z, m, n] = sum_k A[z, m, k] B[z, k, n]``. A block of ``T x T`` threads
computes a ``T x T`` tile of C, walking K in ``T``-wide steps: each step loads one tile of A and
one of B into shared memory (each element read from global memory once per block, then ``T``
times from shared memory), then every thread accumulates its dot product. For a weight stored
``[N, K]`` (``transpose_b``: ``b_nk``), the B tile is loaded with consecutive threads on
consecutive k (coalesced) and written transposed into shared memory. Operand offsets per batch
entry come from device arrays (broadcast batches repeat an offset), so one kernel serves
``matmul``'s batching, transposes and 1-D operands.

Accumulation: f32 for f32, f16 and bf16 (16-bit elements are widened as they are loaded and the
result rounded once when stored, as the reference's "accumulate in f32, round to the operand
dtype"; ``runtime.cuda.half``), f64 for f64, int64 for integers (stores wrap to the dtype, as the
reference's fixed-width arithmetic). ``make_gemm`` builds one kernel per tile size and
accumulator type (shared arrays need both at compile time); the tile is 16 on a device and
4 under the simulator (every simulated thread is a Python thread).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import cuda

from . import half
from .launch import CudaFunction, simulator
from .types import arr, scalar

TILE = 16
SIM_TILE = 4


def tile() -> int:
    return SIM_TILE if simulator() else TILE


def _ld_st(storage):
    """(load, store) device functions for elements of IR dtype ``storage`` (None: as they are)."""
    if storage in half.HALF:
        return half.load(storage), half.store(storage)
    return half.identity, half.identity


@lru_cache(maxsize=None)
def make_gemm(T: int, acc_dtype: str, storage: str | None = None) -> CudaFunction:
    """The tiled GEMM accumulating in ``acc_dtype``; ``storage`` "f16"/"bf16" for 16-bit operands."""
    acc_t = scalar(np.dtype(acc_dtype))
    ld, st = _ld_st(storage)

    def gemm(a, b, c, M, N, K, a_boff, b_boff, sam, sak, sbk, sbn, b_nk):
        As = cuda.shared.array((T, T), acc_t)
        Bs = cuda.shared.array((T, T), acc_t)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        z = cuda.blockIdx.z
        row = cuda.blockIdx.y * T + ty
        col = cuda.blockIdx.x * T + tx
        ao = a_boff[z]
        bo = b_boff[z]
        acc = acc_t(0)
        for k0 in range(0, K, T):
            k = k0 + tx
            if row < M and k < K:
                As[ty, tx] = ld(a[ao + row * sam + k * sak])
            else:
                As[ty, tx] = acc_t(0)
            if b_nk:
                n = cuda.blockIdx.x * T + ty
                if n < N and k < K:
                    Bs[tx, ty] = ld(b[bo + n * sbn + k * sbk])
                else:
                    Bs[tx, ty] = acc_t(0)
            else:
                kk = k0 + ty
                if kk < K and col < N:
                    Bs[ty, tx] = ld(b[bo + kk * sbk + col * sbn])
                else:
                    Bs[ty, tx] = acc_t(0)
            cuda.syncthreads()
            for j in range(T):
                acc += As[ty, j] * Bs[j, tx]
            cuda.syncthreads()
        if row < M and col < N:
            c[(z * M + row) * N + col] = st(acc)

    gemm.__name__ = f"gemm_t{T}_{acc_dtype}" + (f"_{storage}" if storage in half.HALF else "")
    return CudaFunction(gemm)


def acc_dtype(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.name in ("float16", "bfloat16"):
        return "float32"
    if dtype.kind in "iub":
        return "int64"
    return dtype.name


def gemm_sig(dtype):
    from numba import types
    i64 = types.int64
    return (arr(dtype), arr(dtype), arr(dtype), i64, i64, i64, arr(np.int64), arr(np.int64),
            i64, i64, i64, i64, types.boolean)
