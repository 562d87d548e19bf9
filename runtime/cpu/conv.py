"""Convolution kernels for ``sc.conv2d`` (rules in ``sparsec.lower.cpu.conv``).

Three ways, chosen at lowering / per call by the rule:

**Whole GEMM** (few images: the ViT patch embedding at batch 1):

1. ``im2col_*`` / ``patches_*`` gather the input into ``cols [G * N * P, C/G * kh * kw]``: row
   ``(g, n, p)`` holds, for output position ``p = oh * Wo + ow`` of image ``n``, the receptive
   field of group ``g`` in the weight's ``(c, i, j)`` order (zeros where it falls on padding).
   The patch-embedding form (kernel = stride, no padding, dilation 1: ViT/CLIP/SigLIP) has its
   own gather that copies ``kw``-element runs of input rows (no bounds checks);
2. the product ``cols @ w.T`` (``w`` reshaped ``[G, O/G, C/G * kh * kw]``) is ``sc.linear``'s
   kernel (one group) or ``sc.grouped_matmul``'s (row range ``g`` times ``w[g]``): tiles, panels
   or BLAS chosen by the row count as for any linear layer (``sparsec.runtime.cpu.linalg``),
   threads over blocks of weight rows;
3. ``scatter_nchw_*`` writes ``tmp[(g, n, p), o]`` to ``y[n, g * O/G + o, p]`` adding the bias:
   16 output channels per work item (each cache line of ``tmp`` read once), transposed in 16 x 16
   tiles. (Computing ``w @ cols.T`` straight into NCHW instead needs no transpose, but its ``O``
   rows make the linear kernel pack the whole weight per call, or go to BLAS: both measured
   slower at the ViT-B/16 shape than this GEMM + transpose: 0.82-1.0 ms vs 0.58 + 0.04 ms.)

**Blocked** (``conv_blocks*``: many output rows, e.g. a 3x3 conv over a 56x56 map, or a batch):
the same three steps per block of output rows of one image and group, all on one thread, so
the block's ``cols`` (at most ``BLOCK_BYTES``) stays in L2 from gather to GEMM and the gathered
matrix never goes through memory (a 3x3 conv on 64 x 56 x 56 gathers 7 MB); threads take blocks.
The GEMM is ``grouped_gemm_nt`` on one thread (its packed panels). With ``NHWC_MIN_CHANNELS``
channels per group or more, the input is first transposed to NHWC and the weight to
``(i, j, c)`` order, so each tap of a row of ``cols`` is one contiguous run of channels (the NCHW
gather moves ``kw`` elements at a time with a bounds check each: 3x slower on that 3x3 conv;
with 3 channels, a 7x7/2 stem, the NCHW gather is the faster: 1.4 vs 1.7 ms).

**Depthwise** (``depthwise*``: one input channel per group): direct loops, each output row
accumulates ``w[o, 0, i, j] * x[n, c, ih, ow * sw + j * dw - pl]`` tap by tap over the output
positions whose input is inside the image (no padding copies, contiguous for stride 1); a GEMM
with one weight row per group would be all overhead.

Measured on the shared 2-core Zen 5 (one thread each, torch 2.13 CPU ``F.conv2d`` beside it, in
one process; median ms): ViT-B/16 patch embedding 1x3x224x224 -> 768: 1.30 vs torch 1.37 (two
threads: 0.65 vs 0.66), the same at batch 8: 10.9 vs 9.7; 3x3 64->64 on 56x56: 2.15 vs 1.09;
7x7/2 stem 3->64 on 224x224: 3.9 vs 3.7; depthwise 3x3 on 256x28x28: 0.21 vs 0.12; 3x3 with 4
groups, 128 channels on 28x28: 1.04 vs 0.31 (oneDNN's direct kernels; here the GEMM of a block
with few weight rows runs at ~160 GFLOP/s and the gathers cost a third).

Every kernel takes a range (``lo``, ``hi``) of its work units; the ``*_par`` variants split the
units over threads (``prange``). The kernels are generic in the float dtype (f32, f64; f16/bf16
arrive widened to f32).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .linalg import ACT_NONE, grouped_gemm_nt, prange_only

#: output channels per unit of the scatter (one 64-byte line of f32 ``tmp`` per output position)
SCATTER_CHANNELS = 16
#: the blocked path's gathered block (rows x C/G*kh*kw) stays under this size (L2 with the weights)
BLOCK_BYTES = 256 * 1024
#: rows the GEMM of a block is given to BLAS from: never (a block runs on one thread)
_NO_BLAS = 1 << 62
#: how the blocked path gathers: patches of the NCHW input, im2col of the NCHW input, or of
#: the NHWC input (from this many channels per group: one contiguous run per tap)
LAYOUT_PATCH, LAYOUT_NCHW, LAYOUT_NHWC = 0, 1, 2
NHWC_MIN_CHANNELS = 16


# ---------------------------------------------------------------------------------------------
# gathers: rows of cols for one output row of one image and group


@njit(cache=True, nogil=True)
def _im2col_rows(x, cols, r, g, n, oh, G, kh, kw, sh, sw, pt, pl, dh, dw, wo):
    """``cols[r + ow]`` = the receptive field of output ``(oh, ow)`` of image ``n``, group ``g``."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Cg = C // G
    zero = cols.dtype.type(0)
    for c in range(Cg):
        for i in range(kh):
            ih = oh * sh - pt + i * dh
            k0 = (c * kh + i) * kw
            if ih < 0 or ih >= H:
                for ow in range(wo):
                    for j in range(kw):
                        cols[r + ow, k0 + j] = zero
                continue
            xr = x[n, g * Cg + c, ih]
            for ow in range(wo):
                row = cols[r + ow]
                iw0 = ow * sw - pl
                for j in range(kw):
                    iw = iw0 + j * dw
                    row[k0 + j] = xr[iw] if 0 <= iw < W else zero


