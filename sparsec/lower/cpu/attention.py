"""CPU lowering rule: ``sc.attention`` (the online-softmax kernel of
``sparsec.runtime.cpu.attention``).

The mask, when present, is turned into an additive mask of the compute dtype (a boolean False
becomes -inf, which the kernel treats exactly as "may not attend") and addressed through
broadcast strides, so it is never expanded to ``[B, Hq, S, L]``.
"""
from __future__ import annotations

import math

import numpy as np

from ...runtime.cpu import attention as A
from . import Kernel, LoweringError, cpu_lowering

_NO_STRIDES = np.zeros(4, np.int64)


def _mask_operand(mask: np.ndarray, ct):
    """(flat additive mask in ``ct``, element strides over (b, h, i, j); 0 where broadcast)."""
    if mask.dtype == np.bool_:
        add = np.where(mask, ct(0.0), ct(-np.inf))
    else:
        add = mask.astype(ct, copy=False)
    shape = (1,) * (4 - add.ndim) + add.shape
    add = np.ascontiguousarray(add).reshape(shape)
    strides = np.array([0 if shape[d] == 1 else add.strides[d] // add.itemsize for d in range(4)], np.int64)
    return add.reshape(-1), strides


def _positions_view(a: np.ndarray) -> np.ndarray:
    """``a [B, H, L, D]`` as a C-contiguous ``[B, H, T, D]`` array whose first ``L`` positions are
    ``a``: ``a`` itself, or, when ``a`` is ``buf[:, :, :L]`` of a contiguous buffer (the KV cache
    views ``generate`` passes), ``buf``; otherwise a C-contiguous copy. Numba compiles strided
    arrays into scalar code: the attention kernel was 2-10x slower on cache views. (The checks are
    one compiled call, ``leading_positions_of``: with the caches cold after a decode step's
    weight streams, the NumPy attribute reads of the Python version cost about 10 us for the two
    caches.)"""
    buf = a.base
    if type(buf) is np.ndarray and buf.ndim == 4 and buf.dtype == a.dtype and A.leading_positions_of(a, buf):
        return buf
    if a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a)


@cpu_lowering("sc.attention")
def lower_attention(op) -> Kernel:
    q_t = op.operands[0].type
    has_mask = len(op.operands) == 4
    causal, scale_attr = op.attrs["causal"], op.attrs["scale"]
    dtype = q_t.dtype.np
    if dtype.kind != "f" and dtype.name != "bfloat16":
        raise LoweringError(f"{op.describe()}: no CPU attention kernel for {q_t.pretty()}")
    ct = np.float64 if dtype == np.float64 else np.float32
    native = dtype == np.dtype(ct)
    no_mask = np.zeros(0, ct)

    def run(q, k, v, *rest):
        mask, out = (rest[0], rest[1]) if has_mask else (None, rest[0])
        if not native:
            q, k, v = q.astype(ct), k.astype(ct), v.astype(ct)
        scale = ct(scale_attr) if scale_attr else ct(1.0 / math.sqrt(q.shape[3]))
        flat, strides = _mask_operand(mask, ct) if has_mask else (no_mask, _NO_STRIDES)
        res = out if native else np.empty(out.shape, ct)
        L = k.shape[2]
        chunks = A.attention_chunks(q.shape, k.shape, v.shape)
        kernel = A.attention_decode if q.shape[2] == 1 and L >= 1 else None
        if kernel is not None:  # one query row (a decode step): causal changes nothing, it sees every key
            kernel(q, _positions_view(k), _positions_view(v), L, flat, strides, has_mask, scale, chunks, res)
        else:
            A.attention(q, _positions_view(k), _positions_view(v), L, flat, strides, has_mask, causal, scale, chunks,
                        res)
        if not native:
            out[...] = res
    return Kernel(run, f"attention_{np.dtype(ct).name}", impl="numba",
                  info={"causal": causal, "mask": has_mask})
