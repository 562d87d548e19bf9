"""Matrix-product kernels: the f32 "rows times weight^T" kernel behind ``sc.linear``,
``sc.grouped_matmul`` and ``sc.moe_gated_grouped_matmul`` (a GEMV at one row), and an integer
batched matmul.

The f32 kernel multiplies row groups by per-group weights (``w`` ``[G, N, K]``, the Hugging Face
``[out, in]`` layout per group; ``sc.linear`` is one group). Work is cut into items of
``ITEM_COLS`` weight rows of one group; items are dealt to threads in contiguous runs of
roughly equal cost (rows x weight rows), so each weight row is read from memory once per call,
whatever the number of rows, and a group with no rows costs nothing (llama.cpp's
``mul_mat_id``). Inside an item, two kernels, by the rows of the group:

**Dot-product tiles** (fewer than ``PANEL_MIN_ROWS`` rows: decode, small experts). For each 4
weight rows, register tiles of 6 (or 4, or 1) input rows x 4 weight rows go down the rows; a
tile shares every load between its accumulators, and the vectorizer turns each accumulator into
a SIMD reduction along K (``reassoc``). No packing, so one row (the GEMV) streams the weight once
at memory bandwidth. With many rows the tiles stop at 55-70% of the FMA peak: every tile
streams one operand from L2 (4 vectors per 24 FMAs, in 4 strided streams) and ends in 16-24
horizontal sums.

**Outer-product panels** (``PANEL_MIN_ROWS`` rows and more: prefill). Blocking:

* the group's rows are packed once per call, transposed, into panels of ``PANEL_ROWS`` = 32
  rows: ``xt[p, k, :]`` is input k of the panel's rows, two 16-float vectors (128 B per k);
* register block (``_panel_tile``, 16 accumulators of the 32 zmm registers): 32 panel rows x 8
  weight rows. Per k it loads the two panel vectors and broadcasts each of the 8 weights
  ``w[g, n + j, k]``: 16 FMAs for 2 vector + 8 scalar loads, and no reduction at the end;
* cache blocks: for each panel (32 x K floats, 128 KiB at K = 1024, stays in L2), the item's 64
  weight rows are swept 8 at a time (8 x K floats, in L1/L2 while the 8-row tile runs); a cache
  line of a weight row serves 16 consecutive k. K is not blocked: the panel streams from L2 as
  one sequential stream, 2 lines per 16 FMAs, which keeps the FMAs ~95% busy;
* the tile's sums go to ``out`` (+ bias, or the gated epilogue) once, a 32 x 8 transpose.

Python loops cannot express this kernel (its vectors run across k iterations, which the
vectorizer cannot interleave), so ``_panel_tile`` emits the loop as LLVM IR (a Numba intrinsic).
Without AVX-512 the same blocking runs on 8-float vectors: 16 rows x 4 weight rows.

Measured on 2 Zen 5 cores (AVX-512), 128 rows x [2816, 1024] / [1024, 2816] weights, GFLOP/s:
panels 430-450 / 430-445, the former 4x4 tiles ~310 / ~250 (OpenBLAS sgemm: ~345 / ~350 at
this shape, ~470 at 2048^3, its peak). Groups of ``BLAS_MIN_ROWS`` rows or more are left to BLAS.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import binding as _llvm
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core import config as _numba_config
from numba.core.extending import intrinsic

from .common import TILE_ROW_COST, bound, group_items, num_threads, offsets_partition, split_by_cost
from .numerics import gelu_f32, sigmoid_f32, tanh_f32

#: rows (of one group) from which ``np.matmul`` (BLAS sgemm) is used instead of the tile kernel.
#: Measured on a 2-core Zen 5 (AVX-512) with OpenBLAS, f32 weights [2816, 1024] / [1024, 2816]:
#: tiles 270 / 220 GFLOP/s at 4 rows, 295 / 250 at 16, 320 / 250 at 64, 325 / 250 at 128;
#: OpenBLAS 32 / 32, 110 / 105, 275 / 255, 340 / 340 (its few-row path is single-threaded).
#: In isolation they cross at 64-96 rows. Inside a compiled model, though, OpenBLAS's worker
#: threads keep spinning after each call and starve the Numba kernels that follow (a fused
#: silu*mul went from ~20 us to ~5 ms). Whole SwiGLU MLP (1024x2816) compiled, median ms:
#: BLAS from 64 rows: 16.0 at 128 tokens; tiles only: 8.1 at 128, 16.0 at 256, 37.6 at 512;
#: BLAS from 256: 20.0 at 256, 30.5 at 512, 51 at 1024 (tiles 75). So BLAS only from 512 rows.
#: (Those tile figures predate the panel kernel: 420-460 GFLOP/s from 32 to 256 rows, 380-425
#: from 512 to 2048, where OpenBLAS alone runs 440-480.)
BLAS_MIN_ROWS = 512
#: weight rows per work item (a multiple of the 4-row tile and of PANEL_COLS); 64 measured ~15%
#: faster than 16 at 16 rows, equal for the GEMV; 32..128 equal for the panels
ITEM_COLS = 64
#: multiply-adds below which a product runs on the calling thread
SERIAL_WORK = 1 << 16


def _target_has_avx512() -> bool:
    """Whether Numba compiles for AVX-512 (32 vector registers of 16 floats): the host's
    features, unless NUMBA_CPU_FEATURES (or NUMBA_CPU_NAME=generic) names others, as Numba does."""
    features = _numba_config.CPU_FEATURES
    if features is None:
        return bool(_llvm.get_host_cpu_features().get("avx512f", False))
    return "+avx512f" in features


#: floats per vector of the panel kernel: 16 with AVX-512, else 8 (AVX2: 16 registers, so the
#: panel is 2 x 8 rows by 4 weight rows, 8 accumulators)
VEC = 16 if _target_has_avx512() else 8
#: input rows per packed panel (two vectors) and weight rows per micro-tile: 2 x PANEL_COLS
#: accumulators + 2 panel vectors + 1 broadcast fit in the vector registers
PANEL_ROWS = 2 * VEC
PANEL_COLS = 8 if VEC == 16 else 4
#: rows that make a panel worth running (3/4 full): a group of fewer rows, or the last rows of a
#: group that would fill less of a last panel, go to the dot-product tiles. Measured with the
#: 6x4 tiles (AVX-512): equal at 24 rows, panels 5-20% ahead at 28 and 30-60% at 32.
PANEL_MIN_ROWS = 3 * PANEL_ROWS // 4

# activation codes of the gated epilogue (sc.moe_gated_grouped_matmul)
ACT_NONE, ACT_SILU, ACT_GELU, ACT_GELU_TANH, ACT_RELU = 0, 1, 2, 3, 4
ACTIVATIONS = {"silu": ACT_SILU, "gelu": ACT_GELU, "gelu_tanh": ACT_GELU_TANH, "relu": ACT_RELU}


def prange_only() -> dict:
    """Numba ``parallel=`` options: only explicit ``prange`` loops run on threads. (With plain
    ``parallel=True`` every array expression, ``np.zeros`` or slice assignment in a kernel becomes a
    parallel region of its own: thread start-ups on tiny arrays, milliseconds on a loaded machine.)"""
    return {"prange": True, "comprehension": False, "reduction": False, "inplace_binop": False,
            "setitem": False, "numpy": False, "stencil": False, "fusion": False}


# reassociation lets the vectorizer split each dot product into SIMD lanes; no nnan/ninf, so
# infinities and NaN propagate as the reference's do
FAST = {"reassoc", "contract", "nsz"}

_NO_BIAS = np.zeros(0, np.float32)

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


@njit(fastmath=FAST, cache=True)
def activation(v, code):
    """The gated epilogue's activation of one f32 value (formulas of the elementwise references)."""
    if code == ACT_SILU:
        e = math.exp(-abs(v))  # the reference's stable sigmoid
        s = 1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e)
        return np.float32(v * s)
    if code == ACT_GELU:
        return np.float32(0.5 * v * (1.0 + math.erf(np.float64(v) * _INV_SQRT2)))
    if code == ACT_GELU_TANH:
        return np.float32(0.5 * v * (1.0 + math.tanh(_SQRT_2_OVER_PI * (v + 0.044715 * v * v * v))))
    if code == ACT_RELU:
        return v if v > 0 else np.float32(0.0)
    return v