@njit(cache=True, nogil=True)
def _im2col_rows_nhwc(xt, cols, r, g, n, oh, G, kh, kw, sh, sw, pt, pl, dh, dw, wo):
    """``cols[r + ow]`` = the receptive field of output ``(oh, ow)`` in ``(i, j, c)`` order, from the
    input transposed to ``xt [N, H, W, C]``: each tap is a contiguous run of ``C/G`` channels."""
    H, W, C = xt.shape[1], xt.shape[2], xt.shape[3]
    Cg = C // G
    c0 = g * Cg
    zero = cols.dtype.type(0)
    for ow in range(wo):
        row = cols[r + ow]
        k = 0
        for i in range(kh):
            ih = oh * sh - pt + i * dh
            for j in range(kw):
                iw = ow * sw - pl + j * dw
                dst = row[k:k + Cg]
                if 0 <= ih < H and 0 <= iw < W:
                    src = xt[n, ih, iw, c0:c0 + Cg]
                    for c in range(Cg):
                        dst[c] = src[c]
                else:
                    for c in range(Cg):
                        dst[c] = zero
                k += Cg


@njit(cache=True, nogil=True, parallel=prange_only())
def to_nhwc(x, xt):
    """``xt[n, h, w, c] = x[n, c, h, w]``, threads over ``(n, h)``."""
    N, C, H, W = x.shape
    for u in prange(N * H):
        n, h = u // H, u % H
        for c0 in range(0, C, 16):
            c1 = min(c0 + 16, C)
            for w in range(W):
                d = xt[n, h, w]
                for c in range(c0, c1):
                    d[c] = x[n, c, h, w]


