"""CUDA lowering rules: ``sc.attention`` (``runtime.cuda.attention``) and ``sc.kv_write`` (the
functional copy, and the in-place write into a donated cache that ``generate`` uses)."""
from __future__ import annotations

import math

import numpy as np

from ...runtime.cuda import attention as A
from ...runtime.cuda import device as D
from ...runtime.cuda import launch
from ...runtime.cuda import shape as S
from . import CudaKernel, LoweringError, cuda_lowering


@cuda_lowering("sc.attention")
def lower_attention(op) -> CudaKernel:
    q_t = op.operands[0].type
    has_mask = len(op.operands) == 4
    causal, scale_attr = bool(op.attrs["causal"]), op.attrs["scale"]
    dtype = q_t.dtype.np
    if not q_t.dtype.is_float or len({v.type.dtype for v in op.operands[:3]}) != 1:
        raise LoweringError(f"{op.describe()}: no CUDA attention for {q_t.pretty()}")
    d = q_t.shape[3]
    if not isinstance(d, int) or d > A.MAX_HEAD_DIM:
        raise LoweringError(f"{op.describe()}: the CUDA attention kernel needs a static head dim <= "
                            f"{A.MAX_HEAD_DIM}, got {q_t.pretty()}")
    mask_dt = op.operands[3].type.dtype.np if has_mask else dtype
    half = q_t.dtype.name if q_t.dtype.name in ("f16", "bf16") else None
    mhalf = op.operands[3].type.dtype.name if has_mask and op.operands[3].type.dtype.name in ("f16", "bf16") else None
    if half is None and mhalf is not None:
        raise LoweringError(f"{op.describe()}: the CUDA attention kernel needs a bool mask or one of q's dtype, got "
                            f"{op.operands[3].type.pretty()} for {q_t.pretty()}")
    cdt = np.dtype(np.float32) if half else dtype  # 16-bit floats: computed in f32, rounded once
    ct = cdt.type
    if not has_mask:  # the unused mask argument: of the compute dtype (numba has no truth value of float16)
        mask_dt = cdt
    dummy = D.Uploaded(np.zeros(1, mask_dt))
    kern = A.make_attention(cdt.name, A.head_dim_bound(d), half, mhalf)

    def run(q, k, v, *rest):
        mask, out = (rest[0], rest[1]) if has_mask else (None, rest[0])
        B, Hq, Sq, Dh = tuple(q.shape)
        if out.size == 0:
            return
        scale = ct(scale_attr) if scale_attr else ct(1.0 / math.sqrt(Dh))
        if has_mask:
            shape = (1,) * (4 - mask.ndim) + tuple(mask.shape)
            st = S.c_strides(shape)
            ms = [0 if shape[i] == 1 else st[i] for i in range(4)]
            mflat = mask.reshape(mask.size)
        else:
            ms, mflat = [0, 0, 0, 0], dummy.get()
        rows = B * Hq * Sq
        kern[max(1, min(rows, launch.max_blocks() * 4)), launch.block_size(1 << 30, A.BLOCK)](
            q, k, v, mflat, *[np.int64(s) for s in ms], has_mask, mask_dt == np.bool_, causal, scale, out)
    specs = tuple(kern.spec(A.attention_sig(dtype, mask_dt, lay, cdt), f"{kern.name}_{lay}")
                  for lay in ("C", "A"))
    return CudaKernel(run, f"attention_{dtype.name}", kernels=specs, info={"causal": causal, "mask": has_mask})


def _axis(op) -> int:
    return op.attrs["axis"] % op.operands[0].type.rank


@cuda_lowering("sc.kv_write")
def lower_kv_write(op) -> CudaKernel:
    ax = _axis(op)
    c_t = op.operands[0].type

    def kv_write(cache, new, out):
        cs = tuple(cache.shape)
        n = cs[ax] - new.shape[ax]
        ost = S.c_strides(cs)
        keep = cs[:ax] + (n,) + cs[ax + 1:]
        S.copy(cache, out, keep, ost, 0, ost, 0)
        S.copy(new, out, tuple(new.shape), S.c_strides(tuple(new.shape)), 0, ost, n * ost[ax])
    return CudaKernel(kv_write, "kv_write_copy", kernels=(S._spec_for(c_t.dtype.np),))


def lower_kv_write_inplace(op) -> CudaKernel:
    """The donated-cache form: ``fn(cache, new) -> (cache,)`` after writing ``new`` into the
    cache's last positions (the cache may be a strided device view)."""
    ax = _axis(op)
    c_t = op.operands[0].type
    if c_t.rank != 4 or ax != 2:
        raise LoweringError(f"{op.describe()}: the CUDA in-place KV write needs a [batch, heads, ctx, dim] cache "
                            f"written along axis 2, got {c_t.pretty()} axis {ax}")

    def kv_write_inplace(cache, new):
        n = cache.shape[2] - new.shape[2]
        if new.size:
            launch.launch_1d(S.kv_write_4d, new.size, cache, new, np.int64(n))
        return (cache,)
    specs = tuple(S.kv_write_4d.spec(S.sig_kv_write(c_t.dtype.np, lay), f"kv_write_4d_{lay}") for lay in ("C", "A"))
    return CudaKernel(kv_write_inplace, "kv_write_inplace", kernels=specs, info={"inplace": True})
