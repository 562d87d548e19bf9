"""CUDA attention: one block per query row ``(b, h, i)``, online softmax.

Each thread of the block walks its share of the keys (``j = t, t + nt, ...``) keeping its own
running max ``m``, normalizer ``l`` and weighted value sum ``acc[D]`` (local memory); the block
then merges the per-thread states through shared memory (rescaling each by ``exp(m_t - M)``),
and thread ``t`` writes output dims ``t, t + nt, ...``. Grouped-query attention maps query head
``h`` to KV head ``h // (Hq / Hkv)``; ``causal`` lets query ``i`` see keys ``j <= i + L - S``
(decoding: the new queries are the last ``S`` of ``L`` positions). A mask (bool: False = may not
attend; float: added to the scores) is read through broadcast strides, never expanded. k and v
may be strided views (the KV cache ``generate`` passes). A row that may attend to nothing is NaN,
as the reference's softmax of all ``-inf``.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import cuda

from .launch import CudaFunction
from .types import scalar

MAX_HEAD_DIM = 256
BLOCK = 32


def head_dim_bound(d: int) -> int:
    """The head-dim capacity a kernel is built for: the next power of two >= d (at least 32), so
    the per-thread accumulator and the shared merge buffer are no larger than needed."""
    b = 32
    while b < d:
        b *= 2
    return b


@lru_cache(maxsize=None)
def make_attention(dtype: str, maxd: int = MAX_HEAD_DIM) -> CudaFunction:
    ct = scalar(np.dtype(dtype))
    MAXD = maxd
    NT = BLOCK

    def attention(q, k, v, mask, ms0, ms1, ms2, ms3, has_mask, mask_bool, causal, scale, out):
        B = q.shape[0]
        Hq = q.shape[1]
        S = q.shape[2]
        D = q.shape[3]
        Hkv = k.shape[1]
        L = k.shape[2]
        grp = Hq // Hkv
        acc = cuda.local.array(MAXD, ct)
        shm = cuda.shared.array(NT, ct)
        shl = cuda.shared.array(NT, ct)
        sha = cuda.shared.array((NT, MAXD), ct)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        ninf = ct(-math.inf)
        for row in range(cuda.blockIdx.x, B * Hq * S, cuda.gridDim.x):
            i = row % S
            r = row // S
            h = r % Hq
            b = r // Hq
            hk = h // grp
            limit = L
            if causal:
                limit = min(L, L - S + i + 1)
            m = ninf
            lsum = ct(0)
            for d in range(D):
                acc[d] = ct(0)
            for j in range(tid, limit, nt):
                s = ct(0)
                for d in range(D):
                    s += q[b, h, i, d] * k[b, hk, j, d]
                s = s * scale
                if has_mask:
                    mv = mask[b * ms0 + h * ms1 + i * ms2 + j * ms3]
                    if mask_bool:
                        if not mv:
                            continue
                    else:
                        s = s + mv
                if s == ninf:
                    continue
                if s > m:
                    c = ct(math.exp(m - s))
                    lsum = lsum * c
                    for d in range(D):
                        acc[d] = acc[d] * c
                    m = s
                p = ct(math.exp(s - m))
                lsum += p
                for d in range(D):
                    acc[d] += p * v[b, hk, j, d]
            shm[tid] = m
            shl[tid] = lsum
            for d in range(D):
                sha[tid, d] = acc[d]
            cuda.syncthreads()
            mx = ninf
            for t in range(nt):
                if shm[t] > mx:
                    mx = shm[t]
            for d in range(tid, D, nt):
                num = ct(0)
                den = ct(0)
                for t in range(nt):
                    if shm[t] > ninf:
                        c = ct(math.exp(shm[t] - mx))
                        num += c * sha[t, d]
                        den += c * shl[t]
                if den > ct(0):
                    out[b, h, i, d] = num / den
                else:
                    out[b, h, i, d] = ct(math.nan)
            cuda.syncthreads()

    attention.__name__ = f"attention_{dtype}_d{maxd}"
    return CudaFunction(attention)


def attention_sig(dtype, mask_dtype, kv_layout="C"):
    from numba import types
    from .types import arr
    i64 = types.int64
    return (arr(dtype, 4), arr(dtype, 4, kv_layout), arr(dtype, 4, kv_layout), arr(mask_dtype), i64, i64, i64, i64,
            types.boolean, types.boolean, types.boolean, scalar(dtype), arr(dtype, 4))
