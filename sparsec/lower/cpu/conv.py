"""CPU lowering rule: ``sc.conv2d`` (kernels and measurements in ``sparsec.runtime.cpu.conv``).

Per call, one of:

- **depthwise** (one input channel per group): direct loops, tap by tap.
- **blocked** (f32, at least ``BLOCKED_MIN_BLOCKS_PER_THREAD`` blocks of output rows per thread:
  big feature maps, batches): per block, gather + GEMM (``grouped_gemm_nt`` on one thread) +
  scatter to NCHW, threads over blocks, the gathered block kept in L2. Patches are gathered from
  the NCHW input; other convolutions from the input transposed to NHWC (the weight reordered to
  ``(i, j, c)`` once and cached while it is the same ``sc.param`` array) when a group has at least
  ``NHWC_MIN_CHANNELS`` channels, else from NCHW.
- **whole** (everything else, e.g. the ViT patch embedding of one image): one gather into
  ``[G * N * P, C/G * kh * kw]`` (``P = Ho * Wo``; the patch-embedding form: kernel = stride, no
  padding, dilation 1, one group, copies row runs without bounds checks), one product with
  ``sc.linear``'s f32 kernel (``linear_f32``: tiles, panels, or BLAS from ``BLAS_MIN_ROWS`` rows)
  or the grouped matmul kernel (``grouped_f32``, group ``g``'s row range times ``w[g]``
  ``[O/G, C/G * kh * kw]``), threads over weight rows; then the transposing scatter to NCHW with
  the bias.

f64 multiplies with BLAS (``np.matmul``, per group, whole path), as ``sc.linear`` does; f16/bf16
are widened to f32 and the result rounded once, as the reference rounds. The gathers and the
scatter of the whole path run on threads from ``PARALLEL_MIN_ELEMENTS`` elements.
"""
from __future__ import annotations

import weakref

import numba
import numpy as np

from ...ir import Operation, TensorType
from ...ir.core import OpResult
from ...ops.conv import conv_out_size
from ...runtime.cpu import common
from ...runtime.cpu import conv as rt
from ...runtime.cpu import linalg as K
from . import Kernel, LoweringError, cpu_lowering

#: elements of the gathered matrix (or the output) from which the gathers and the scatter run on threads
PARALLEL_MIN_ELEMENTS = 1 << 16
#: the blocked path (f32) is taken when there are at least this many blocks per thread, so the
#: threads stay busy; otherwise one whole GEMM spreads its weight-row blocks over the threads
BLOCKED_MIN_BLOCKS_PER_THREAD = 2
#: rows (output positions) per block of the blocked path: as many as fit ``rt.BLOCK_BYTES`` of
#: gathered input, within these bounds (a block's GEMM reads the whole weight)
BLOCK_MIN_ROWS, BLOCK_MAX_ROWS = 64, 512

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


class _WeightCache:
    """``make(w)`` for the last weight array seen, recomputed when a different array comes: a
    ``sc.param``/``sc.constant`` weight is the same read-only array on every call of a compiled
    model (held by a weak reference). ``enabled=False`` (a weight computed or passed in, whose
    contents may change between calls) recomputes every time."""

    def __init__(self, make, enabled: bool):
        self.make, self.enabled, self.ref, self.value = make, enabled, None, None

    def __call__(self, w):
        if not self.enabled:
            return self.make(w)
        if self.ref is None or self.ref() is not w:
            self.value = self.make(w)
            try:
                self.ref = weakref.ref(w)
            except TypeError:
                self.ref = None
        return self.value


def is_patch_embedding(kernel, stride, padding, dilation, groups) -> bool:
    """Non-overlapping patches: kernel = stride, no padding, dilation 1, one group."""
    return tuple(kernel) == tuple(stride) and not any(padding) and tuple(dilation) == (1, 1) and groups == 1


