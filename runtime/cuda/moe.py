"""CUDA MoE kernels: the dispatch (stable counting sort by expert), the permute (row gather),
the grouped expert matmuls (a GEMV for few rows per expert, a shared-memory tiled GEMM for many,
both optionally with the gated ``act(gate) * up`` epilogue), and the weighted combine.

**Dispatch** (``make_dispatch``): one block. The histogram is counted with shared-memory
atomic adds (integers: order-independent), thread 0 prefix-sums it into ``offsets``, then the
placement is the stable sort by construction: expert ``e`` is owned by thread ``e % B``, which
alone writes its experts' pairs; the ids are staged through shared memory ``B`` at a time and
each owner walks them in flat order, writing each pair at its expert's next position.
Each thread reads all ``T*k`` staged ids (shared memory): 1024 at 128 tokens and top-8, a
short loop; a long prefill pays ``T*k`` iterations in one block (not measured on a device yet).

**Grouped matmuls** (``make_grouped_gemv`` / ``make_grouped_gemm``): one launch over all
experts. Blocks are dealt to *non-empty* experts from ``offsets`` on the device (each block scans
the ``E + 1`` offsets, no host round trip), so an expert without rows costs a block that exits.

- GEMV (few rows per expert; decode): a block is ``COLS`` output columns of one expert, ``LANES``
  threads per column striding over K (consecutive threads read consecutive weights: coalesced).
  The expert's rows are taken ``RB`` at a time with ``RB`` accumulators, so at one token each
  active expert's weights are read once. Partial sums are reduced through shared memory (the
  simulator has no warp shuffles; a tree over ``LANES`` values). For q8_0 / q4_0 / int4 weights
  whose K is whole blocks, ``make_grouped_gemv_words`` reads 32-bit words (4 or 8 weights per
  word; 4 words per load and thread where blocks are whole 4-word groups) instead of single
  elements; f32 weights with K % 4 == 0 and bf16 ones with K % 8 == 0 are read 16 bytes at a
  time (``vec``: ``vload.load4``). The geometry is chosen per call (``gemv_geometry``).
- GEMM (many rows): blocks over (column tile, (expert, row tile)); each thread computes a
  ``TM x TN`` register tile; per ``BK`` step the block stages ``BM x BK`` activations and
  ``BN x BK`` weights (dequantized as they are read, ``runtime.cuda.quant``) in shared memory.
  Row tiles beyond CUDA's ``gridDim.y`` limit are strided over by the blocks. The row-tile
  height follows the rows per active expert (``gemm_geometry``): 8 to 64.

The weight is read through a loader (``quant.make_loader``), so one kernel serves float weights
and every quantized format; the gated form reads gate and up weights (possibly of different
formats) against the same staged activations and applies the activation in the epilogue.
Malformed offsets (not rising from 0 to the row count) are reported through the error slot
(code ``BAD_OFFSETS``); rows are clamped to ``[0, M)`` so nothing is read out of bounds.

**Combine** (``invert_order`` + ``combine``): ``inv`` (the inverse permutation, a scratch array)
is built with one compare-and-swap per entry (a duplicate or out-of-range entry is reported);
then one thread per output element sums the token's ``k`` slots in order ``j = 0..k-1`` — each
output element written by one thread, no float atomics: deterministic. Up to
``COMBINE_ONE_BLOCK`` outputs (decode) one block does all three phases in one launch.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import cuda, float32, float64, int32, int64

from . import half
from . import quant as Q
from .launch import kernel, report_error, resident_threads, simulator
from .quant import make_loader, weight_types
from .types import arr, scalar
from .vload import load4, load4_scalar

BAD_ID = 1
BAD_ORDER = 2
BAD_OFFSETS = 3

ACT_NONE, ACT_SILU, ACT_GELU, ACT_GELU_TANH, ACT_RELU = 0, 1, 2, 3, 4
ACTIVATIONS = {"silu": ACT_SILU, "gelu": ACT_GELU, "gelu_tanh": ACT_GELU_TANH, "relu": ACT_RELU}

#: threads of the dispatch block (device / simulator)
DISPATCH_BLOCK, SIM_DISPATCH_BLOCK = 256, 8
#: GEMV geometry: threads per column, columns per block, rows per accumulator pass
GEMV = (32, 4, 4)
SIM_GEMV = (2, 8, 2)
#: GEMM geometry: BM, BN, BK, TM, TN (threads: BN/TN x BM/TM)
GEMM = (64, 64, 16, 4, 4)
SIM_GEMM = (4, 4, 4, 2, 2)
#: mean rows per active expert up to which the grouped matmuls use the GEMV
GEMV_MAX_ROWS = 4


#: loads of the weight row each GEMV thread keeps at least, when ``gemv_geometry`` widens
#: (16-byte loads where the weights allow: 32 bytes a thread)
GEMV_MIN_LOADS = 2


def gemv_geometry(N: int | None = None, active: int = 1, units: int | None = None, rows: int | None = None) -> tuple:
    """The GEMV geometry for ``N`` output columns of ``active`` experts whose weight rows are
    ``units`` loads long (elements, 32-bit words or 16-byte vectors): ``LANES`` threads per column,
    the smallest power of two from 32 to 256 that gives the launch at least two device-fulls of
    threads (``launch.resident_threads``), as long as each thread keeps ``GEMV_MIN_LOADS``
    loads; ``COLS`` columns per block, 128 threads (256 at 256 lanes); ``RB`` 1 accumulator per
    output where the ``rows`` are at most one per expert (one token), else ``GEMV[2]``. Why: at
    one token a layer is bound by how many loads are in flight. A down projection (1024 columns
    of 2 experts) at 32 lanes is 65k threads, a quarter of what an H200 holds; and per ptxas
    (sm_90) the f32 GEMV uses 70 / 76 registers (plain / gated) with 4 accumulators, 54 / 64 with
    1, which bounds the threads an SM holds (64k registers). A bandwidth argument, not measured
    on a device yet. Without shapes: the default ``GEMV``."""
    if simulator():
        return SIM_GEMV
    if N is None or units is None:
        return GEMV
    target = 2 * resident_threads()
    lanes = 32
    while lanes < 256 and N * max(active, 1) * lanes < target and units >= 2 * lanes * GEMV_MIN_LOADS:
        lanes *= 2
    rb = 1 if rows is not None and rows <= max(active, 1) else GEMV[2]
    return (lanes, max(1, 128 // lanes), rb)


#: GEMM row-tile heights (``BM``) to choose from: the smallest that holds an active expert's
#: mean rows, 64 beyond
GEMM_ROW_TILES = (8, 16, 32, 64)


def gemm_geometry(rows: int | None = None, active: int = 1) -> tuple:
    """The GEMM geometry for ``rows`` rows over ``active`` experts: ``BM`` the smallest of
    ``GEMM_ROW_TILES`` holding the mean rows per active expert, ``TM = BM / 16`` rows per thread
    (at least 1), ``BN``/``BK``/``TN`` as ``GEMM`` (blocks of ``BN/TN x BM/TM`` threads: 128 at
    ``BM`` 8, else 256). Why: a row tile's threads compute all ``BM`` rows whether the expert
    fills them or not, and every row tile reads the expert's weights again. A Qwen3-30B-A3B
    layer at 128 tokens (top-8 of 128 experts, ~8 rows per expert) in 64-row tiles computes 8x
    the useful products; in 8-row tiles about 1.45x (experts with more rows than a tile, the
    tiles rising from 128 to ~185). A work argument, not measured on a device yet. Without
    shapes: ``GEMM``."""
    if simulator():
        return SIM_GEMM
    if rows is None:
        return GEMM
    per = -(-rows // max(active, 1))
    bm = next((b for b in GEMM_ROW_TILES if per <= b), GEMM_ROW_TILES[-1])
    BM, BN, BK, TM, TN = GEMM
    return (bm, BN, BK, max(1, bm // 16), TN)


# ---------------------------------------------------------------------------------------------
# dispatch

@lru_cache(maxsize=None)
def make_dispatch(B: int, ECAP: int):
    """The dispatch kernel for blocks of ``B`` threads and up to ``ECAP`` experts."""

    def moe_dispatch(ids, E, order, offsets, err):
        cnt = cuda.shared.array(ECAP, int32)
        stage = cuda.shared.array(B, int32)
        tid = cuda.threadIdx.x
        n = ids.size
        for e in range(tid, E, B):
            cnt[e] = 0
        cuda.syncthreads()
        # counts: shared-memory atomic adds (integers: the result does not depend on their order)
        for i in range(tid, n, B):
            v = ids[i]
            if v < 0 or v >= E:
                report_error(err, BAD_ID, v)
            else:
                cuda.atomic.add(cnt, v, 1)
        cuda.syncthreads()
        if tid == 0:   # exclusive prefix sum: each expert's first row (the cursors below)
            s = 0
            offsets[0] = 0
            for e in range(E):
                c = cnt[e]
                cnt[e] = s
                s += c
                offsets[e + 1] = s
        cuda.syncthreads()
        # placement in flat order: the ids staged B at a time; each expert's owner thread walks
        # them in order and advances its expert's cursor (no atomics: the stable order)
        for c0 in range(0, n, B):
            i = c0 + tid
            if i < n:
                v = ids[i]
                stage[tid] = v if (v >= 0 and v < E) else -1
            cuda.syncthreads()
            m = min(B, n - c0)
            for j in range(m):
                v = stage[j]
                if v >= 0 and v % B == tid:
                    order[cnt[v]] = c0 + j
                    cnt[v] += 1
            cuda.syncthreads()

    moe_dispatch.__name__ = f"moe_dispatch_b{B}_e{ECAP}"
    return kernel(moe_dispatch)


def dispatch_sig(ids_dtype):
    from numba import types
    return (arr(ids_dtype), types.int64, arr(np.int64), arr(np.int64), arr(np.int64))


# ---------------------------------------------------------------------------------------------
# permute and combine

@kernel
def moe_permute(x, order, top_k, T, H, out, err):
    """``out[p, :] = x[order[p] // top_k, :]`` (elements as unsigned integers of their size)."""
    m = order.size
    total = m * H
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        p = e // H
        h = e - p * H
        o = order[p]
        if o < 0 or o >= T * top_k:
            if h == 0:
                report_error(err, BAD_ORDER, o)
            continue
        out[e] = x[(o // top_k) * H + h]


@kernel
def fill_i64(a, value):
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = value


@kernel
def invert_order(order, m, inv, err):
    """``inv[order[p]] = p``; an entry outside ``[0, m)`` or seen twice is reported."""
    for p in range(cuda.grid(1), m, cuda.gridsize(1)):
        o = order[p]
        if o < 0 or o >= m or cuda.atomic.compare_and_swap(inv[o:o + 1], -1, p) != -1:
            report_error(err, BAD_ORDER, o)


@lru_cache(maxsize=None)
def make_combine(dtype: str, storage: str | None = None, w_storage: str | None = None):
    """The combine kernel accumulating in ``dtype``; ``storage`` / ``w_storage`` "f16"/"bf16" for
    16-bit ``y``/``out`` / ``topk_weights`` (accumulated in float32, rounded once)."""
    element = _combine_element(dtype, storage, w_storage)

    def combine(y, inv, w, T, k, H, out):
        """``out[t, h] = sum_j w[t, j] * y[inv[t*k + j], h]`` in slot order (a missing slot, after
        a reported error, is skipped)."""
        for e in range(cuda.grid(1), T * H, cuda.gridsize(1)):
            out[e] = element(y, inv, w, e, k, H)

    combine.__name__ = _combine_name("moe_combine", dtype, storage, w_storage)
    return kernel(combine)


@lru_cache(maxsize=None)
def _combine_element(dtype: str, storage: str | None, w_storage: str | None):
    """The device function computing output element ``e`` of the combine (``make_combine``)."""
    acc_t = scalar(np.dtype(dtype))
    ld, st = _ld_st(storage)
    ldw = _ld_st(w_storage)[0]

    @cuda.jit(device=True)
    def element(y, inv, w, e, k, H):
        t = e // H
        h = e - t * H
        acc = acc_t(0)
        for j in range(k):
            r = inv[t * k + j]
            if r >= 0:
                acc += ldw(w[t * k + j]) * ld(y[r * H + h])
        return st(acc)
    return element


def _combine_name(base: str, dtype: str, storage, w_storage) -> str:
    return (f"{base}_{dtype}" + (f"_{storage}" if storage in half.HALF else "")
            + (f"_w_{w_storage}" if w_storage in half.HALF else ""))


#: ``T * H`` up to which one block runs the whole combine (``make_combine_one_block``)
COMBINE_ONE_BLOCK = 16384


@lru_cache(maxsize=None)
def make_combine_one_block(dtype: str, storage: str | None = None, w_storage: str | None = None):
    """The combine of few tokens (decode) in one launch of one block: fill ``inv`` with -1,
    invert ``order`` (compare-and-swap; a bad entry reported), then the weighted sums, with a
    block barrier between the phases instead of three launches (each launch is a node of a
    replayed CUDA graph: a few microseconds at one token). Same results as ``make_combine``."""
    element = _combine_element(dtype, storage, w_storage)

    def combine_one_block(y, order, inv, w, T, k, H, out, err):
        tid = cuda.threadIdx.x
        nt = cuda.blockDim.x
        m = T * k
        for i in range(tid, m, nt):
            inv[i] = -1
        cuda.syncthreads()
        for p in range(tid, m, nt):
            o = order[p]
            if o < 0 or o >= m or cuda.atomic.compare_and_swap(inv[o:o + 1], -1, p) != -1:
                report_error(err, BAD_ORDER, o)
        cuda.syncthreads()
        for e in range(tid, T * H, nt):
            out[e] = element(y, inv, w, e, k, H)

    combine_one_block.__name__ = _combine_name("moe_combine_one_block", dtype, storage, w_storage)
    return kernel(combine_one_block)


def combine_one_block_sig(dtype, order_dtype, w_dtype=None):
    from numba import types
    i64 = types.int64
    return (arr(dtype), arr(order_dtype), arr(np.int64), arr(dtype if w_dtype is None else w_dtype), i64, i64, i64,
            arr(dtype), arr(np.int64))


def permute_sig(u, order_dtype):
    from numba import types
    i64 = types.int64
    return (arr(u), arr(order_dtype), i64, i64, i64, arr(u), arr(np.int64))


def invert_sig(order_dtype):
    from numba import types
    return (arr(order_dtype), types.int64, arr(np.int64), arr(np.int64))


def combine_sig(dtype, w_dtype=None):
    from numba import types
    i64 = types.int64
    return (arr(dtype), arr(np.int64), arr(dtype if w_dtype is None else w_dtype), i64, i64, i64, arr(dtype))


def fill_sig():
    from numba import types
    return (arr(np.int64), types.int64)


# ---------------------------------------------------------------------------------------------
# grouped matmuls

@cuda.jit(device=True)
def activate(v, code):
    """The gated epilogue's activation (formulas of the elementwise references)."""
    if code == ACT_SILU:
        e = math.exp(-abs(v))
        return v * (1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e))
    if code == ACT_GELU:
        return 0.5 * v * (1.0 + math.erf(float64(v) * 0.7071067811865476))
    if code == ACT_GELU_TANH:
        return 0.5 * v * (1.0 + math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
    if code == ACT_RELU:
        return 0.0 if v <= 0 else v     # NaN stays NaN, as np.maximum
    return v


@cuda.jit(device=True)
def expert_rows(offsets, e, M):
    """Rows ``[r0, r1)`` of expert ``e``, clamped into ``[0, M]``."""
    r0 = min(max(offsets[e], 0), M)
    r1 = min(max(offsets[e + 1], r0), M)
    return r0, r1


@cuda.jit(device=True)
def locate_tile(offsets, E, M, BM, target, sh, res, tid, NT):
    """The ``target``-th row tile (``BM`` rows) over the experts with rows, in expert order, as
    ``res[0]`` = expert (-1: none) and ``res[1]`` = its tile index. All ``NT`` threads of the block
    call it (a power of two): the tile counts of ``NT`` experts at a time are prefix-summed in
    shared memory ``sh`` (Hillis-Steele), so a block finds its expert in ``log2(NT)`` steps per
    ``NT`` experts instead of a serial walk over the offsets."""
    cuda.syncthreads()   # the block is done with ``res`` and ``sh`` from a previous call
    if tid == 0:
        res[0] = -1
        res[1] = 0
    base = 0
    for c0 in range(0, E, NT):
        g = c0 + tid
        cnt = 0
        if g < E:
            g0, g1 = expert_rows(offsets, g, M)
            cnt = (g1 - g0 + BM - 1) // BM
        sh[tid] = cnt
        cuda.syncthreads()
        s = 1
        while s < NT:
            v = sh[tid - s] if tid >= s else 0
            cuda.syncthreads()
            sh[tid] += v
            cuda.syncthreads()
            s *= 2
        incl = base + sh[tid]
        if cnt > 0 and incl - cnt <= target and target < incl:
            res[0] = g
            res[1] = target - (incl - cnt)
        base += sh[NT - 1]
        cuda.syncthreads()
        if res[0] >= 0 or base > target:
            break
    cuda.syncthreads()


@cuda.jit(device=True)
def check_offsets(offsets, E, M, err):
    """Report offsets that do not rise from 0 to ``M`` (code ``BAD_OFFSETS``, the first bad entry)."""
    bad = -1
    if offsets[0] != 0:
        bad = 0
    else:
        for e in range(E):
            if offsets[e + 1] < offsets[e]:
                bad = e + 1
                break
        if bad < 0 and offsets[E] != M:
            bad = E
    if bad >= 0:
        report_error(err, BAD_OFFSETS, bad)


def _ld_st(storage):
    if storage in half.HALF:
        return half.load(storage), half.store(storage)
    return half.identity, half.identity


def _name(base, kind, G, kind2, G2, act, acc_dtype, geometry, storage=None) -> str:
    """``grouped_gemv_q8_0_silu_q8_0_32x4x4``: weight format(s) (the float dtype: the rows'
    too; quantized: f32 rows), activation, geometry."""
    w = Q.kind_name(kind, G, acc_dtype)
    if act != ACT_NONE:
        act_name = next(n for n, c in ACTIVATIONS.items() if c == act)
        w += f"_{act_name}_{Q.kind_name(kind2, G2, acc_dtype)}"
    return f"{base}_{w}_{'x'.join(map(str, geometry))}" + (f"_{storage}" if storage in half.HALF else "")


@cuda.jit(device=True)
def gemv_block_rows(offsets, E, M, single, scan, res, lane, col, LANES, NTH, err):
    """The rows ``[r0, r1)`` a GEMV block works on and their expert ``e`` (-1: this block has
    none): all ``M`` rows for ``single`` (one block row), else the ``blockIdx.y``-th expert with
    rows (``locate_tile``; the first block also checks ``offsets``)."""
    if single:
        if cuda.blockIdx.y > 0:
            return -1, 0, 0
        return 0, 0, M
    if cuda.blockIdx.x == 0 and cuda.blockIdx.y == 0 and lane == 0 and col == 0:
        check_offsets(offsets, E, M, err)
    locate_tile(offsets, E, M, max(M, 1), cuda.blockIdx.y, scan, res, col * LANES + lane, NTH)
    e = res[0]
    if e < 0:
        return -1, 0, 0
    r0, r1 = expert_rows(offsets, e, M)
    return e, r0, r1


@lru_cache(maxsize=None)
def make_gemv_store(LANES: int, act: int, storage: str | None):
    """The GEMV blocks' epilogue: per row, the ``LANES`` partial sums of each column reduced in
    shared memory, then ``act(gate) * up`` (gated) or ``+ bias``, rounded once to ``storage``."""
    ld, st = _ld_st(storage)
    gated = act != ACT_NONE

    @cuda.jit(device=True)
    def store_rows(sh, sh2, acc, acc2, nr, c0, col, lane, n, N, bias, has_bias, out):
        for i in range(nr):
            sh[col, lane] = acc[i]
            sh2[col, lane] = acc2[i]
            cuda.syncthreads()
            s = LANES // 2
            while s > 0:
                if lane < s:
                    sh[col, lane] += sh[col, lane + s]
                    if gated:
                        sh2[col, lane] += sh2[col, lane + s]
                cuda.syncthreads()
                s //= 2
            if lane == 0 and n < N:
                v = sh[col, 0]
                if gated:
                    v = activate(v, act) * sh2[col, 0]
                elif has_bias:
                    v += ld(bias[n])
                out[(c0 + i) * N + n] = st(v)
            cuda.syncthreads()
    return store_rows


@lru_cache(maxsize=None)
def make_grouped_gemv(kind: int, G: int, kind2: int, G2: int, act: int, acc_dtype: str, geometry: tuple,
                      storage: str | None = None, vec: bool = False):
    """GEMV-style grouped matmul (see the module docstring). ``act`` != ACT_NONE: gated, with the
    up weight of ``kind2``. ``single``: one group of all ``M`` rows (``sc.linear``; no offsets).
    ``storage`` "f16"/"bf16": 16-bit rows, float weights and output (computed in ``acc_dtype``
    float32, each output rounded once). ``vec``: float weights read 16 bytes per thread and load
    (``vload.load4``): 4 f32 weights (f32 rows; K % 4 == 0), or 8 bf16 weights (``storage``
    "bf16"; K % 8 == 0; ``wa``/``va`` then the weights' uint32 view); the caller guarantees
    those and 16-byte aligned weight arrays."""
    if vec and not (kind == kind2 == Q.KIND_FLOAT and acc_dtype == "float32" and storage in (None, "bf16")):
        raise ValueError("the 16-byte GEMV reads f32 weights for f32 rows, or bf16 weights for bf16 rows")
    VEC = vec and storage is None
    VEC16 = vec and storage == "bf16"
    vload = load4 if vec else load4_scalar
    pair = half.bf16_pair
    LANES, COLS, RB = geometry
    NTH = LANES * COLS
    acc_t = scalar(np.dtype(acc_dtype))
    ld, st = _ld_st(storage)
    wel = make_loader(kind, G, storage if kind == Q.KIND_FLOAT else None)
    wel2 = make_loader(kind2, G2, storage if kind2 == Q.KIND_FLOAT else None)
    gated = act != ACT_NONE
    store_rows = make_gemv_store(LANES, act, storage)

    def grouped_gemv(x, wa, wb, wc, va, vb, vc, bias, offsets, out, M, N, K, E, nb, nb2, single, has_bias, err):
        sh = cuda.shared.array((COLS, LANES), acc_t)
        sh2 = cuda.shared.array((COLS, LANES), acc_t)
        scan = cuda.shared.array(NTH, int64)
        res = cuda.shared.array(2, int64)
        acc = cuda.local.array(RB, acc_t)
        acc2 = cuda.local.array(RB, acc_t)
        lane = cuda.threadIdx.x
        col = cuda.threadIdx.y
        n = cuda.blockIdx.x * COLS + col
        e, r0, r1 = gemv_block_rows(offsets, E, M, single, scan, res, lane, col, LANES, NTH, err)
        if e < 0:
            return
        row = e * N + n
        for c0 in range(r0, r1, RB):
            nr = min(RB, r1 - c0)
            for i in range(RB):
                acc[i] = 0
                acc2[i] = 0
            if n < N and VEC:
                base = row * K
                for k in range(lane * 4, K, LANES * 4):
                    w0, w1, w2, w3 = vload(wa, base + k)
                    u0, u1, u2, u3 = w0, w1, w2, w3
                    if gated:
                        u0, u1, u2, u3 = vload(va, base + k)
                    for i in range(RB):
                        if i < nr:
                            xo = (c0 + i) * K + k
                            x0, x1, x2, x3 = x[xo], x[xo + 1], x[xo + 2], x[xo + 3]
                            acc[i] += w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3
                            if gated:
                                acc2[i] += u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3
            elif n < N and VEC16:
                base = row * K
                for k in range(lane * 8, K, LANES * 8):
                    a0, a1, a2, a3 = vload(wa, (base + k) // 2)
                    w0, w1 = pair(a0)
                    w2, w3 = pair(a1)
                    w4, w5 = pair(a2)
                    w6, w7 = pair(a3)
                    u0, u1, u2, u3, u4, u5, u6, u7 = w0, w1, w2, w3, w4, w5, w6, w7
                    if gated:
                        b0, b1, b2, b3 = vload(va, (base + k) // 2)
                        u0, u1 = pair(b0)
                        u2, u3 = pair(b1)
                        u4, u5 = pair(b2)
                        u6, u7 = pair(b3)
                    for i in range(RB):
                        if i < nr:
                            xo = (c0 + i) * K + k
                            x0, x1, x2, x3 = ld(x[xo]), ld(x[xo + 1]), ld(x[xo + 2]), ld(x[xo + 3])
                            x4, x5, x6, x7 = ld(x[xo + 4]), ld(x[xo + 5]), ld(x[xo + 6]), ld(x[xo + 7])
                            acc[i] += (w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3
                                       + w4 * x4 + w5 * x5 + w6 * x6 + w7 * x7)
                            if gated:
                                acc2[i] += (u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3
                                            + u4 * x4 + u5 * x5 + u6 * x6 + u7 * x7)
            elif n < N:
                for k in range(lane, K, LANES):
                    wv = wel(wa, wb, wc, row, k, K, nb)
                    uv = wv
                    if gated:
                        uv = wel2(va, vb, vc, row, k, K, nb2)
                    # constant trip counts with a guard: the accumulators stay in registers
                    for i in range(RB):
                        if i < nr:
                            xv = ld(x[(c0 + i) * K + k])
                            acc[i] += wv * xv
                            if gated:
                                acc2[i] += uv * xv
            store_rows(sh, sh2, acc, acc2, nr, c0, col, lane, n, N, bias, has_bias, out)

    grouped_gemv.__name__ = _name("grouped_gemv", kind, G, kind2, G2, act, acc_dtype, geometry, storage) + \
        ("_v4" if vec else "")
    return kernel(grouped_gemv)


@lru_cache(maxsize=None)
def make_grouped_gemv_words(kind: int, G: int, act: int, geometry: tuple, storage: str | None = None,
                            vec: bool = False):
    """The GEMV for q8_0 / q4_0 / int4 weights whose K is a whole number of blocks, reading the
    packed values 32 bits per thread and load (consecutive threads: consecutive words of a row),
    4 (8-bit) or 8 (4-bit) weights at a time; gate and up of one format. ``vec``: 4 words (16
    bytes, within one block: ``words_per_block`` is a multiple of 4) per thread and load
    (``vload.load4``; the caller guarantees 16-byte aligned ``qs`` arrays). Arguments as
    ``make_grouped_gemv``'s, with ``wa``/``va`` the ``qs`` parts viewed as int32 words
    (``storage`` "f16"/"bf16": 16-bit rows and output)."""
    ld, st = _ld_st(storage)
    LANES, COLS, RB = geometry
    NTH = LANES * COLS
    WPB = Q.words_per_block(kind, G)
    H = G // 2
    eight = kind == Q.KIND_Q8
    minimum = kind == Q.KIND_I4
    gated = act != ACT_NONE
    q8_word, q4_word = Q.q8_word, Q.q4_word
    store_rows = make_gemv_store(LANES, act, storage)
    if vec and WPB % 4:
        raise ValueError(f"16-byte loads need whole 4-word groups per block ({WPB} words per block)")
    VEC = vec
    V = 4 if vec else 1
    vload = load4 if vec else load4_scalar

    def grouped_gemv_words(x, wa, wb, wc, va, vb, vc, bias, offsets, out, M, N, K, E, nb, nb2, single, has_bias,
                           err):
        sh = cuda.shared.array((COLS, LANES), float32)
        sh2 = cuda.shared.array((COLS, LANES), float32)
        scan = cuda.shared.array(NTH, int64)
        res = cuda.shared.array(2, int64)
        acc = cuda.local.array(RB, float32)
        acc2 = cuda.local.array(RB, float32)
        lane = cuda.threadIdx.x
        col = cuda.threadIdx.y
        n = cuda.blockIdx.x * COLS + col
        e, r0, r1 = gemv_block_rows(offsets, E, M, single, scan, res, lane, col, LANES, NTH, err)
        if e < 0:
            return
        row = e * N + n
        units = nb * WPB
        for c0 in range(r0, r1, RB):
            nr = min(RB, r1 - c0)
            for i in range(RB):
                acc[i] = 0
                acc2[i] = 0
            if n < N:
                for ub in range(lane * V, units, LANES * V):
                    b = ub // WPB           # the V words are in one block
                    d = float32(wb[row * nb + b])
                    d2 = d
                    if gated:
                        d2 = float32(vb[row * nb + b])
                    if VEC:
                        wv = vload(wa, row * units + ub)
                        uv = wv
                        if gated:
                            uv = vload(va, row * units + ub)
                    else:
                        wv = (wa[row * units + ub], int32(0), int32(0), int32(0))
                        uv = wv
                        if gated:
                            uv = (va[row * units + ub], int32(0), int32(0), int32(0))
                    for t in range(V):
                        j = ub + t - b * WPB
                        wd = wv[t]
                        ud = uv[t]
                        if eight:
                            k0 = 32 * b + 4 * j
                            w0, w1, w2, w3 = q8_word(wd, d)
                            u0, u1, u2, u3 = w0, w1, w2, w3
                            if gated:
                                u0, u1, u2, u3 = q8_word(ud, d2)
                            for i in range(RB):
                                if i < nr:
                                    xo = (c0 + i) * K + k0
                                    x0, x1, x2, x3 = ld(x[xo]), ld(x[xo + 1]), ld(x[xo + 2]), ld(x[xo + 3])
                                    acc[i] += w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3
                                    if gated:
                                        acc2[i] += u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3
                        else:
                            k0 = G * b + 4 * j
                            m = float32(wc[row * nb + b]) if minimum else float32(0)
                            w0, w1, w2, w3, w4, w5, w6, w7 = q4_word(wd, d, m, minimum)
                            u0, u1, u2, u3, u4, u5, u6, u7 = w0, w1, w2, w3, w4, w5, w6, w7
                            if gated:
                                m2 = float32(vc[row * nb + b]) if minimum else float32(0)
                                u0, u1, u2, u3, u4, u5, u6, u7 = q4_word(ud, d2, m2, minimum)
                            for i in range(RB):
                                if i < nr:
                                    xo = (c0 + i) * K + k0
                                    x0, x1, x2, x3 = ld(x[xo]), ld(x[xo + 1]), ld(x[xo + 2]), ld(x[xo + 3])
                                    x4, x5 = ld(x[xo + H]), ld(x[xo + H + 1])
                                    x6, x7 = ld(x[xo + H + 2]), ld(x[xo + H + 3])
                                    acc[i] += (w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3
                                               + w4 * x4 + w5 * x5 + w6 * x6 + w7 * x7)
                                    if gated:
                                        acc2[i] += (u0 * x0 + u1 * x1 + u2 * x2 + u3 * x3
                                                    + u4 * x4 + u5 * x5 + u6 * x6 + u7 * x7)
            store_rows(sh, sh2, acc, acc2, nr, c0, col, lane, n, N, bias, has_bias, out)

    grouped_gemv_words.__name__ = _name("grouped_gemv_words", kind, G, kind, G, act, "float32", geometry,
                                        storage) + ("_v4" if vec else "")
    return kernel(grouped_gemv_words)


def words_sig(kind: int, offsets_dtype, dtype=np.float32) -> tuple:
    """``grouped_sig`` with the ``qs`` parts as int32 words."""
    sig = list(grouped_sig(kind, kind, dtype, offsets_dtype))
    sig[1] = sig[4] = arr(np.int32)
    return tuple(sig)


@lru_cache(maxsize=None)
def make_grouped_gemm(kind: int, G: int, kind2: int, G2: int, act: int, acc_dtype: str, geometry: tuple,
                      storage: str | None = None):
    """Tiled grouped matmul (see the module docstring); arguments as ``make_grouped_gemv``'s.

    Shared-memory layout (32 banks of 4 bytes): the tiles are staged ``[k, row]`` with
    consecutive threads on consecutive ``k`` (consecutive addresses in global memory), so a
    warp's 16 stores of a row went ``BM`` or ``BN`` words apart, all to one bank at 64 (a 16-way
    conflict); the tiles' rows are one word longer (``BM + 1``, ``BN + 1``), which spreads
    them over the banks (2-way at most). Thread ``tx`` computes the columns ``tx + j * NX``
    (not ``tx * TN + j``): the 16 ``tx`` of a warp read 16 consecutive words of ``Ws`` (no
    conflict; the other half-warp reads the same words) and store 16 consecutive outputs."""
    BM, BN, BK, TM, TN = geometry
    NX, NY = BN // TN, BM // TM
    NT = NX * NY
    XP, WP = BM + 1, BN + 1      # the shared tiles' padded rows (compile-time constants)
    acc_t = scalar(np.dtype(acc_dtype))
    ld, st = _ld_st(storage)
    wel = make_loader(kind, G, storage if kind == Q.KIND_FLOAT else None)
    wel2 = make_loader(kind2, G2, storage if kind2 == Q.KIND_FLOAT else None)
    gated = act != ACT_NONE

    def grouped_gemm(x, wa, wb, wc, va, vb, vc, bias, offsets, out, M, N, K, E, nb, nb2, single, has_bias, err):
        Xs = cuda.shared.array((BK, XP), acc_t)
        Ws = cuda.shared.array((BK, WP), acc_t)
        Us = cuda.shared.array((BK, WP), acc_t)
        scan = cuda.shared.array(NT, int64)
        res = cuda.shared.array(2, int64)
        acc = cuda.local.array((TM, TN), acc_t)
        acc2 = cuda.local.array((TM, TN), acc_t)
        a = cuda.local.array(TM, acc_t)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * NX + tx
        col0 = cuda.blockIdx.x * BN
        if not single and cuda.blockIdx.x == 0 and cuda.blockIdx.y == 0 and tid == 0:
            check_offsets(offsets, E, M, err)
        # row tiles: at most ceil(M / BM), plus one partial tile per expert; blocks stride over them
        ntiles = (M + BM - 1) // BM + (0 if single else E)
        for y0 in range(cuda.blockIdx.y, ntiles, cuda.gridDim.y):
            y = y0
            e = -1
            r0 = 0
            r1 = 0
            if single:
                e = 0
                r0 = y * BM
                r1 = min(r0 + BM, M)
            else:   # the y-th (expert, row tile) over the experts with rows
                locate_tile(offsets, E, M, BM, y, scan, res, tid, NT)
                e = res[0]
                if e >= 0:
                    g0, g1 = expert_rows(offsets, e, M)
                    r0 = g0 + res[1] * BM
                    r1 = min(r0 + BM, g1)
            if e < 0 or r0 >= r1:
                break   # tiles are dealt in order: none further for this block either
            for i in range(TM):
                for j in range(TN):
                    acc[i, j] = 0
                    acc2[i, j] = 0
            for k0 in range(0, K, BK):
                for q in range(tid, BM * BK, NT):
                    m = q // BK
                    kk = q - m * BK
                    r = r0 + m
                    k = k0 + kk
                    Xs[kk, m] = ld(x[r * K + k]) if (r < r1 and k < K) else 0
                for q in range(tid, BN * BK, NT):
                    c = q // BK
                    kk = q - c * BK
                    n = col0 + c
                    k = k0 + kk
                    if n < N and k < K:
                        Ws[kk, c] = wel(wa, wb, wc, e * N + n, k, K, nb)
                        if gated:
                            Us[kk, c] = wel2(va, vb, vc, e * N + n, k, K, nb2)
                    else:
                        Ws[kk, c] = 0
                        if gated:
                            Us[kk, c] = 0
                cuda.syncthreads()
                for kk in range(BK):
                    for i in range(TM):
                        a[i] = Xs[kk, ty * TM + i]
                    for j in range(TN):
                        b = Ws[kk, tx + j * NX]
                        for i in range(TM):
                            acc[i, j] += a[i] * b
                        if gated:
                            u = Us[kk, tx + j * NX]
                            for i in range(TM):
                                acc2[i, j] += a[i] * u
                cuda.syncthreads()
            for i in range(TM):
                r = r0 + ty * TM + i
                if r < r1:
                    for j in range(TN):
                        n = col0 + tx + j * NX
                        if n < N:
                            v = acc[i, j]
                            if gated:
                                v = activate(v, act) * acc2[i, j]
                            elif has_bias:
                                v += ld(bias[n])
                            out[r * N + n] = st(v)

    grouped_gemm.__name__ = _name("grouped_gemm", kind, G, kind2, G2, act, acc_dtype, geometry[:3], storage)
    return kernel(grouped_gemm)


def grouped_sig(kind: int, kind2: int, dtype, offsets_dtype) -> tuple:
    """The argument types of the grouped kernels for weights of ``kind``/``kind2`` and ``dtype`` rows."""
    from numba import types
    i64 = types.int64
    return ((arr(dtype),) + weight_types(kind, dtype) + weight_types(kind2, dtype)
            + (arr(dtype), arr(offsets_dtype), arr(dtype), i64, i64, i64, i64, i64, i64, types.boolean,
               types.boolean, arr(np.int64)))


def gemv_grid(N: int, blocks_y: int, geometry) -> tuple:
    LANES, COLS, _ = geometry
    return ((N + COLS - 1) // COLS, max(1, blocks_y)), (LANES, COLS)


def gemm_grid(N: int, blocks_y: int, geometry) -> tuple:
    BM, BN, _, TM, TN = geometry
    return ((N + BN - 1) // BN, max(1, blocks_y)), (BN // TN, BM // TM)
