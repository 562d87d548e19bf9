"""CPU lowering rules: the MoE router and dispatch chain (softmax_topk, moe_dispatch, moe_permute,
grouped_matmul, moe_gated_grouped_matmul, moe_combine).

Each op stays its own kernel, so a distributed runtime can put an exchange between permute and
the grouped matmuls (DESIGN.md section 6). The grouped matmuls run the tile kernel of
``sparsec.runtime.cpu.linalg`` over (expert, weight-row block) items: an expert with no rows
costs nothing, and at one token each active expert's weights are read once. f16/bf16 are
widened to f32 around the kernels and rounded once, as the references do. Quantized expert
weights go to the quantized kernels (``quant.py``: the activations are quantized once per
matmul and shared by the experts).
"""
from __future__ import annotations

import numpy as np

from ...ir.types import QuantType
from ...ops.elementwise import UNARY
from ...runtime.cpu import common
from ...runtime.cpu import index as X
from ...runtime.cpu import linalg as L
from ...runtime.cpu import moe as M
from ...runtime.cpu import reduce as R
from . import Kernel, LoweringError, contiguous, cpu_lowering
from .index import as_i64, byte_rows

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)


def _compute_dtype(op, dtype: np.dtype) -> np.dtype:
    if dtype == F64:
        return F64
    if dtype.kind == "f" or dtype.name == "bfloat16":
        return F32
    raise LoweringError(f"{op.describe()}: no CPU kernel for {dtype} rows")


def _bad_offsets(op, offsets: np.ndarray, rows: int) -> ValueError:
    return ValueError(f"{op.describe()}: offsets must rise from 0 to {rows} (the row count), "
                      f"got {offsets.tolist()}")


@cpu_lowering("sc.softmax_topk")
def lower_softmax_topk(op) -> Kernel:
    """One serial pass per row (``reduce.softmax_topk_rows``): at one token the router's four
    small ops (softmax, topk, sum, div) were four kernel calls of 1-4 us each. f16/bf16 run in
    float32 with the references' roundings, f64 in float64."""
    from numba import types
    x = op.operands[0].type
    dt = x.dtype.name
    ct = F64 if dt == "f64" else F32
    n, k, normalize = x.shape[-1], int(op.attrs["k"]), bool(op.attrs["normalize"])
    rnd = {"f16": 1, "bf16": 2}.get(dt, 0)
    kern = common.specialize(R.softmax_topk_rows, types.void(common.inp(ct), types.int64, types.int64, types.int64,
                                                             types.boolean, types.int64, common.arr(ct),
                                                             common.arr(np.int64)))
    direct = x.dtype.np == ct

    def args(xf, vals_flat, idx):
        return xf, xf.size // n, n, k, normalize, rnd, vals_flat, idx.reshape(-1)

    def run(xa, vals, idx):
        if direct:
            kern(*args(xa.reshape(-1), vals.reshape(-1), idx))
            return
        v = np.empty(vals.size, ct)
        kern(*args(xa.reshape(-1).astype(ct), v, idx))
        np.copyto(vals.reshape(-1), v, casting="unsafe")

    def bind(xa, vals, idx):
        if not (direct and contiguous(xa, vals, idx)):
            return None
        return common.bound(kern, *args(xa.reshape(-1), vals.reshape(-1), idx))
    return Kernel(run, f"softmax_topk_{dt}", impl="numba", bind=bind)


@cpu_lowering("sc.moe_dispatch")
def lower_moe_dispatch(op) -> Kernel:
    num_experts = op.attrs["num_experts"]

    def check(ids, bad):
        if bad >= 0:
            raise ValueError(f"{op.describe()}: expert id {int(ids[bad])} is outside [0, {num_experts})")

    def run(topk_ids, order, offsets):
        ids = as_i64(topk_ids).reshape(-1)
        check(ids, M.dispatch(ids, num_experts, order, offsets))

    def bind(topk_ids, order, offsets):
        if topk_ids.dtype != np.int64 or not contiguous(topk_ids, order, offsets):
            return None
        ids = topk_ids.reshape(-1)
        return common.checked(common.bound(M.dispatch, ids, num_experts, order, offsets),
                              lambda bad: check(ids, bad))
    return Kernel(run, "moe_dispatch", impl="numba", bind=bind)


