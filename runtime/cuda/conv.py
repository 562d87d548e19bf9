"""CUDA direct 2-D convolution (``sc.conv2d``): one thread per output element ``(n, o, y, x)``
walking its group's input channels and the kernel taps (skipping the padding), accumulating in
float32 (float64 for f64) as the reference. Consecutive threads take consecutive output columns,
so the input reads of a warp are (for stride 1) consecutive too. f16/bf16 (``storage``): elements
widened to f32 as they are read, the output rounded once (``runtime.cuda.half``)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import cuda

from . import half
from .launch import CudaFunction
from .types import arr, scalar


@lru_cache(maxsize=None)
def make_conv2d(acc_dtype: str, storage: str | None = None) -> CudaFunction:
    ct = scalar(np.dtype(acc_dtype))
    ld, st = (half.load(storage), half.store(storage)) if storage in half.HALF else (half.identity, half.identity)

    def conv2d(x, w, bias, out, N, C, H, W, O, CG, KH, KW, HO, WO, sh, sw, pt, pl, dh, dw, groups, has_bias):
        og = O // groups
        total = N * O * HO * WO
        for e in range(cuda.grid(1), total, cuda.gridsize(1)):
            ox = e % WO
            r = e // WO
            oy = r % HO
            r = r // HO
            o = r % O
            n = r // O
            g = o // og
            acc = ct(0)
            for c in range(CG):
                xc = (n * C + g * CG + c) * H
                wc = (o * CG + c) * KH
                for i in range(KH):
                    iy = oy * sh - pt + i * dh
                    if iy < 0 or iy >= H:
                        continue
                    for j in range(KW):
                        ix = ox * sw - pl + j * dw
                        if ix < 0 or ix >= W:
                            continue
                        acc += ct(ld(x[(xc + iy) * W + ix])) * ct(ld(w[(wc + i) * KW + j]))
            if has_bias:
                acc += ct(ld(bias[o]))
            out[e] = st(acc)

    conv2d.__name__ = f"conv2d_{acc_dtype}" + (f"_{storage}" if storage in half.HALF else "")
    return CudaFunction(conv2d)


def conv2d_sig(dtype):
    from numba import types
    return (arr(dtype), arr(dtype), arr(dtype), arr(dtype)) + (types.int64,) * 17 + (types.boolean,)
