"""CUDA lowering rules: shape ops.

``reshape``, ``expand_dims``, ``squeeze`` are view kernels (the CPU target's shape lambdas work
on device arrays unchanged: ``x.reshape(...)`` of a contiguous device array is a view).
``transpose``, ``slice``, ``broadcast_to``, ``concat`` and ``stack`` are one strided copy each
(per input for concat/stack: ``runtime.cuda.shape.copy``); the strides are computed per call from
the shapes, so symbolic dims need nothing at lowering.
"""
from __future__ import annotations

from ...ir import Operation, TensorType
from ...ops._util import norm_axis
from ...runtime.cuda import shape as rt
from ..cpu import shape as cpu_shape
from . import CudaKernel, LoweringError, cuda_lowering


def _t(v, op) -> TensorType:
    if not isinstance(v.type, TensorType):
        raise LoweringError(f"{op.describe()}: {v.type} is not a tensor")
    if v.type.rank > rt.MAX_RANK:
        raise LoweringError(f"{op.describe()}: rank {v.type.rank} > {rt.MAX_RANK} is not lowered for CUDA")
    return v.type


def _view(op: Operation, name: str) -> CudaKernel:
    try:
        k = cpu_shape.lower_reshape(op) if name == "reshape" else (
            cpu_shape.lower_expand_dims(op) if name == "expand_dims" else cpu_shape.lower_squeeze(op))
    except Exception as e:
        raise LoweringError(str(e)) from None
    return CudaKernel(k.fn, name=name, view=True, impl="view", info=k.info)


@cuda_lowering("sc.reshape")
def lower_reshape(op: Operation) -> CudaKernel:
    return _view(op, "reshape")


@cuda_lowering("sc.expand_dims")
def lower_expand_dims(op: Operation) -> CudaKernel:
    return _view(op, "expand_dims")


@cuda_lowering("sc.squeeze")
def lower_squeeze(op: Operation) -> CudaKernel:
    return _view(op, "squeeze")


def _spec(t: TensorType):
    return rt.strided_copy.spec(rt.sig_strided_copy(t.dtype.np.itemsize))


@cuda_lowering("sc.transpose")
def lower_transpose(op: Operation) -> CudaKernel:
    x = _t(op.operands[0], op)
    perm = tuple(op.attrs["perm"])

    def fn(xa, out):
        st = rt.c_strides(xa.shape)
        rt.copy(xa, out, out.shape, [st[p] for p in perm], 0, rt.c_strides(out.shape), 0)
    return CudaKernel(fn, "transpose", kernels=(_spec(x),))


@cuda_lowering("sc.slice")
def lower_slice(op: Operation) -> CudaKernel:
    x = _t(op.operands[0], op)
    a = norm_axis(op.attrs["axis"], x.rank)
    start, stop, step = op.attrs["start"], op.attrs["stop"], op.attrs["step"]

    def fn(xa, out):
        first = range(xa.shape[a])[slice(start, stop, step)].start if out.shape[a] else 0
        st = rt.c_strides(xa.shape)
        sstr = list(st)
        sstr[a] = st[a] * step
        rt.copy(xa, out, out.shape, sstr, first * st[a], rt.c_strides(out.shape), 0)
    return CudaKernel(fn, "slice", kernels=(_spec(x),))


@cuda_lowering("sc.broadcast_to")
def lower_broadcast_to(op: Operation) -> CudaKernel:
    x = _t(op.operands[0], op)
    _t(op.results[0], op)

    def fn(xa, out):
        rt.copy(xa, out, out.shape, rt.broadcast_strides(xa.shape, out.shape), 0, rt.c_strides(out.shape), 0)
    return CudaKernel(fn, "broadcast_to", kernels=(_spec(x),))


@cuda_lowering("sc.concat")
def lower_concat(op: Operation) -> CudaKernel:
    x = _t(op.operands[0], op)
    axis = norm_axis(op.attrs["axis"], x.rank)
    n = len(op.operands)

    def fn(*args):
        out = args[n]
        ost = rt.c_strides(out.shape)
        off = 0
        for xa in args[:n]:
            rt.copy(xa, out, xa.shape, rt.c_strides(xa.shape), 0, ost, off * ost[axis])
            off += xa.shape[axis]
    return CudaKernel(fn, "concat", kernels=(_spec(x),))


@cuda_lowering("sc.stack")
def lower_stack(op: Operation) -> CudaKernel:
    x = _t(op.operands[0], op)
    _t(op.results[0], op)
    axis = norm_axis(op.attrs["axis"], x.rank + 1)
    n = len(op.operands)

    def fn(*args):
        out = args[n]
        ost = rt.c_strides(out.shape)
        dstr = ost[:axis] + ost[axis + 1:]
        for i, xa in enumerate(args[:n]):
            rt.copy(xa, out, xa.shape, rt.c_strides(xa.shape), 0, dstr, i * ost[axis])
    return CudaKernel(fn, "stack", kernels=(_spec(x),))