@cpu_lowering("sc.moe_permute")
def lower_moe_permute(op) -> Kernel:
    top_k = op.attrs["top_k"]

    def check(idx, t, bad):
        if bad >= 0:
            raise IndexError(f"{op.describe()}: order entry {int(idx[bad])} is out of range [0, {t * top_k}) "
                             f"(tokens*top_k = {t}*{top_k})")

    def args(x, idx, out):
        t, h = x.shape
        return byte_rows(x, 1, t, h), idx, top_k, out.nbytes >= X.PARALLEL_BYTES, byte_rows(out, 1, idx.size, h)

    def run(x, order, out):
        idx = as_i64(order)
        check(idx, x.shape[0], X.gather_rows(*args(x, idx, out)))

    def bind(x, order, out):
        if order.dtype != np.int64 or not contiguous(x, order, out):
            return None
        t = x.shape[0]
        return common.checked(common.bound(X.gather_rows, *args(x, order, out)), lambda bad: check(order, t, bad))
    return Kernel(run, "moe_permute", impl="numba", bind=bind)


def _grouped(op, act: int) -> Kernel:
    x_t = op.operands[0].type
    if isinstance(op.operands[1].type, QuantType):
        from . import quant
        return quant.lower_grouped(op, act)
    ct = _compute_dtype(op, x_t.dtype.np)
    native = x_t.dtype.np == ct
    gated = act != L.ACT_NONE

    if ct == F32:
        scratch = [np.empty(0, F32)]   # the gated kernel's up-projection rows, kept between calls

        def run(x, w, *rest):
            w2, offsets, out = rest if gated else (None,) + rest
            offsets = as_i64(offsets)
            if not native:
                x, w = x.astype(F32), w.astype(F32)
                w2 = None if w2 is None else w2.astype(F32)
            res = out if native else np.empty(out.shape, F32)
            if gated and scratch[0].size < res.size:
                scratch[0] = np.empty(res.size, F32)
            if not L.grouped_f32(x, w, w2, offsets, act, res, scratch[0] if gated else None):
                raise _bad_offsets(op, offsets, x.shape[0])
            if not native:
                out[...] = res
        return Kernel(run, "grouped_gemm_gated_f32" if gated else "grouped_gemm_f32", impl="numba",
                      info={"blas_min_rows": L.BLAS_MIN_ROWS})

    def run64(x, w, *rest):  # f64: BLAS per expert, as the reference's f64 products
        w2, offsets, out = rest if gated else (None,) + rest
        offsets = as_i64(offsets)
        if offsets[0] != 0 or offsets[-1] != x.shape[0] or np.any(offsets[1:] < offsets[:-1]):
            raise _bad_offsets(op, offsets, x.shape[0])
        for e in range(w.shape[0]):
            lo, hi = offsets[e], offsets[e + 1]
            if hi > lo:
                np.matmul(x[lo:hi], w[e].T, out=out[lo:hi])
                if gated:
                    out[lo:hi] = _activation64(out[lo:hi], act) * (x[lo:hi] @ w2[e].T)
    return Kernel(run64, "grouped_gemm_f64", impl="blas")


def _activation64(g: np.ndarray, act: int) -> np.ndarray:
    name = next(n for n, c in L.ACTIVATIONS.items() if c == act)
    return UNARY[name].reference(g)


@cpu_lowering("sc.grouped_matmul")
def lower_grouped_matmul(op) -> Kernel:
    return _grouped(op, L.ACT_NONE)


@cpu_lowering("sc.moe_gated_grouped_matmul")
def lower_moe_gated_grouped_matmul(op) -> Kernel:
    return _grouped(op, L.ACTIVATIONS[op.attrs["activation"]])


@cpu_lowering("sc.moe_combine")
def lower_moe_combine(op) -> Kernel:
    y_t = op.operands[0].type
    ct = _compute_dtype(op, y_t.dtype.np)
    native = y_t.dtype.np == ct

    def run(y_perm, order, topk_weights, out):
        idx = as_i64(order)
        if native:
            bad = M.combine(y_perm, idx, topk_weights, y_perm.size >= M.PARALLEL_ELEMENTS, out)
        else:
            res = np.empty(out.shape, ct)
            bad = M.combine(y_perm.astype(ct), idx, topk_weights.astype(ct), y_perm.size >= M.PARALLEL_ELEMENTS, res)
            out[...] = res
        check(idx, bad)

    def check(idx, bad):
        if bad >= 0:
            raise ValueError(f"{op.describe()}: order is not a permutation of 0..{idx.size - 1} "
                             f"(entry {bad} is {int(idx[bad])})")

    def bind(y_perm, order, topk_weights, out):
        if not (native and order.dtype == np.int64 and contiguous(y_perm, order, topk_weights, out)):
            return None
        return common.checked(common.bound(M.combine, y_perm, order, topk_weights,
                                           y_perm.size >= M.PARALLEL_ELEMENTS, out), lambda bad: check(order, bad))
    return Kernel(run, f"moe_combine_{ct.name}", impl="numba", bind=bind)