# ---------------------------------------------------------------------------------------------
# dot-product tiles (few rows)

@njit(fastmath=FAST, cache=True)
def _tile6x4(x, r, w, g, n, K):
    """Dot products of x rows r..r+5 with w[g] rows n..n+3 (24 values, row-major): 24 accumulators
    and 4 + 1 loaded vectors fill the 32 AVX-512 registers."""
    z = np.float32(0.0)
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = c0 = c1 = c2 = c3 = z
    d0 = d1 = d2 = d3 = e0 = e1 = e2 = e3 = f0 = f1 = f2 = f3 = z
    for k in range(K):
        w0 = w[g, n, k]
        w1 = w[g, n + 1, k]
        w2 = w[g, n + 2, k]
        w3 = w[g, n + 3, k]
        p = x[r, k]
        a0 += p * w0
        a1 += p * w1
        a2 += p * w2
        a3 += p * w3
        p = x[r + 1, k]
        b0 += p * w0
        b1 += p * w1
        b2 += p * w2
        b3 += p * w3
        p = x[r + 2, k]
        c0 += p * w0
        c1 += p * w1
        c2 += p * w2
        c3 += p * w3
        p = x[r + 3, k]
        d0 += p * w0
        d1 += p * w1
        d2 += p * w2
        d3 += p * w3
        p = x[r + 4, k]
        e0 += p * w0
        e1 += p * w1
        e2 += p * w2
        e3 += p * w3
        p = x[r + 5, k]
        f0 += p * w0
        f1 += p * w1
        f2 += p * w2
        f3 += p * w3
    return (a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3, e0, e1, e2, e3, f0, f1, f2, f3)


