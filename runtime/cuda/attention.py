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

f16/bf16 q/k/v (and a 16-bit float mask): elements are widened to f32 as they are read
(``runtime.cuda.half``), scores, softmax and the weighted sum are f32, and each output element is
rounded once to the storage dtype, as the reference.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import cuda

from . import half
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
def make_attention(dtype: str, maxd: int = MAX_HEAD_DIM, storage: str | None = None,
                   mask_storage: str | None = None) -> CudaFunction:
    """The kernel computing in ``dtype``; ``storage`` "f16"/"bf16" for 16-bit q/k/v/out (computed
    in float32), ``mask_storage`` the same for a 16-bit float mask."""
    ct = scalar(np.dtype(dtype))
    ld, st = (half.load(storage), half.store(storage)) if storage in half.HALF else (half.identity, half.identity)
    ldm = half.load(mask_storage) if mask_storage in half.HALF else half.identity
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
            nanrow = False
            for d in range(D):
                acc[d] = ct(0)
            for j in range(tid, limit, nt):
                s = ct(0)
                for d in range(D):
                    s += ld(q[b, h, i, d]) * ld(k[b, hk, j, d])
                s = s * scale
                if has_mask:
                    mv = ldm(mask[b * ms0 + h * ms1 + i * ms2 + j * ms3])
                    if mask_bool:
                        if not mv:
                            continue
                    else:
                        s = s + mv
                if s != s:  # a NaN score makes the row NaN, as the reference
                    nanrow = True
                    continue
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
                    acc[d] += p * ld(v[b, hk, j, d])
            shm[tid] = ct(math.nan) if nanrow else m
            shl[tid] = lsum
            for d in range(D):
                sha[tid, d] = acc[d]
            cuda.syncthreads()
            mx = ninf
            rownan = False
            for t in range(nt):
                if shm[t] != shm[t]:
                    rownan = True
                elif shm[t] > mx:
                    mx = shm[t]
            for d in range(tid, D, nt):
                num = ct(0)
                den = ct(0)
                for t in range(nt):
                    if shm[t] > ninf:
                        c = ct(math.exp(shm[t] - mx))
                        num += c * sha[t, d]
                        den += c * shl[t]
                if rownan:
                    out[b, h, i, d] = st(ct(math.nan))
                elif den > ct(0):
                    out[b, h, i, d] = st(num / den)
                elif den == ct(0):  # no visible key: zeros, as the reference
                    out[b, h, i, d] = st(ct(0))
                else:  # a NaN score (or +inf - +inf): NaN, as the reference
                    out[b, h, i, d] = st(ct(math.nan))
            cuda.syncthreads()

    attention.__name__ = (f"attention_{dtype}_d{maxd}" + (f"_{storage}" if storage in half.HALF else "")
                          + (f"_mask_{mask_storage}" if mask_storage in half.HALF else ""))
    return CudaFunction(attention)


def attention_sig(dtype, mask_dtype, kv_layout="C", scale_dtype=None):
    from numba import types
    from .types import arr
    i64 = types.int64
    return (arr(dtype, 4), arr(dtype, 4, kv_layout), arr(dtype, 4, kv_layout), arr(mask_dtype), i64, i64, i64, i64,
            types.boolean, types.boolean, types.boolean, scalar(scale_dtype or dtype), arr(dtype, 4))