@njit(cache=True, nogil=True)
def _patch_rows(x, cols, r, n, ph, kh, kw, wp):
    """``cols[r + pw]`` = patch ``(ph, pw)`` of image ``n``: each input row segment
    ``x[n, c, ph*kh + i, pw*kw : pw*kw + kw]`` is copied whole."""
    C = x.shape[1]
    for c in range(C):
        for i in range(kh):
            xr = x[n, c, ph * kh + i]
            k0 = (c * kh + i) * kw
            for pw in range(wp):
                row = cols[r + pw]
                s = pw * kw
                for j in range(kw):
                    row[k0 + j] = xr[s + j]


@njit(cache=True, nogil=True)
def im2col(x, cols, G, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, lo, hi):
    """``cols[(g, n, oh, ow), (c, i, j)] = xpad[n, g*C/G + c, oh*sh - pt + i*dh, ow*sw - pl + j*dw]``
    (0 outside the input) for the units ``lo <= (g * N + n) * ho + oh < hi``."""
    N = x.shape[0]
    for u in range(lo, hi):
        gn, oh = u // ho, u % ho
        _im2col_rows(x, cols, u * wo, gn // N, gn % N, oh, G, kh, kw, sh, sw, pt, pl, dh, dw, wo)


@njit(cache=True, nogil=True, parallel=prange_only())
def im2col_par(x, cols, G, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, lo, hi):
    """``im2col`` with the units spread over threads."""
    N = x.shape[0]
    for u in prange(lo, hi):
        gn, oh = u // ho, u % ho
        _im2col_rows(x, cols, u * wo, gn // N, gn % N, oh, G, kh, kw, sh, sw, pt, pl, dh, dw, wo)


@njit(cache=True, nogil=True)
def patches(x, cols, kh, kw, hp, wp, lo, hi):
    """Patch embedding gather: ``cols[(n, ph, pw), (c, i, j)] = x[n, c, ph*kh + i, pw*kw + j]`` for the
    units ``lo <= n * hp + ph < hi`` (kernel = stride, no padding, dilation 1, one group)."""
    for u in range(lo, hi):
        _patch_rows(x, cols, u * wp, u // hp, u % hp, kh, kw, wp)


@njit(cache=True, nogil=True, parallel=prange_only())
def patches_par(x, cols, kh, kw, hp, wp, lo, hi):
    """``patches`` with the units spread over threads."""
    for u in prange(lo, hi):
        _patch_rows(x, cols, u * wp, u // hp, u % hp, kh, kw, wp)


# ---------------------------------------------------------------------------------------------
# the GEMM's rows back to NCHW


@njit(cache=True, nogil=True)
def _scatter_tile(tmp, t0, rows, bias, has_bias, y, n, c0, o0, o1, p0):
    """``y[n, c0 + o, p0 + r] = tmp[t0 + r, o] (+ bias[c0 + o])`` for ``o0 <= o < o1`` (at most 16),
    ``r < rows``. Full 16 x 16 tiles go through a small buffer (gathered reads, then contiguous
    writes along ``p``): 2x faster than writing 16 output rows one element at a time."""
    T = SCATTER_CHANNELS
    add = np.zeros(T, y.dtype)
    if has_bias:
        for j in range(o1 - o0):
            add[j] = bias[c0 + o0 + j]
    buf = np.empty((T, T), y.dtype)
    for q0 in range(0, rows, T):
        if o1 - o0 == T and q0 + T <= rows:
            for i in range(T):
                tr = tmp[t0 + q0 + i]
                for j in range(T):
                    buf[j, i] = tr[o0 + j]
            for j in range(T):
                yr = y[n, c0 + o0 + j]
                a = add[j]
                for i in range(T):
                    yr[p0 + q0 + i] = buf[j, i] + a
        else:
            for j in range(o1 - o0):
                yr = y[n, c0 + o0 + j]
                a = add[j]
                for q in range(q0, min(q0 + T, rows)):
                    yr[p0 + q] = tmp[t0 + q, o0 + j] + a


@njit(cache=True, nogil=True)
def _scatter_unit(tmp, bias, has_bias, y, u, G, P, blocks):
    """Unit ``u = (g * N + n) * blocks + b``: channels ``b*16 .. b*16+15`` of group ``g``, image ``n``."""
    N, O = y.shape[0], y.shape[1]
    Og = O // G
    gn, b = u // blocks, u % blocks
    o0 = b * SCATTER_CHANNELS
    _scatter_tile(tmp, gn * P, P, bias, has_bias, y, gn % N, (gn // N) * Og, o0, min(o0 + SCATTER_CHANNELS, Og), 0)


@njit(cache=True, nogil=True)
def scatter_nchw(tmp, bias, has_bias, y, G, P, lo, hi):
    """``y[n, g*Og + o, p] = tmp[(g*N + n)*P + p, o] (+ bias[g*Og + o])`` for the units ``lo..hi`` of
    ``G * N * ceil(Og / 16)`` (``y`` is ``[N, O, P]``)."""
    blocks = (y.shape[1] // G + SCATTER_CHANNELS - 1) // SCATTER_CHANNELS
    for u in range(lo, hi):
        _scatter_unit(tmp, bias, has_bias, y, u, G, P, blocks)


@njit(cache=True, nogil=True, parallel=prange_only())
def scatter_nchw_par(tmp, bias, has_bias, y, G, P, lo, hi):
    """``scatter_nchw`` with the units spread over threads."""
    blocks = (y.shape[1] // G + SCATTER_CHANNELS - 1) // SCATTER_CHANNELS
    for u in prange(lo, hi):
        _scatter_unit(tmp, bias, has_bias, y, u, G, P, blocks)


# ---------------------------------------------------------------------------------------------
# blocked: gather + GEMM + scatter per block of output rows, on one thread


@njit(cache=True, nogil=True)
def _conv_block(x, w3, bias, has_bias, y, u, G, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, layout, rows_oh):
    """Block ``u = (g * N + n) * nb + b``: output rows ``b*rows_oh ..`` of image ``n``, group ``g``."""
    N = y.shape[0]
    Og, Kc = w3.shape[1], w3.shape[2]
    nb = (ho + rows_oh - 1) // rows_oh
    gn, b = u // nb, u % nb
    g, n = gn // N, gn % N
    oh0 = b * rows_oh
    oh1 = min(oh0 + rows_oh, ho)
    rows = (oh1 - oh0) * wo
    cols = np.empty((rows, Kc), x.dtype)
    for oh in range(oh0, oh1):
        if layout == LAYOUT_PATCH:
            _patch_rows(x, cols, (oh - oh0) * wo, n, oh, kh, kw, wo)
        elif layout == LAYOUT_NHWC:
            _im2col_rows_nhwc(x, cols, (oh - oh0) * wo, g, n, oh, G, kh, kw, sh, sw, pt, pl, dh, dw, wo)
        else:
            _im2col_rows(x, cols, (oh - oh0) * wo, g, n, oh, G, kh, kw, sh, sw, pt, pl, dh, dw, wo)
    tmp = np.empty((rows, Og), x.dtype)
    offsets = np.zeros(G + 1, np.int64)  # every row in group g
    for q in range(g + 1, G + 1):
        offsets[q] = rows
    grouped_gemm_nt(cols, w3, w3, offsets, np.zeros(0, x.dtype), ACT_NONE, _NO_BLAS, 1, tmp)
    for o0 in range(0, Og, SCATTER_CHANNELS):
        _scatter_tile(tmp, 0, rows, bias, has_bias, y, n, g * Og, o0, min(o0 + SCATTER_CHANNELS, Og), oh0 * wo)


@njit(cache=True, nogil=True)
def conv_blocks(x, w3, bias, has_bias, y, G, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, layout, rows_oh, lo, hi):
    """f32 ``y [N, O, ho*wo]`` for the blocks ``lo..hi`` of ``G * N * ceil(ho / rows_oh)`` (see the
    module docstring). ``layout`` ``LAYOUT_PATCH`` / ``LAYOUT_NCHW``: ``x`` is the NCHW input and ``w3``
    the weight as ``[G, O/G, C/G*kh*kw]``; ``LAYOUT_NHWC``: ``x`` is the input transposed to NHWC
    (``to_nhwc``) and ``w3`` the weight in the matching ``(i, j, c)`` order, ``[G, O/G, kh*kw*C/G]``."""
    for u in range(lo, hi):
        _conv_block(x, w3, bias, has_bias, y, u, G, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, layout, rows_oh)


@njit(cache=True, nogil=True, parallel=prange_only())
def conv_blocks_par(x, w3, bias, has_bias, y, G, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, layout, rows_oh, lo, hi):
    """``conv_blocks`` with the blocks spread over threads."""
    for u in prange(lo, hi):
        _conv_block(x, w3, bias, has_bias, y, u, G, kh, kw, sh, sw, pt, pl, dh, dw, ho, wo, layout, rows_oh)


# ---------------------------------------------------------------------------------------------
# depthwise: direct loops


@njit(cache=True, nogil=True)
def _depthwise_unit(x, w, bias, has_bias, y, u, kh, kw, sh, sw, pt, pl, dh, dw):
    """Unit ``u = n * O + o``: output channel ``o`` (input channel ``o // (O / C)``) of image ``n``.
    Tap by tap (the reference's order for each output), over the output rows and columns whose
    input lies inside the image (computed once per tap); flat unsigned indices keep Numba's
    negative-index checks out of the inner loop, which then vectorizes (4-5x the per-row form
    with bounds checks)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    O, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    n, o = u // O, u % O
    c = o // (O // C)
    yf = y[n, o].reshape(-1)
    xf = x[n, c].reshape(-1)
    b = bias[o] if has_bias else y.dtype.type(0)
    for q in range(ho * wo):
        yf[q] = 0
    for i in range(kh):
        offh = i * dh - pt  # output rows whose input row oh * sh + offh lies in [0, H)
        r0 = 0 if offh >= 0 else (sh - 1 - offh) // sh
        r1 = min(ho, (H - 1 - offh) // sh + 1) if H - 1 - offh >= 0 else 0
        for j in range(kw):
            wv = w[o, 0, i, j]
            off = j * dw - pl  # output columns whose input column ow * sw + off lies in [0, W)
            lo = 0 if off >= 0 else (sw - 1 - off) // sw
            hi = min(wo, (W - 1 - off) // sw + 1) if W - 1 - off >= 0 else 0
            if hi <= lo:
                continue
            m = np.uint64(hi - lo)
            s = np.uint64(sw)
            for oh in range(r0, r1):
                yb = np.uint64(oh * wo + lo)
                xb = np.uint64((oh * sh + offh) * W + lo * sw + off)
                if sw == 1:
                    for q in range(m):
                        yf[yb + q] += wv * xf[xb + q]
                else:
                    for q in range(m):
                        yf[yb + q] += wv * xf[xb + q * s]
    for q in range(ho * wo):
        yf[q] += b


@njit(cache=True, nogil=True)
def depthwise(x, w, bias, has_bias, y, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi):
    """Depthwise ``y [N, O, ho, wo]`` (groups = C, ``w [O, 1, kh, kw]``) for the units ``lo <= n * O + o < hi``."""
    for u in range(lo, hi):
        _depthwise_unit(x, w, bias, has_bias, y, u, kh, kw, sh, sw, pt, pl, dh, dw)


@njit(cache=True, nogil=True, parallel=prange_only())
def depthwise_par(x, w, bias, has_bias, y, kh, kw, sh, sw, pt, pl, dh, dw, lo, hi):
    """``depthwise`` with the units spread over threads."""
    for u in prange(lo, hi):
        _depthwise_unit(x, w, bias, has_bias, y, u, kh, kw, sh, sw, pt, pl, dh, dw)