@njit(fastmath=FAST, cache=True)
def _tile4x4(x, r, w, g, n, K):
    """Dot products of x rows r..r+3 with w[g] rows n..n+3 (16 values, row-major)."""
    z = np.float32(0.0)
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = c0 = c1 = c2 = c3 = d0 = d1 = d2 = d3 = z
    for k in range(K):
        w0 = w[g, n, k]
        w1 = w[g, n + 1, k]
        w2 = w[g, n + 2, k]
        w3 = w[g, n + 3, k]
        xa = x[r, k]
        xb = x[r + 1, k]
        xc = x[r + 2, k]
        xd = x[r + 3, k]
        a0 += xa * w0
        a1 += xa * w1
        a2 += xa * w2
        a3 += xa * w3
        b0 += xb * w0
        b1 += xb * w1
        b2 += xb * w2
        b3 += xb * w3
        c0 += xc * w0
        c1 += xc * w1
        c2 += xc * w2
        c3 += xc * w3
        d0 += xd * w0
        d1 += xd * w1
        d2 += xd * w2
        d3 += xd * w3
    return (a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3)


@njit(fastmath=FAST, cache=True)
def _tile1x4(x, r, w, g, n, K):
    """Dot products of x row r with w[g] rows n..n+3: the GEMV step (x is read once per 4 rows)."""
    z = np.float32(0.0)
    a0 = a1 = a2 = a3 = z
    for k in range(K):
        xa = x[r, k]
        a0 += xa * w[g, n, k]
        a1 += xa * w[g, n + 1, k]
        a2 += xa * w[g, n + 2, k]
        a3 += xa * w[g, n + 3, k]
    return (a0, a1, a2, a3)


@njit(fastmath=FAST, cache=True)
def _dot(x, r, w, g, n, K):
    acc = np.float32(0.0)
    for k in range(K):
        acc += x[r, k] * w[g, n, k]
    return acc


