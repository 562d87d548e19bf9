"""CUDA kernels: rms_norm, layer_norm (one block per row, shared-memory sums: float64 for
rms_norm, the compute dtype for layer_norm) and
rope (one thread per output element; the angle ``pos * inv_freq`` in float32 and its cos/sin
through libdevice, as the reference computes them in float32)."""
from __future__ import annotations

import math

from functools import lru_cache

import numpy as np
from numba import cuda, float64

from .launch import CudaFunction, kernel
from .types import scalar

BLOCK = 128


@kernel
def rms_norm_rows(x, w, rows, d, eps, out):
    sh = cuda.shared.array(BLOCK, float64)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
        base = r * d
        acc = 0.0
        for j in range(tid, d, nt):
            v = float64(x[base + j])
            acc += v * v
        sh[tid] = acc
        cuda.syncthreads()
        s = nt // 2
        while s > 0:
            if tid < s:
                sh[tid] += sh[tid + s]
            cuda.syncthreads()
            s //= 2
        var = x[base] * 0 + sh[0] / d
        inv = x[base] * 0 + 1.0 / math.sqrt(var + eps)
        for j in range(tid, d, nt):
            out[base + j] = w[j] * (x[base + j] * inv)
        cuda.syncthreads()


@lru_cache(maxsize=None)
def make_layer_norm(dtype: str) -> CudaFunction:
    """layer_norm with its statistics in the compute dtype (as the reference: ``x - mean`` of a
    constant row must cancel exactly as it does there, or eps amplifies the rounding)."""
    ct = scalar(np.dtype(dtype))

    def layer_norm_rows(x, w, b, rows, d, eps, has_w, has_b, out):
        sh = cuda.shared.array(BLOCK, ct)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            base = r * d
            acc = ct(0)
            for j in range(tid, d, nt):
                acc += x[base + j]
            sh[tid] = acc
            cuda.syncthreads()
            s = nt // 2
            while s > 0:
                if tid < s:
                    sh[tid] += sh[tid + s]
                cuda.syncthreads()
                s //= 2
            mu = ct(sh[0] / ct(d))
            cuda.syncthreads()
            acc = ct(0)
            for j in range(tid, d, nt):
                dv = x[base + j] - mu
                acc += dv * dv
            sh[tid] = acc
            cuda.syncthreads()
            s = nt // 2
            while s > 0:
                if tid < s:
                    sh[tid] += sh[tid + s]
                cuda.syncthreads()
                s //= 2
            den = ct(math.sqrt(ct(sh[0] / ct(d)) + ct(eps)))
            for j in range(tid, d, nt):
                y = (x[base + j] - mu) / den
                if has_w:
                    y = y * w[j]
                if has_b:
                    y = y + b[j]
                out[base + j] = y
            cuda.syncthreads()

    layer_norm_rows.__name__ = f"layer_norm_rows_{dtype}"
    return CudaFunction(layer_norm_rows)


@kernel
def rope_elems(x, pos, inv, nb, m, seq, d, r, batched, interleaved, out):
    """x, out: flat ``[nb, m, seq, d]``; pos: ``[seq]`` or ``[nb, seq]``; inv: ``[r/2]`` f32."""
    total = nb * m * seq * d
    h = r // 2
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        j = e % d
        row = e // d
        s = row % seq
        b = row // (seq * m)
        if j >= r:
            out[e] = x[e]
            continue
        p = pos[b * seq + s] if batched else pos[s]
        if interleaved:
            i = j // 2
        elif j < h:
            i = j
        else:
            i = j - h
        ang = inv[i] * p
        c = math.cos(ang)
        sn = math.sin(ang)
        if interleaved:
            if j % 2 == 0:
                out[e] = x[e] * c - x[e + 1] * sn
            else:
                out[e] = x[e] * c + x[e - 1] * sn
        elif j < h:
            out[e] = x[e] * c - x[e + h] * sn
        else:
            out[e] = x[e] * c + x[e - h] * sn
