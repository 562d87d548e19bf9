"""CUDA lowering rule: ``sc.conv2d`` (the direct kernel of ``runtime.cuda.conv``)."""
from __future__ import annotations

import numpy as np

from ...runtime.cuda import device as D
from ...runtime.cuda import launch
from ...runtime.cuda.conv import conv2d_sig, make_conv2d
from . import CudaKernel, LoweringError, cuda_lowering, refuse_half


@cuda_lowering("sc.conv2d")
def lower_conv2d(op) -> CudaKernel:
    x_t = op.operands[0].type
    refuse_half(op, *[v.type for v in op.operands])
    dt = x_t.dtype.np
    if dt.kind != "f":
        raise LoweringError(f"{op.describe()}: no CUDA sc.conv2d for {x_t.pretty()}")
    has_bias = len(op.operands) == 3
    sh, sw = op.attrs["stride"]
    pt, pl = op.attrs["padding"][0], op.attrs["padding"][1]
    dh, dw = op.attrs["dilation"]
    groups = int(op.attrs["groups"])
    kern = make_conv2d("float64" if dt == np.float64 else "float32")
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