@njit(fastmath=FAST, cache=True)
def _run_item(x, w, r0, r1, g, n0, n1, bias, out):
    """``out[r, n] = x[r] . w[g, n] (+ bias[n])`` for rows r0..r1 of x and n0..n1 of w[g]: for each
    4 weight rows (kept in L1), the 6- and 4-row tiles down the rows, then one row at a time."""
    K = x.shape[1]
    has_bias = bias.size > 0
    n = n0
    while n + 4 <= n1:
        z = np.float32(0.0)
        b = (bias[n], bias[n + 1], bias[n + 2], bias[n + 3]) if has_bias else (z, z, z, z)
        r = r0
        while r + 6 <= r1 and r + 8 != r1:  # 8 rows as 4 + 4, not 6 + 1 + 1
            t6 = _tile6x4(x, r, w, g, n, K)
            for i in range(6):
                for j in range(4):
                    out[r + i, n + j] = t6[4 * i + j] + b[j]
            r += 6
        while r + 4 <= r1:
            t = _tile4x4(x, r, w, g, n, K)
            for i in range(4):
                for j in range(4):
                    out[r + i, n + j] = t[4 * i + j] + b[j]
            r += 4
        while r < r1:
            t1 = _tile1x4(x, r, w, g, n, K)
            for j in range(4):
                out[r, n + j] = t1[j] + b[j]
            r += 1
        n += 4
    while n < n1:
        b1 = bias[n] if has_bias else np.float32(0.0)
        for r in range(r0, r1):
            out[r, n] = _dot(x, r, w, g, n, K) + b1
        n += 1


@njit(fastmath=FAST, cache=True)
def _run_item_gated(x, w, w2, r0, r1, g, n0, n1, act, out):
    """``out[r, n] = act(x[r] . w[g, n]) * (x[r] . w2[g, n])`` for rows r0..r1, n0..n1."""
    K = x.shape[1]
    n = n0
    while n + 4 <= n1:
        r = r0
        while r + 6 <= r1 and r + 8 != r1:
            t6 = _tile6x4(x, r, w, g, n, K)
            u6 = _tile6x4(x, r, w2, g, n, K)
            for i in range(6):
                for j in range(4):
                    out[r + i, n + j] = activation(t6[4 * i + j], act) * u6[4 * i + j]
            r += 6
        while r + 4 <= r1:
            t = _tile4x4(x, r, w, g, n, K)
            u = _tile4x4(x, r, w2, g, n, K)
            for i in range(4):
                for j in range(4):
                    out[r + i, n + j] = activation(t[4 * i + j], act) * u[4 * i + j]
            r += 4
        while r < r1:
            t1 = _tile1x4(x, r, w, g, n, K)
            u1 = _tile1x4(x, r, w2, g, n, K)
            for j in range(4):
                out[r, n + j] = activation(t1[j], act) * u1[j]
            r += 1
        n += 4
    while n < n1:
        for r in range(r0, r1):
            out[r, n] = activation(_dot(x, r, w, g, n, K), act) * _dot(x, r, w2, g, n, K)
        n += 1


# ---------------------------------------------------------------------------------------------
# outer-product panels (many rows)

def _no_unroll(builder, branch):
    """Marks ``branch`` (a loop's back edge) ``llvm.loop.unroll.disable``: unrolled, the loop's
    loads are hoisted ahead of the FMAs and the accumulators spill."""
    module = builder.module
    flag = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
    loop_id = module.add_metadata([flag, flag])
    loop_id.operands = (loop_id, flag)  # a loop id names itself first
    branch.set_metadata("llvm.loop", loop_id)


