"""CUDA kernels: rms_norm, layer_norm (one block per row, shared-memory sums: float64 for
rms_norm, the compute dtype for layer_norm) and
rope (one thread per output element; the angle ``pos * inv_freq`` in float32 and its cos/sin
through libdevice, as the reference computes them in float32).

f16/bf16 (``make_rms_norm_half``, ``make_layer_norm(..., storage)``, ``make_rope``): elements are
widened to f32 as they are loaded (``runtime.cuda.half``), everything is computed as for f32, and
each result is rounded once to the storage dtype, as the references (rms_norm also rounds the
normalized row to x's dtype before the weight multiplies it, as HF and the reference do)."""
from __future__ import annotations

import math

from functools import lru_cache

import numpy as np
from numba import cuda, float64

from . import half
from .launch import CudaFunction, kernel
from .reduce import SUM, tree_reduce
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
        tree_reduce(sh, tid, nt, SUM)
        var = sh[0] / d
        inv = 1.0 / math.sqrt(var + eps)
        for j in range(tid, d, nt):
            out[base + j] = w[j] * (x[base + j] * inv)
        cuda.syncthreads()


@lru_cache(maxsize=None)
def make_rms_norm_half(storage: str) -> CudaFunction:
    """rms_norm of f16/bf16 rows (x, w, out of one storage dtype): the sum of squares in float64,
    ``normed = round(x * inv)`` to the storage dtype, then ``round(w * normed)``."""
    ld, st = half.load(storage), half.store(storage)

    def rms_norm_rows_h(x, w, rows, d, eps, out):
        sh = cuda.shared.array(BLOCK, float64)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            base = r * d
            acc = 0.0
            for j in range(tid, d, nt):
                v = float64(ld(x[base + j]))
                acc += v * v
            sh[tid] = acc
            cuda.syncthreads()
            tree_reduce(sh, tid, nt, SUM)
            var = np.float32(sh[0] / d)
            inv = np.float32(1.0) / np.float32(math.sqrt(var + np.float32(eps)))
            for j in range(tid, d, nt):
                normed = ld(st(ld(x[base + j]) * inv))
                out[base + j] = st(ld(w[j]) * normed)
            cuda.syncthreads()

    rms_norm_rows_h.__name__ = f"rms_norm_rows_{storage}"
    return CudaFunction(rms_norm_rows_h)


@lru_cache(maxsize=None)
def make_layer_norm(dtype: str, storage: str | None = None) -> CudaFunction:
    """layer_norm with its statistics in the compute dtype (as the reference: ``x - mean`` of a
    constant row must cancel exactly as it does there, or eps amplifies the rounding);
    ``storage`` "f16"/"bf16": 16-bit elements computed in ``dtype`` (float32)."""
    ct = scalar(np.dtype(dtype))
    ld, st = (half.load(storage), half.store(storage)) if storage in half.HALF else (half.identity, half.identity)

    def layer_norm_rows(x, w, b, rows, d, eps, has_w, has_b, out):
        sh = cuda.shared.array(BLOCK, ct)
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            base = r * d
            acc = ct(0)
            for j in range(tid, d, nt):
                acc += ld(x[base + j])
            sh[tid] = acc
            cuda.syncthreads()
            tree_reduce(sh, tid, nt, SUM)
            mu = ct(sh[0] / ct(d))
            cuda.syncthreads()
            acc = ct(0)
            for j in range(tid, d, nt):
                dv = ld(x[base + j]) - mu
                acc += dv * dv
            sh[tid] = acc
            cuda.syncthreads()
            tree_reduce(sh, tid, nt, SUM)
            den = ct(math.sqrt(ct(sh[0] / ct(d)) + ct(eps)))
            for j in range(tid, d, nt):
                y = (ld(x[base + j]) - mu) / den
                if has_w:
                    y = y * ld(w[j])
                if has_b:
                    y = y + ld(b[j])
                out[base + j] = st(y)
            cuda.syncthreads()

    layer_norm_rows.__name__ = f"layer_norm_rows_{dtype}" + (f"_{storage}" if storage in half.HALF else "")
    return CudaFunction(layer_norm_rows)


@cuda.jit(device=True)
def rope_element(e, m, seq, d, r, batched, interleaved):
    """Where element ``e`` of a flat ``[nb, m, seq, d]`` rotation reads: ``(position index,
    frequency index i, partner element, subtract)``, so that ``out[e] = x[e] * cos - x[partner] *
    sin`` (``subtract``) or ``+``; ``i = -1`` past the rotary dims (copied)."""
    h = r // 2
    j = e % d
    row = e // d
    s = row % seq
    b = row // (seq * m)
    p = b * seq + s if batched else s
    if j >= r:
        return p, -1, e, False
    if interleaved:
        if j % 2 == 0:
            return p, j // 2, e + 1, True
        return p, j // 2, e - 1, False
    if j < h:
        return p, j, e + h, True
    return p, j - h, e - h, False


@kernel
def rope_elems(x, pos, inv, nb, m, seq, d, r, batched, interleaved, out):
    """x, out: flat ``[nb, m, seq, d]``; pos: ``[seq]`` or ``[nb, seq]``; inv: ``[r/2]`` f32."""
    for e in range(cuda.grid(1), nb * m * seq * d, cuda.gridsize(1)):
        p, i, o, sub = rope_element(e, m, seq, d, r, batched, interleaved)
        if i < 0:
            out[e] = x[e]
            continue
        ang = inv[i] * pos[p]
        v = x[o] * math.sin(ang)
        out[e] = x[e] * math.cos(ang) - v if sub else x[e] * math.cos(ang) + v


@lru_cache(maxsize=None)
def make_rope(storage: str) -> CudaFunction:
    """``rope_elems`` for f16/bf16 ``x``/``out``: the angle ``f32(pos) * inv`` and its cos/sin in
    f32 (as the reference), the rotation in f32, rounded once to the storage dtype."""
    ld, st = half.load(storage), half.store(storage)

    def rope_elems_h(x, pos, inv, nb, m, seq, d, r, batched, interleaved, out):
        for e in range(cuda.grid(1), nb * m * seq * d, cuda.gridsize(1)):
            p, i, o, sub = rope_element(e, m, seq, d, r, batched, interleaved)
            if i < 0:
                out[e] = x[e]
                continue
            ang = np.float32(np.float32(pos[p]) * inv[i])
            v = ld(x[o]) * math.sin(ang)
            out[e] = st(ld(x[e]) * math.cos(ang) - v if sub else ld(x[e]) * math.cos(ang) + v)

    rope_elems_h.__name__ = f"rope_elems_{storage}"
    return CudaFunction(rope_elems_h)