@cpu_lowering("sc.conv2d")
def lower_conv2d(op: Operation) -> Kernel:
    from numba import types
    x_t, w_t = op.operands[0].type, op.operands[1].type
    if not isinstance(x_t, TensorType) or not isinstance(w_t, TensorType):
        raise LoweringError(f"{op.describe()}: sc.conv2d needs tensor operands (a quantized convolution weight "
                            f"has no CPU kernel), got {x_t} and {w_t}")
    dt = x_t.dtype
    if not dt.is_float:
        raise LoweringError(f"{op.describe()}: no CPU kernel for sc.conv2d on {x_t.pretty()}")
    ct = F64 if dt.np == F64 else F32
    half = dt.np not in (F32, F64)
    has_bias = len(op.operands) == 3
    _, C, H, W = x_t.shape
    O, Cg, kh, kw = w_t.shape
    sh, sw = op.attrs["stride"]
    pt, pl, pb, pr = op.attrs["padding"]
    dh, dw = op.attrs["dilation"]
    G = op.attrs["groups"]
    ho = conv_out_size(H, kh, sh, pt, pb, dh)
    wo = conv_out_size(W, kw, sw, pl, pr, dw)
    P, Og, Kc = ho * wo, O // G, Cg * kh * kw
    patch = is_patch_embedding((kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw), G)

    i64 = types.int64
    if patch:
        sig = types.void(common.inp(ct, 4), common.arr(ct, 2), i64, i64, i64, i64, i64, i64)
        gather_ser, gather_par = common.specialize(rt.patches, sig), common.Lazy(rt.patches_par, sig)

        def gather(x, cols, N):
            units = N * ho
            (gather_par if cols.size >= PARALLEL_MIN_ELEMENTS and units > 1 else gather_ser)(
                x, cols, kh, kw, ho, wo, 0, units)
    else:
        sig = types.void(common.inp(ct, 4), common.arr(ct, 2), *([i64] * 13))
        gather_ser, gather_par = common.specialize(rt.im2col, sig), common.Lazy(rt.im2col_par, sig)

        def gather(x, cols, N):
            units = G * N * ho
            (gather_par if cols.size >= PARALLEL_MIN_ELEMENTS and units > 1 else gather_ser)(
                x, cols, G, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, 0, units)

    ssig = types.void(common.inp(ct, 2), common.inp(ct, 1), types.boolean, common.arr(ct, 3), i64, i64, i64, i64)
    scatter_ser, scatter_par = common.specialize(rt.scatter_nchw, ssig), common.Lazy(rt.scatter_nchw_par, ssig)
    no_bias = np.zeros(1, ct)
    blocks = (Og + rt.SCATTER_CHANNELS - 1) // rt.SCATTER_CHANNELS

    # depthwise (one input channel per group): direct loops
    depthwise = Cg == 1 and G > 1
    if depthwise:
        dsig = types.void(common.inp(ct, 4), common.inp(ct, 4), common.inp(ct, 1), types.boolean, common.arr(ct, 4),
                          *([i64] * 10))
        dw_ser, dw_par = common.specialize(rt.depthwise, dsig), common.Lazy(rt.depthwise_par, dsig)
    # f32 with many output rows: gather + GEMM + scatter per block of output rows, one thread each
    rows_oh = max(1, min(BLOCK_MAX_ROWS, max(BLOCK_MIN_ROWS, rt.BLOCK_BYTES // (4 * max(Kc, 1)))) // wo)
    n_blocks = G * ((ho + rows_oh - 1) // rows_oh)  # per image
    if ct == F32 and not depthwise:
        bsig = types.void(common.inp(ct, 4), common.inp(ct, 3), common.inp(ct, 1), types.boolean, common.arr(ct, 3),
                          *([i64] * 15))
        blk_ser, blk_par = common.Lazy(rt.conv_blocks, bsig), common.Lazy(rt.conv_blocks_par, bsig)
        to_nhwc = common.Lazy(rt.to_nhwc, types.void(common.inp(ct, 4), common.arr(ct, 4)))
    layout = rt.LAYOUT_PATCH if patch else rt.LAYOUT_NHWC if Cg >= rt.NHWC_MIN_CHANNELS else rt.LAYOUT_NCHW
    w_is_constant = isinstance(op.operands[1], OpResult) and op.operands[1].op.name in ("sc.param", "sc.constant")
    weight_ijc = _WeightCache(lambda w: np.ascontiguousarray(
        w.reshape(G, Og, Cg, kh, kw).transpose(0, 1, 3, 4, 2)).reshape(G, Og, Kc), w_is_constant)

    def gemm(cols, w, N, tmp):
        w3 = w.reshape(G, Og, Kc)
        if ct == F64:
            rows = N * P
            for g in range(G):
                np.matmul(cols[g * rows:(g + 1) * rows], w3[g].T, out=tmp[g * rows:(g + 1) * rows])
        elif G == 1:
            K.linear_f32(cols, w3[0], None, tmp)
        else:
            offsets = np.arange(G + 1, dtype=np.int64) * (N * P)
            K.grouped_f32(cols, w3, None, offsets, K.ACT_NONE, tmp)

    def fn(x, w, *rest):
        out = rest[-1]
        bias = rest[0] if has_bias else None
        N = x.shape[0]
        if out.size == 0:
            return
        if half:
            x, w = x.astype(F32), w.astype(F32)
            bias = None if bias is None else bias.astype(F32)
        y = out.reshape(N, O, P) if not half else np.empty((N, O, P), F32)
        b = no_bias if bias is None else bias
        threads = numba.get_num_threads()
        if Kc == 0:  # no input channels: the bias alone
            y[...] = 0 if bias is None else bias[None, :, None]
            fn.last_path = "bias"
        elif depthwise:
            units = N * O
            (dw_par if y.size >= PARALLEL_MIN_ELEMENTS and units > 1 else dw_ser)(
                x, w, b, bias is not None, y.reshape(N, O, ho, wo), kh, kw, sh, sw, pt, pl, dh, dw, 0, units)
            fn.last_path = "depthwise"
        elif ct == F32 and N * n_blocks >= BLOCKED_MIN_BLOCKS_PER_THREAD * threads:
            if layout == rt.LAYOUT_NHWC:  # (i, j, c) weight: each tap gathers a contiguous run of channels
                src = np.empty((N, H, W, C), F32)
                to_nhwc(x, src)
                w3 = weight_ijc(w)
            else:
                src, w3 = x, w.reshape(G, Og, Kc)
            units = N * n_blocks
            (blk_par if threads > 1 else blk_ser)(src, w3, b, bias is not None, y, G, kh, kw, sh, sw,
                                                  pt, pl, dh, dw, ho, wo, layout, rows_oh, 0, units)
            fn.last_path = "blocked"
        else:
            cols = np.empty((G * N * P, Kc), ct)
            gather(x, cols, N)
            tmp = np.empty((G * N * P, Og), ct)
            gemm(cols, w, N, tmp)
            units = G * N * blocks
            (scatter_par if y.size >= PARALLEL_MIN_ELEMENTS and units > 1 else scatter_ser)(
                tmp, b, bias is not None, y, G, P, 0, units)
            fn.last_path = "whole"
        if half:
            np.copyto(out.reshape(N, O, P), y, casting="unsafe")

    fn.last_path = None  # which way the last call went (tests)

    form = "depthwise" if depthwise else "patch" if patch else "im2col"
    return Kernel(fn, f"conv2d_{form}_{dt.name}", impl="blas" if ct == F64 and not depthwise else "numba",
                  info={"form": form, "groups": G, "gemm": f"[{G}x N*{P}, {Kc}] x [{Og}, {Kc}]^T",
                        "block_rows": rows_oh * wo, "layout": layout})