@intrinsic
def _panel_tile(typingctx, xt, p, k0, k1, w, g, n, nn, c):
    """``c[j, l] = sum(w[g, n + j, k] * xt[p, k, l] for k in k0..k1)`` for j < PANEL_COLS and
    l < PANEL_ROWS (rows past ``n + nn - 1`` repeat that row). ``w``'s last axis must be
    contiguous; ``xt`` and ``c`` are C-contiguous.

    The loop, in LLVM IR: per k, load the panel's two vectors ``xt[p, k, :]``, then for each of
    the PANEL_COLS weight rows broadcast ``w[g, n + j, k]`` and FMA it into the row's two
    accumulators, which stay in registers (phi nodes) until the loop ends."""
    f32 = types.float32
    if not (isinstance(xt, types.Array) and xt.dtype == f32 and xt.ndim == 3 and xt.layout == "C"
            and isinstance(w, types.Array) and w.dtype == f32 and w.ndim == 3
            and isinstance(c, types.Array) and c.dtype == f32 and c.ndim == 2 and c.layout == "C"):
        return None
    sig = types.void(xt, p, k0, k1, w, g, n, nn, c)

    def codegen(context, builder, sig, args):
        xt_ty, w_ty, c_ty = sig.args[0], sig.args[4], sig.args[8]
        xt_v, p_v, k0_v, k1_v, w_v, g_v, n_v, nn_v, c_v = args
        i64, i32 = ir.IntType(64), ir.IntType(32)
        vec = ir.VectorType(ir.FloatType(), VEC)
        vec_ptr = vec.as_pointer()
        nv = PANEL_ROWS // VEC

        def const(v):
            return ir.Constant(i64, v)

        def item(ty, ary, idx):
            return cgutils.get_item_pointer(context, builder, ty, context.make_array(ty)(context, builder, ary),
                                            idx, wraparound=False)

        x0 = item(xt_ty, xt_v, [p_v, k0_v, const(0)])
        last = builder.sub(builder.add(n_v, nn_v), const(1))
        wrow = []
        for j in range(PANEL_COLS):
            nj = builder.add(n_v, const(j))
            wrow.append(item(w_ty, w_v, [g_v, builder.select(builder.icmp_signed("<", nj, last), nj, last), k0_v]))
        count = builder.sub(k1_v, k0_v)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{VEC}f32")
        undef = ir.Constant(vec, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, VEC), [0] * VEC)
        zero = ir.Constant(vec, [0.0] * VEC)

        entry = builder.basic_block
        body = builder.append_basic_block("panel.body")
        done = builder.append_basic_block("panel.done")
        builder.cbranch(builder.icmp_signed(">", count, const(0)), body, done)
        builder.position_at_end(body)
        k = builder.phi(i64)
        acc = [[builder.phi(vec) for _ in range(nv)] for _ in range(PANEL_COLS)]
        xk = builder.gep(x0, [builder.mul(k, const(PANEL_ROWS))])
        xv = [builder.load(builder.bitcast(builder.gep(xk, [const(VEC * q)]), vec_ptr), align=4) for q in range(nv)]
        new = []
        for j in range(PANEL_COLS):
            s = builder.load(builder.gep(wrow[j], [k]), align=4)
            b = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat)
            new.append([builder.call(fma, [xv[q], b, acc[j][q]]) for q in range(nv)])
        k_next = builder.add(k, const(1))
        _no_unroll(builder, builder.cbranch(builder.icmp_signed("<", k_next, count), body, done))
        k.add_incoming(const(0), entry)
        k.add_incoming(k_next, body)
        for j in range(PANEL_COLS):
            for q in range(nv):
                acc[j][q].add_incoming(zero, entry)
                acc[j][q].add_incoming(new[j][q], body)

        builder.position_at_end(done)
        res = [[builder.phi(vec) for _ in range(nv)] for _ in range(PANEL_COLS)]
        for j in range(PANEL_COLS):
            cj = item(c_ty, c_v, [const(j), const(0)])
            for q in range(nv):
                res[j][q].add_incoming(zero, entry)
                res[j][q].add_incoming(new[j][q], body)
                builder.store(res[j][q], builder.bitcast(builder.gep(cj, [const(VEC * q)]), vec_ptr), align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(fastmath=FAST, cache=True)
def _pack_panel(x, r0, cnt, xt, p):
    """``xt[p, k, l] = x[r0 + l, k]`` for l < cnt, 0 for cnt <= l < PANEL_ROWS. Eight rows at a
    time: they stay in L1 while 16 k are read from each, even when rows of 4 KiB alias."""
    K = x.shape[1]
    for lb in range(0, PANEL_ROWS, 8):
        if lb + 8 <= cnt:
            for k in range(K):
                for i in range(8):
                    xt[p, k, lb + i] = x[r0 + lb + i, k]
        else:
            for k in range(K):
                for i in range(8):
                    xt[p, k, lb + i] = x[r0 + lb + i, k] if lb + i < cnt else np.float32(0.0)


@njit(fastmath=FAST, cache=True)
def _run_item_panels(xt, p0, p1, r0, r1, w, w2, g, n0, n1, bias, act, out):
    """``out[r, n]`` (+ bias, or the gated form) for rows r0..r1 of group g, packed in panels
    p0..p1, and its weight rows n0..n1: for each panel, the weight rows PANEL_COLS at a time."""
    K = w.shape[2]
    has_bias = bias.size > 0
    c = np.empty((PANEL_COLS, PANEL_ROWS), np.float32)  # a tile's sums: weight row j, panel row i
    c2 = np.empty((PANEL_COLS, PANEL_ROWS), np.float32)
    for p in range(p0, p1):
        r = r0 + (p - p0) * PANEL_ROWS
        cnt = min(PANEL_ROWS, r1 - r)
        for n in range(n0, n1, PANEL_COLS):
            nn = min(PANEL_COLS, n1 - n)
            _panel_tile(xt, p, 0, K, w, g, n, nn, c)
            if act != ACT_NONE:
                _panel_tile(xt, p, 0, K, w2, g, n, nn, c2)
                for i in range(cnt):
                    for j in range(nn):
                        out[r + i, n + j] = activation(c[j, i], act) * c2[j, i]
            elif has_bias:
                for i in range(cnt):
                    for j in range(nn):
                        out[r + i, n + j] = c[j, i] + bias[n + j]
            else:
                for i in range(cnt):
                    for j in range(nn):
                        out[r + i, n + j] = c[j, i]


# ---------------------------------------------------------------------------------------------
# work items and threads

@njit(fastmath=FAST, cache=True)
def _run_items(x, xt, panel_first, w, w2, offsets, bias, act, item_group, item_block, lo, hi, out):
    """Work items lo..hi: (group, block of ITEM_COLS weight rows) each. Groups with panels
    (``panel_first[g] < panel_first[g + 1]``) run the panel kernel, the others the tiles."""
    N = w.shape[1]
    for it in range(lo, hi):
        g = item_group[it]
        n0 = item_block[it] * ITEM_COLS
        n1 = min(n0 + ITEM_COLS, N)
        r0, r1 = offsets[g], offsets[g + 1]
        if panel_first[g] < panel_first[g + 1]:
            # the panels; then the tiles take the group's last rows if they fill less than
            # PANEL_MIN_ROWS of a panel
            rp = min(r1, r0 + (panel_first[g + 1] - panel_first[g]) * PANEL_ROWS)
            _run_item_panels(xt, panel_first[g], panel_first[g + 1], r0, rp, w, w2, g, n0, n1, bias, act, out)
            r0 = rp
        if r0 == r1:
            continue
        if act != ACT_NONE:
            _run_item_gated(x, w, w2, r0, r1, g, n0, n1, act, out)
        else:
            _run_item(x, w, r0, r1, g, n0, n1, bias, out)


@njit(parallel=prange_only(), fastmath=FAST, cache=True)
def grouped_gemm_nt(x, w, w2, offsets, bias, act, blas_min_rows, threads, out):
    """``out[r] = x[r] @ w[g].T`` for the rows ``r`` in ``offsets[g]:offsets[g+1]`` (f32).

    ``act != ACT_NONE``: ``out[r] = act(x[r] @ w[g].T) * (x[r] @ w2[g].T)`` (the gated expert half);
    otherwise ``w2`` is ignored and ``bias`` (``[N]`` or empty) is added. Groups with at least
    ``blas_min_rows`` rows are skipped (the caller gives them to BLAS); ``threads`` is the number of
    contiguous item runs (Numba's thread count). Returns 0, or -1 when
    ``offsets`` do not rise from 0 to the row count (nothing is written then).
    """
    M, K = x.shape
    G, N = w.shape[0], w.shape[1]
    if not offsets_partition(offsets, M):
        return -1
    blocks = (N + ITEM_COLS - 1) // ITEM_COLS
    # the rows of groups with PANEL_MIN_ROWS rows or more, packed into transposed panels (the
    # panel kernel reads the weight rows contiguously: otherwise the tiles take every group)
    panel_min = PANEL_MIN_ROWS
    if K > 1 and (w.strides[2] != 4 or (act != ACT_NONE and w2.strides[2] != 4)):
        panel_min = blas_min_rows
    # work items (group, weight-row block) with their cumulative cost; groups for BLAS have none
    item_group, item_block, cost_end, total = group_items(offsets, blocks, blas_min_rows, panel_min)
    n_items = item_group.size
    panel_first = np.zeros(G + 1, np.int64)
    for g in range(G):
        rows = offsets[g + 1] - offsets[g]
        panels = 0
        if panel_min <= rows < blas_min_rows:
            panels = rows // PANEL_ROWS + (rows % PANEL_ROWS >= panel_min)
        panel_first[g + 1] = panel_first[g] + panels
    xt = np.empty((panel_first[G], K, PANEL_ROWS), np.float32)
    for g in range(G):
        for p in range(panel_first[g], panel_first[g + 1]):
            r = offsets[g] + (p - panel_first[g]) * PANEL_ROWS
            _pack_panel(x, r, min(PANEL_ROWS, offsets[g + 1] - r), xt, p)
    # each thread takes a contiguous run of items of about total / threads cost; small products
    # stay on the calling thread (a parallel region costs more than they do)
    if total * ITEM_COLS * K < SERIAL_WORK * TILE_ROW_COST:  # total: TILE_ROW_COST per row
        threads = 1
    threads = max(1, min(threads, n_items))
    if threads == 1:
        _run_items(x, xt, panel_first, w, w2, offsets, bias, act, item_group, item_block, 0, n_items, out)
        return 0
    first = split_by_cost(cost_end, total, threads)
    for th in prange(threads):
        _run_items(x, xt, panel_first, w, w2, offsets, bias, act, item_group, item_block, first[th],
                   first[th + 1], out)
    return 0


# ---------------------------------------------------------------------------------------------
# Python entry points (thin: called once per op per step)

def linear_f32(x, w, bias, out):
    """``out = x @ w.T (+ bias)`` for f32 ``x [M, K]``, ``w [N, K]``, ``bias [N]`` or None, ``out [M, N]``."""
    M = x.shape[0]
    if M == 0:
        return
    if M >= BLAS_MIN_ROWS:
        np.matmul(x, w.T, out=out)
        if bias is not None:
            np.add(out, bias, out=out)
        return
    w3 = w.reshape((1,) + w.shape)
    if _one_item(M, w):  # one work item on this thread (the MoE router):
        # what grouped_gemm_nt would run, without its item lists (8 x 1024, warm: 2.3 -> 1.2 us)
        _run_item(x, w3, 0, M, 0, 0, w.shape[0], _NO_BIAS if bias is None else bias, out)
        return
    grouped_gemm_nt(x, w3, w3, np.array([0, M], np.int64), _NO_BIAS if bias is None else bias, ACT_NONE,
                    BLAS_MIN_ROWS, num_threads(), out)


def _one_item(M: int, w) -> bool:
    """Does ``linear_f32`` run ``M`` rows times ``w`` as one work item on the calling thread?"""
    return 0 < M < BLAS_MIN_ROWS and M * w.shape[0] * w.shape[1] < SERIAL_WORK


def linear_f32_call(x, w, bias, out):
    """``linear_f32(x, w, bias, out)`` as a no-argument call for arrays fixed once (a prebound
    step): one work item (the MoE router) calls its compiled entry directly."""
    M = x.shape[0]
    if _one_item(M, w):
        return bound(_run_item, x, w.reshape((1,) + w.shape), 0, M, 0, 0, w.shape[0],
                     _NO_BIAS if bias is None else bias, out)
    return bound(linear_f32, x, w, bias, out)


def grouped_f32(x, w, w2, offsets, act, out, scratch=None) -> bool:
    """``sc.grouped_matmul`` (``act`` = ACT_NONE) or the gated form on f32 arrays; False when
    ``offsets`` are not a valid row partition (nothing written).

    The gated form runs as a gate pass, an up pass, then the epilogue ``act(gate) * up``:
    streaming one weight matrix at a time measured faster than interleaving gate and up rows per
    tile (1 and 128 tokens), at every row count (the interleaved form had been kept from
    ``BLAS_MIN_ROWS`` rows on). Groups of ``BLAS_MIN_ROWS`` rows or more go to BLAS in both passes.
    ``scratch``: a caller-kept f32 buffer of at least ``out.size`` elements for the up rows, so
    no per-call allocation and its page faults."""
    gated = w2 is not None and act != ACT_NONE
    threads = num_threads()
    if grouped_gemm_nt(x, w, w, offsets, _NO_BIAS, ACT_NONE, BLAS_MIN_ROWS, threads, out) < 0:
        return False
    up = None
    if gated:
        up = np.empty_like(out) if scratch is None or scratch.size < out.size else \
            scratch[:out.size].reshape(out.shape)
        grouped_gemm_nt(x, w2, w2, offsets, _NO_BIAS, ACT_NONE, BLAS_MIN_ROWS, threads, up)
    if x.shape[0] >= BLAS_MIN_ROWS:
        counts = offsets[1:] - offsets[:-1]
        for g in np.flatnonzero(counts >= BLAS_MIN_ROWS):
            lo, hi = offsets[g], offsets[g + 1]
            np.matmul(x[lo:hi], w[g].T, out=out[lo:hi])
            if gated:
                np.matmul(x[lo:hi], w2[g].T, out=up[lo:hi])
    if gated:
        gated_epilogue(out, up, act)
    return True


@njit(fastmath={"contract"}, cache=True)
def _gated_row(o, u, act):
    n = o.size
    if act == ACT_SILU:
        for c in range(n):
            v = o[c]
            o[c] = v * sigmoid_f32(v) * u[c]
    elif act == ACT_GELU:
        for c in range(n):
            o[c] = gelu_f32(o[c]) * u[c]
    elif act == ACT_GELU_TANH:
        for c in range(n):
            v = o[c]
            t = tanh_f32(np.float32(0.7978845608028654) * (v + np.float32(0.044715) * v * v * v))
            o[c] = np.float32(0.5) * v * (np.float32(1.0) + t) * u[c]
    else:
        for c in range(n):
            o[c] = activation(o[c], act) * u[c]


@njit(cache=True)
def gated_rows(out, up, r0, r1, c0, c1, act):
    """``out[r, c] = act(out[r, c]) * up[r, c]`` over rows r0..r1, columns c0..c1: the branch-free
    f32 activations of ``numerics`` (within 2 ulp of the references), one loop per activation
    over contiguous row slices so each vectorizes."""
    for r in range(r0, r1):
        _gated_row(out[r, c0:c1], up[r, c0:c1], act)


@njit(parallel=prange_only(), cache=True)
def gated_epilogue(gate, up, act):
    """``gate = act(gate) * up`` in place (after the gate and up passes of the f32 gated grouped
    matmul), rows in parallel, each row with the vectorizing loops of ``gated_rows``."""
    R, N = gate.shape
    for r in prange(R):
        _gated_row(gate[r], up[r], act)


# ---------------------------------------------------------------------------------------------
# integers: int64 accumulation, wrapping to the operand dtype (as the reference)

@njit(cache=True)
def matmul_i64(a, b, out):
    """``out[i] = a[i] @ b[i]`` for int64 ``a [B, M, K]``, ``b [B, K, N]``, ``out [B, M, N]``."""
    B, M, K = a.shape
    N = b.shape[2]
    for bm in range(B * M):
        i = bm // M
        m = bm % M
        for n in range(N):
            out[i, m, n] = 0
        for k in range(K):
            amk = a[i, m, k]
            for n in range(N):
                out[i, m, n] += amk * b[i, k, n]
