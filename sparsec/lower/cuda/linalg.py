"""CUDA lowering rules: ``sc.linear`` and ``sc.matmul``.

``sc.linear`` (``w [N, K]``, float or quantized): the grouped matmul kernels with one group of
all rows (``runtime.cuda.moe``; ``moe.linear_kernel``): up to ``GEMV_MAX_ROWS`` rows the GEMV
(each weight row read once per call, 16-byte loads where the rows allow, geometry per shape),
else the register-tiled GEMM with its row tile per shape. ``sc.matmul`` (``runtime.cuda.linalg``):
the tiled GEMM with per-batch operand offsets (broadcast batch dims repeat an offset; 1-D operands
and transposes are strides). f32/f64 accumulate in their type, f16/bf16 in f32 (rounded once to the
operand dtype on store), integers in int64 and wrap.

A quantized weight (``QuantType``) is handed to ``QUANT_LINEAR[format]`` when a quantized
rule module registers one (``rule(op) -> CudaKernel``); otherwise lowering refuses it.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ...ir import TensorType
from ...ir.types import QuantType
from ...runtime.cuda import device as D
from ...runtime.cuda import linalg as K
from . import CudaKernel, LoweringError, cuda_lowering

#: quantized format -> rule for sc.linear with a quantized weight (filled by a quantized module)
QUANT_LINEAR: dict[str, Callable] = {}


def _storage(t) -> str | None:
    """"f16"/"bf16" for 16-bit float operands (loaded as f32, result rounded once), else None."""
    return t.dtype.name if t.dtype.name in ("f16", "bf16") else None


def _grid_gemm(M, N, batch, T):
    return ((N + T - 1) // T, (M + T - 1) // T, batch), (T, T)


class _Offsets:
    """Per-batch operand offsets, uploaded once per shape."""

    def __init__(self):
        self.cache = {}

    def get(self, key, make):
        v = self.cache.get(key)
        if v is None:
            v = self.cache[key] = D.to_device(make())
        return v


@cuda_lowering("sc.linear")
def lower_linear(op) -> CudaKernel:
    x_t, w_t = op.operands[0].type, op.operands[1].type
    if isinstance(w_t, QuantType):
        rule = QUANT_LINEAR.get(w_t.format)
        if rule is None:
            raise LoweringError(f"{op.describe()}: quantized weight {w_t} ({w_t.format}): the CUDA target has no "
                                f"quantized matmul for {w_t.format} yet")
        return rule(op)
    if not x_t.dtype.is_float:
        raise LoweringError(f"{op.describe()}: no CUDA sc.linear for {x_t.pretty()}")
    from .moe import WeightArgs, linear_kernel
    return linear_kernel(op, WeightArgs(op, w_t, x_t.dtype.np), x_t.dtype.np, _storage(x_t),
                         f"linear_{x_t.dtype.name}")


@cuda_lowering("sc.matmul")
def lower_matmul(op) -> CudaKernel:
    a_t, b_t = op.operands[0].type, op.operands[1].type
    assert isinstance(a_t, TensorType) and isinstance(b_t, TensorType)
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]
    dtype = a_t.dtype.np
    if dtype.kind == "b":
        raise LoweringError(f"{op.describe()}: no CUDA sc.matmul for booleans")
    acc, sto = K.acc_dtype(dtype), _storage(a_t)
    offsets = _Offsets()

    def operand(shape, transpose, vector_as_row):
        """(batch shape, rows, cols, row stride, col stride) of the logical 2-D operand."""
        shape = tuple(shape)  # (the simulator's shapes do not take negative indices)
        if len(shape) == 1:
            n = shape[0]
            return (), (1, n, 0, 1) if vector_as_row else (n, 1, 1, 0)
        r, c = shape[-2], shape[-1]
        if transpose:
            return tuple(shape[:-2]), (c, r, 1, c)
        return tuple(shape[:-2]), (r, c, c, 1)

    def run(a, b, out):
        ab, (m, ka, sam, sak) = operand(a.shape, ta, True)
        bb, (kb, n, sbk, sbn) = operand(b.shape, tb, False)
        batch = np.broadcast_shapes(ab, bb)
        nb = math.prod(batch)
        if nb * m * n == 0:
            return
        key = (a.shape, b.shape)

        def offs(bshape, size):
            return lambda: np.ascontiguousarray(np.broadcast_to(
                (np.arange(math.prod(bshape), dtype=np.int64) * size).reshape(bshape), batch)).reshape(-1)
        ao = offsets.get(("a",) + key, offs(ab, m * ka if len(a.shape) > 1 else 0))
        bo = offsets.get(("b",) + key, offs(bb, kb * n if len(b.shape) > 1 else 0))
        T = K.tile()
        b_nk = sbk == 1 and sbn != 1  # [N, K] storage: the coalescing tile loader
        K.make_gemm(T, acc, sto)[_grid_gemm(m, n, nb, T)](
            a.reshape(a.size), b.reshape(b.size), out.reshape(out.size), np.int64(m), np.int64(n),
            np.int64(ka), ao, bo, np.int64(sam), np.int64(sak), np.int64(sbk), np.int64(sbn), b_nk)
    return CudaKernel(run, f"matmul_{a_t.dtype.name}", kernels=(K.make_gemm(K.TILE, acc, sto).spec(K.gemm_sig(dtype)),))
