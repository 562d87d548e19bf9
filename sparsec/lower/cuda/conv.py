"""CUDA lowering rule: ``sc.conv2d`` (the direct kernel of ``runtime.cuda.conv``)."""
from __future__ import annotations

import numpy as np

from ...runtime.cuda import device as D
from ...runtime.cuda import launch
from ...runtime.cuda.conv import conv2d_sig, make_conv2d
from . import CudaKernel, LoweringError, cuda_lowering


@cuda_lowering("sc.conv2d")
def lower_conv2d(op) -> CudaKernel:
    x_t = op.operands[0].type
    dt = x_t.dtype.np
    if not x_t.dtype.is_float or len({v.type.dtype for v in op.operands}) != 1:
        raise LoweringError(f"{op.describe()}: no CUDA sc.conv2d for {x_t.pretty()}")
    has_bias = len(op.operands) == 3
    sh, sw = op.attrs["stride"]
    pt, pl = op.attrs["padding"][0], op.attrs["padding"][1]
    dh, dw = op.attrs["dilation"]
    groups = int(op.attrs["groups"])
    half = x_t.dtype.name if x_t.dtype.name in ("f16", "bf16") else None   # f32 accumulation, one rounding
    kern = make_conv2d("float64" if dt == np.float64 else "float32", half)
    dummy = D.Uploaded(np.zeros(1, dt))

    def run(x, w, *rest):
        bias, out = (rest[0], rest[1]) if has_bias else (dummy.get(), rest[0])
        N, C, H, W = tuple(x.shape)
        O, CG, KH, KW = tuple(w.shape)
        HO, WO = out.shape[2], out.shape[3]
        if out.size == 0:
            return
        args = [np.int64(v) for v in (N, C, H, W, O, CG, KH, KW, HO, WO, sh, sw, pt, pl, dh, dw, groups)]
        kern[launch.grid_1d(out.size)](x.reshape(x.size), w.reshape(w.size), bias.reshape(bias.size),
                                       out.reshape(out.size), *args, has_bias)
    return CudaKernel(run, f"conv2d_{x_t.dtype.name}", kernels=(kern.spec(conv2d_sig(dt)),))
