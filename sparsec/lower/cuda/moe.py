"""CUDA lowering rules: the MoE router and dispatch chain (softmax_topk, moe_dispatch, moe_permute,
grouped_matmul, moe_gated_grouped_matmul, moe_combine); kernels in ``runtime.cuda.moe`` (the
router's in ``runtime.cuda.reduce``, beside the softmax and top-k kernels it combines).

Each op stays its own kernel, as on the CPU (a distributed runtime can put an exchange between
permute and the grouped matmuls). The grouped matmuls pick per call, from the sizes alone (the
row counts per expert stay on the device): the GEMV kernel when the mean rows per expert that
can have rows (``M / min(E, M)``) is at most ``GEMV_MAX_ROWS`` (decode: each active expert's
weights read once), else the tiled GEMM. Float weights (f32/f64, the rows' dtype) and every
quantized format (``QuantType``; f32 rows) go through the same kernels with a different weight
loader (``runtime.cuda.quant``); gate and up weights of a gated matmul may differ in format.
All five are checked kernels: a bad expert id, order entry or offsets raise ``KernelError``
naming the op.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.types import QuantType
from ...runtime.cuda import device as D
from ...runtime.cuda import half as H
from ...runtime.cuda import launch
from ...runtime.cuda import moe as M
from ...runtime.cuda import quant as Q
from ...runtime.cuda import reduce as R
from ...runtime.cuda.shape import UINT_OF_SIZE, as_uint
from ...runtime.cuda.types import arr
from ...runtime.cuda.vload import aligned
from . import CudaKernel, LoweringError, cuda_lowering


#: CUDA's limit on gridDim.y (the tiled kernel strides over further row tiles)
MAX_GRID_Y = 65535


def _float_rows(op, t) -> np.dtype:
    dt = t.dtype.np
    if not t.dtype.is_float:
        raise LoweringError(f"{op.describe()}: the CUDA kernel needs float rows, got {t.pretty()}")
    return dt


def _half(t) -> str | None:
    """"f16"/"bf16" for 16-bit float rows (computed in f32, rounded once per output), else None."""
    return t.dtype.name if t.dtype.name in ("f16", "bf16") else None


#: row length from which ``sc.softmax_topk`` runs a block per row instead of a thread per row
SOFTMAX_TOPK_BLOCK_FROM = 33


@cuda_lowering("sc.softmax_topk")
def lower_softmax_topk(op) -> CudaKernel:
    """One thread per row (``reduce.softmax_topk_serial``: the CPU rule's single pass) for rows
    up to a warp long; longer rows (a 128-expert router) one block per row
    (``reduce.make_softmax_topk_block``, the same bits)."""
    from numba import types
    x = op.operands[0].type
    dt = _float_rows(op, x)
    n, k, normalize = x.shape[-1], int(op.attrs["k"]), bool(op.attrs["normalize"])
    kern = H.variant(R.softmax_topk_serial, x.dtype.name, x.dtype.name)
    nt = launch.block_size(n, 128)
    block = R.make_softmax_topk_block(nt, x.dtype.name)

    def run(xa, vals, idx):
        rows = xa.size // n
        if rows == 0:
            return
        args = (xa.reshape(xa.size), np.int64(rows), np.int64(n), np.int64(k), normalize, vals.reshape(vals.size),
                idx.reshape(idx.size))
        if n >= SOFTMAX_TOPK_BLOCK_FROM:
            block[min(rows, launch.max_blocks()), nt](*args)
        else:
            kern[launch.grid_1d(rows)](*args)
    i64 = types.int64
    sig = (arr(dt), i64, i64, i64, types.boolean, arr(dt), arr(np.int64))
    return CudaKernel(run, f"softmax_topk_{x.dtype.name}", kernels=(kern.spec(sig), block.spec(sig)))


@cuda_lowering("sc.moe_dispatch")
def lower_moe_dispatch(op) -> CudaKernel:
    E = int(op.attrs["num_experts"])
    i_t = op.operands[0].type
    ecap = 32
    while ecap < E:
        ecap *= 2
    if ecap > 8192:
        raise LoweringError(f"{op.describe()}: the CUDA dispatch keeps per-expert counters in shared memory "
                            f"(at most 8192 experts), got num_experts={E}")

    def block():
        return M.SIM_DISPATCH_BLOCK if launch.simulator() else M.DISPATCH_BLOCK

    def run(topk_ids, order, offsets, err):
        M.make_dispatch(block(), ecap)[1, block()](topk_ids.reshape(topk_ids.size), np.int64(E), order,
                                                   offsets, err)

    def error(code, value):
        return f"expert id {value} is outside [0, {E}) (num_experts)"
    specs = tuple(M.make_dispatch(b, ecap).spec(M.dispatch_sig(i_t.dtype.np))
                  for b in (M.DISPATCH_BLOCK,))
    return CudaKernel(run, f"moe_dispatch_e{E}", kernels=specs, checked=True, error=error)


@cuda_lowering("sc.moe_permute")
def lower_moe_permute(op) -> CudaKernel:
    top_k = int(op.attrs["top_k"])
    x_t, o_t = op.operands[0].type, op.operands[1].type
    u = UINT_OF_SIZE[x_t.dtype.np.itemsize]

    def run(x, order, out, err):
        T, H = x.shape
        if out.size == 0:
            return
        launch.launch_1d(M.moe_permute, out.size, as_uint(x), order, np.int64(top_k), np.int64(T), np.int64(H),
                         as_uint(out), err)

    def error(code, value):
        return f"order entry {value} is out of range for tokens*top_k pairs (top_k={top_k})"
    return CudaKernel(run, "moe_permute", kernels=(M.moe_permute.spec(M.permute_sig(u, o_t.dtype.np)),),
                      checked=True, error=error)


# ---------------------------------------------------------------------------------------------
# grouped matmuls (shared with sc.linear on quantized weights, quant.py)

class WeightArgs:
    """How a weight operand reaches the kernels: its kind, group size ``G``, blocks per row ``nb``,
    and ``(wa, wb, wc)`` from the device value (see ``runtime.cuda.quant``)."""

    def __init__(self, op, t, dtype):
        self.op, self.t = op, t
        self.K = int(t.shape[-1])
        if isinstance(t, QuantType):
            if t.format not in Q.FORMAT_KINDS:
                raise LoweringError(f"{op.describe()}: no CUDA kernel for quantized format {t.format}")
            self.kind, self.G = Q.FORMAT_KINDS[t.format]
            self.nb = 1 if self.kind == Q.KIND_I8C else -(-self.K // self.G)
        else:
            self.kind, self.G, self.nb = Q.KIND_FLOAT, 32, 1
        self.dtype = dtype
        self._f16 = D.Uploaded(np.zeros(1, np.float16))
        self._last = (None, None, None)   # a step sees the same weight every call: its views, once

    def __call__(self, w, as_words: bool = False):
        """``(wa, wb, wc)``; ``as_words``: ``wa`` (``qs``) as int32 words (the word GEMV)."""
        if self._last[0] is not w or self._last[1] != as_words:
            wa, wb, wc = self._views(w)
            self._last = (w, as_words, (wa.view(np.int32) if as_words else wa, wb, wc))
        return self._last[2]

    def _views(self, w):
        if self.kind == Q.KIND_FLOAT:
            return w.reshape(w.size), self._f16.get(), self._f16.get()
        if not isinstance(w, D.DeviceQuantized) or w.fmt != self.t.format or tuple(w.shape) != tuple(self.t.shape):
            raise TypeError(f"{self.op.describe()}: expected a quantized weight {self.t}, got "
                            f"{getattr(w, 'fmt', type(w).__name__)} {list(getattr(w, 'shape', ()))}")
        if w.layout != "blocks":
            raise TypeError(f"{self.op.describe()}: the CUDA kernels read quantized weights in the 'blocks' "
                            f"layout, got {w.layout!r}")
        p = w.parts

        def flat(a):
            return a.reshape(a.size)
        if self.kind == Q.KIND_I8C:
            return flat(p["q"]), self._f16.get(), flat(p["scale"])
        return flat(p["qs"]), flat(p["d"]), flat(p["m"]) if "m" in p else self._f16.get()


def grouped_kernel(op, x_dtype, w1: WeightArgs, w2: WeightArgs | None, act: int, offsets_dtype, single: bool,
                   storage: str | None = None):
    """``(run, specs)``: ``run(x, w, w_up|None, bias|None, offsets|None, out, err)`` launches the
    GEMV or the tiled GEMM over the rows of ``x`` ``[M, K]`` (flattened) into ``out [M, N]``;
    ``single``: one group of all rows (``sc.linear``), else the ``E`` groups of ``offsets``;
    ``storage`` "f16"/"bf16": 16-bit rows and float weights, accumulated in f32."""
    acc = "float32" if storage else np.dtype(x_dtype).name
    k2, g2 = (w2.kind, w2.G) if w2 is not None else (w1.kind, w1.G)
    E = 1 if single else int(w1.t.shape[0])
    N, K = int(w1.t.shape[-2]), w1.K
    dummy = D.Uploaded(np.zeros(1, x_dtype))
    no_offsets = D.Uploaded(np.zeros(2, offsets_dtype))

    # q8_0 / q4_0 / int4 with whole blocks: the GEMV reads 32-bit words (gate and up alike)
    words = (w1.kind in Q.WORD_KINDS and K % w1.G == 0
             and (w2 is None or (w2.kind, w2.G) == (w1.kind, w1.G)))

    # the GEMV reads 16 bytes per thread and load where a weight row is whole 16-byte vectors
    # and the weight arrays are 16-byte aligned (whole uploads are): f32 weights and rows with
    # K % 4 == 0, bf16 ones with K % 8 == 0 (their uint32 words), quantized words 4 at a time
    # (blocks of a multiple of 4 words); ``per_vec``: scalar loads per vector
    if words:
        scalar_units = K // w1.G * Q.words_per_block(w1.kind, w1.G)
        per_vec = 4 if Q.words_per_block(w1.kind, w1.G) % 4 == 0 else 0
    else:
        scalar_units = K
        float_rows = w1.kind == k2 == Q.KIND_FLOAT and acc == "float32"
        per_vec = (4 if storage is None else 8 if storage == "bf16" else 0) if float_rows else 0
    vec_ok = per_vec > 0 and scalar_units % per_vec == 0
    # loads per weight row of a GEMV thread's column
    units = scalar_units // per_vec if vec_ok else scalar_units

    def gemv(geometry, vec=False):
        if words:
            return M.make_grouped_gemv_words(w1.kind, w1.G, act, geometry, storage, vec)
        return M.make_grouped_gemv(w1.kind, w1.G, k2, g2, act, acc, geometry, storage, vec)

    def run(x, w, wu, bias, offsets, out, err):
        m = math.prod(tuple(x.shape)[:-1])     # (K = 0: still the rows, each output 0 or its bias)
        if m == 0 or N == 0:
            if not single and m == 0:   # still check the offsets (all zero for no rows)
                g = M.gemv_geometry()
                gemv(g)[M.gemv_grid(1, 1, g)](*_args(x, w, wu, bias, offsets, out, err, m, words))
            return
        active = 1 if single else min(E, m)
        if m <= M.GEMV_MAX_ROWS * active:
            args = _args(x, w, wu, bias, offsets, out, err, m, words)
            vec = vec_ok and aligned(args[1]) and aligned(args[4])
            if vec and not words and storage == "bf16":  # 8 bf16 weights per 16-byte load: uint32 words
                args = args[:1] + (_words(args[1]),) + args[2:4] + (_words(args[4]),) + args[5:]
            g = M.gemv_geometry(N, active, units if vec else scalar_units, m)
            gemv(g, vec)[M.gemv_grid(N, active, g)](*args)
        else:
            g = M.gemm_geometry(m, active)
            tiles = min(-(-m // g[0]) + (0 if single else active), MAX_GRID_Y)
            M.make_grouped_gemm(w1.kind, w1.G, k2, g2, act, acc, g, storage)[M.gemm_grid(N, tiles, g)](
                *_args(x, w, wu, bias, offsets, out, err, m, False))

    def _args(x, w, wu, bias, offsets, out, err, m, as_words):
        wa, wb, wc = w1(w, as_words)
        va, vb, vc = (w2(wu, as_words) if w2 is not None else (wa, wb, wc))
        return (x.reshape(x.size), wa, wb, wc, va, vb, vc, dummy.get() if bias is None else bias,
                no_offsets.get() if offsets is None else offsets, out.reshape(out.size), np.int64(m), np.int64(N),
                np.int64(K), np.int64(E), np.int64(w1.nb), np.int64(w2.nb if w2 is not None else w1.nb), single,
                bias is not None, err)

    arr_u32 = arr(np.uint32)

    def _words(a):
        return (a.view(np.uint16) if a.dtype != np.uint16 else a).view(np.uint32)

    sig = M.grouped_sig(w1.kind, k2, x_dtype, offsets_dtype)
    # the GEMV geometries this op's shapes can launch with (on a device like the one assumed
    # without one), each one's PTX
    geometries = list(dict.fromkeys([M.GEMV] + [M.gemv_geometry(N, a, units, r) for a in range(1, E + 1)
                                                for r in (a, a * M.GEMV_MAX_ROWS)]))
    gsig = M.words_sig(w1.kind, offsets_dtype, x_dtype) if words else sig
    vsig = gsig if words or storage is None else sig[:1] + (arr_u32,) + sig[2:4] + (arr_u32,) + sig[5:]
    # the 16-byte kernels where possible, and the scalar one in the default geometry for
    # misaligned weights; else the scalar kernels
    gemv_specs = ([gemv(g, True).spec(vsig) for g in geometries] + [gemv(M.GEMV).spec(gsig)] if vec_ok else
                  [gemv(g).spec(gsig) for g in geometries])
    # and the GEMM in each row-tile height a call can choose
    gemm_geometries = dict.fromkeys(M.gemm_geometry(bm * (1 if single else E), 1 if single else E)
                                    for bm in M.GEMM_ROW_TILES)
    specs = (*gemv_specs, *(M.make_grouped_gemm(w1.kind, w1.G, k2, g2, act, acc, g, storage).spec(sig)
                            for g in gemm_geometries))
    return run, specs


def linear_kernel(op, w: WeightArgs, x_dtype, storage: str | None, name: str, **info) -> CudaKernel:
    """``sc.linear(x, w, b?)`` (``x [..., K]``, ``w [N, K]`` float or quantized) as the grouped
    kernels with one group of all rows: the GEMV (16-byte loads, geometry per shape) up to
    ``GEMV_MAX_ROWS`` rows, else the tiled GEMM with its row tile per shape. ``info``: added to
    the kernel's ``info``."""
    has_bias = len(op.operands) == 3
    run, specs = grouped_kernel(op, x_dtype, w, None, M.ACT_NONE, np.dtype(np.int64), single=True, storage=storage)
    err = D.Uploaded(np.zeros(2, np.int64))  # single-group launches never write their error slot

    def fn(x, wt, *rest):
        bias, out = (rest[0], rest[1]) if has_bias else (None, rest[0])
        run(x, wt, None, bias, None, out, err.get())
    return CudaKernel(fn, name, kernels=specs, info={"gemv_max_rows": M.GEMV_MAX_ROWS, **info})


def _offsets_error(rows_what: str):
    def error(code, value):
        return (f"offsets must rise from 0 to the row count of {rows_what} (entry {value} does not); "
                f"they come from sc.moe_dispatch")
    return error


def _grouped(op, act: int) -> CudaKernel:
    gated = act != M.ACT_NONE
    x_t, w_t = op.operands[0].type, op.operands[1].type
    u_t = op.operands[2].type if gated else None
    off_t = op.operands[3 if gated else 2].type
    dtype = _float_rows(op, x_t)
    quant = isinstance(w_t, QuantType)
    if gated and quant != isinstance(u_t, QuantType):
        raise LoweringError(f"{op.describe()}: w_gate {w_t} and w_up {u_t} must both be quantized or both not")
    if quant and x_t.dtype.name not in ("f32", "f16", "bf16"):
        raise LoweringError(f"{op.describe()}: quantized expert weights take f32, f16 or bf16 rows on the CUDA "
                            f"target, got {x_t.pretty()} (insert sc.cast)")
    if not quant and any(t.dtype != x_t.dtype for t in ([w_t, u_t] if gated else [w_t])):
        raise LoweringError(f"{op.describe()}: the CUDA grouped matmul needs float expert weights of the rows' dtype, "
                            f"got {w_t} for rows {x_t.pretty()} (insert sc.cast)")
    w1 = WeightArgs(op, w_t, dtype)
    w2 = WeightArgs(op, u_t, dtype) if gated else None
    run, specs = grouped_kernel(op, dtype, w1, w2, act, off_t.dtype.np, single=False, storage=_half(x_t))
    fmt = w_t.format if quant else dtype.name
    name = f"grouped_{'gated_' if gated else ''}{fmt}"

    if gated:
        def fn(x, w, wu, offsets, out, err):
            run(x, w, wu, None, offsets, out, err)
    else:
        def fn(x, w, offsets, out, err):
            run(x, w, None, None, offsets, out, err)
    return CudaKernel(fn, name, kernels=specs, checked=True, error=_offsets_error(x_t.pretty()),
                      info={"gemv_max_rows": M.GEMV_MAX_ROWS, "format": fmt})


@cuda_lowering("sc.grouped_matmul")
def lower_grouped_matmul(op) -> CudaKernel:
    return _grouped(op, M.ACT_NONE)


@cuda_lowering("sc.moe_gated_grouped_matmul")
def lower_moe_gated_grouped_matmul(op) -> CudaKernel:
    return _grouped(op, M.ACTIVATIONS[op.attrs["activation"]])


@cuda_lowering("sc.moe_combine")
def lower_moe_combine(op) -> CudaKernel:
    y_t, o_t, w_t = (v.type for v in op.operands)
    dtype = _float_rows(op, y_t)
    h = _half(y_t)
    comb = M.make_combine("float32", h, h) if h else M.make_combine(dtype.name)
    one = M.make_combine_one_block("float32", h, h) if h else M.make_combine_one_block(dtype.name)
    scratch: dict = {}

    def inv_for(m):
        a = scratch.get(m)
        if a is None:   # the inverse permutation, kept per row count (outside the arena)
            scratch.clear()
            a = scratch[m] = D.empty((max(m, 1),), np.int64)
        return a

    def run(y_perm, order, topk_weights, out, err):
        T, k = topk_weights.shape
        m = order.size
        H = y_perm.shape[1]
        if out.size == 0 and m == 0:
            return
        inv = inv_for(m)
        if T * H <= M.COMBINE_ONE_BLOCK and m == T * k:  # few tokens: one launch (fill, invert, sum)
            one[1, launch.block_size(max(T * H, m))](y_perm.reshape(y_perm.size), order, inv,
                                                      topk_weights.reshape(topk_weights.size), np.int64(T),
                                                      np.int64(k), np.int64(H), out.reshape(out.size), err)
            return
        launch.launch_1d(M.fill_i64, m, inv, np.int64(-1))
        launch.launch_1d(M.invert_order, m, order, np.int64(m), inv, err)
        launch.launch_1d(comb, T * H, y_perm.reshape(y_perm.size), inv,
                         topk_weights.reshape(topk_weights.size), np.int64(T), np.int64(k), np.int64(H),
                         out.reshape(out.size))

    def error(code, value):
        return f"order is not a permutation of 0..tokens*top_k-1 (entry {value} is out of range or repeated)"
    specs = (M.fill_i64.spec(M.fill_sig()), M.invert_order.spec(M.invert_sig(o_t.dtype.np)),
             comb.spec(M.combine_sig(dtype)), one.spec(M.combine_one_block_sig(dtype, o_t.dtype.np)))
    return CudaKernel(run, f"moe_combine_{dtype.name}", kernels=specs, checked=True, error=error)
