"""CUDA lowering rules: rms_norm, layer_norm, rope (kernels in ``runtime.cuda.norms``;
``sc.attention`` and ``sc.kv_write`` are in attention.py)."""
from __future__ import annotations

import numpy as np

from ...ir import Operation, TensorType
from ...ops.nn import rope_inv_freq
from ...runtime.cuda import device as D
from ...runtime.cuda import launch
from ...runtime.cuda import norms as rt
from ...runtime.cuda.types import arr, scalar
from . import CudaKernel, LoweringError, cuda_lowering


def _t(v, op) -> TensorType:
    if not isinstance(v.type, TensorType):
        raise LoweringError(f"{op.describe()}: {v.type} is not a tensor")
    return v.type


_HALF = ("f16", "bf16")


def _float(op, *ts) -> np.dtype:
    dts = {t.dtype.np for t in ts}
    if len(dts) != 1 or not ts[0].dtype.is_float:
        raise LoweringError(f"{op.describe()}: the CUDA kernel needs one float dtype for "
                            f"{', '.join(t.pretty() for t in ts)}")
    return next(iter(dts))


def _rows_grid(rows):
    return max(1, min(rows, launch.max_blocks())), launch.block_size(1 << 30, rt.BLOCK)


@cuda_lowering("sc.rms_norm")
def lower_rms_norm(op: Operation) -> CudaKernel:
    from numba import types
    x, w = _t(op.operands[0], op), _t(op.operands[1], op)
    dt = _float(op, x, w, op.results[0].type)
    eps = float(op.attrs["eps"])
    kern = rt.make_rms_norm_half(x.dtype.name) if x.dtype.name in _HALF else rt.rms_norm_rows

    def fn(xa, wa, out):
        d = xa.shape[xa.ndim - 1] if xa.ndim else 1
        rows = xa.size // d if d else 0
        if rows == 0:
            return
        kern[_rows_grid(rows)](xa.reshape(xa.size), wa.reshape(wa.size), np.int64(rows), np.int64(d),
                                           np.float64(eps), out.reshape(out.size))
    sig = (arr(dt), arr(dt), types.int64, types.int64, types.float64, arr(dt))
    return CudaKernel(fn, f"rms_norm_{x.dtype.name}", kernels=(kern.spec(sig),))


@cuda_lowering("sc.layer_norm")
def lower_layer_norm(op: Operation) -> CudaKernel:
    from numba import types
    x = _t(op.operands[0], op)
    dt = _float(op, *[_t(v, op) for v in op.operands], op.results[0].type)
    n_ops = len(op.operands)
    has_w, has_b = n_ops >= 2, n_ops >= 3
    eps = float(op.attrs["eps"])
    dummy = D.Uploaded(np.zeros(1, dt))
    kern = (rt.make_layer_norm("float32", x.dtype.name) if x.dtype.name in _HALF
            else rt.make_layer_norm(dt.name))

    def fn(xa, *rest):
        out = rest[-1]
        w = rest[0].reshape(rest[0].size) if has_w else dummy.get()
        b = rest[1].reshape(rest[1].size) if has_b else dummy.get()
        d = xa.shape[xa.ndim - 1] if xa.ndim else 1
        rows = xa.size // d if d else 0
        if rows == 0:
            return
        kern[_rows_grid(rows)](xa.reshape(xa.size), w, b, np.int64(rows), np.int64(d), np.float64(eps),
                                             has_w, has_b, out.reshape(out.size))
    sig = (arr(dt), arr(dt), arr(dt), types.int64, types.int64, types.float64, types.boolean, types.boolean, arr(dt))
    return CudaKernel(fn, f"layer_norm_{x.dtype.name}", kernels=(kern.spec(sig),))


@cuda_lowering("sc.rope")
def lower_rope(op: Operation) -> CudaKernel:
    from numba import types
    x, p = _t(op.operands[0], op), _t(op.operands[1], op)
    dt = _float(op, x)
    d = x.shape[-1]
    if not isinstance(d, int):
        raise LoweringError(f"{op.describe()}: rope needs a static head dim, got {x.pretty()}")
    r = int(op.attrs["rotary_dim"]) or d
    inv = D.Uploaded(rope_inv_freq(r, float(op.attrs["theta"])).astype(np.float32 if x.dtype.name in _HALF else dt))
    kern = rt.make_rope(x.dtype.name) if x.dtype.name in _HALF else rt.rope_elems
    interleaved = bool(op.attrs["interleaved"])
    batched = p.rank == 2
    pdt = p.dtype.np

    def fn(xa, pos, out):
        s = tuple(xa.shape)
        seq = s[-2]
        nb = s[0] if batched else 1
        m = xa.size // (nb * seq * d) if nb * seq else 0
        if xa.size == 0:
            return
        launch.launch_1d(kern, xa.size, xa.reshape(xa.size), pos.reshape(pos.size), inv.get(), np.int64(nb),
                         np.int64(m), np.int64(seq), np.int64(d), np.int64(r), batched, interleaved,
                         out.reshape(out.size))
    i64 = types.int64
    idt = np.float32 if x.dtype.name in _HALF else dt
    sig = (arr(dt), arr(pdt), arr(idt), i64, i64, i64, i64, i64, types.boolean, types.boolean, arr(dt))
    _ = scalar
    return CudaKernel(fn, f"rope_{x.dtype.name}", kernels=(kern.spec(sig),))
