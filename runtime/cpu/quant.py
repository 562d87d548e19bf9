"""Quantized matmul kernels: ``x @ w.T`` with a quantized weight (every format of
``sparsec.quant``: q8_0, q4_0, i8c, int4, int4g64, int4g128) for ``sc.linear``,
``sc.grouped_matmul`` and ``sc.moe_gated_grouped_matmul``, and the row dequantization of
``sc.embedding``.

**Dynamic activation quantization.** Once per matmul, each activation row is quantized in
blocks of 32 (llama.cpp's q8_0/q8_1 activations): ``dx = max|x_b| / 127`` (f32),
``q_x = rint(x / dx)`` (int8, |q_x| <= 127), with per block the correction ``-c * sum(q_x)``
(c = 128 for 8-bit weights, 8 for q4_0: see ``llvm_quant``) and, for int4 formats, per weight
block ``xm = sum over its sub-blocks of dx * sum(q_x)`` (the minimum's term: the dot of
``d*q + m`` with ``x`` is ``d * sum(q*x) + m * sum(x)``). The quantized rows are shared by every
expert of a grouped matmul (an expert's rows are quantized once, whatever the weights).

The product is then int8 x int8 (or 4-bit x int8) -> int32 per 32-input sub-block, with one f32
scale multiply per block (``llvm_quant`` describes the exact f32 sequence)::

    y[r, n] = sum_b d[n, b] * sum_{sub-blocks s of b} dx[r, s] * isum[r, n, s]   (+ m[n, b] * xm[r, b])
    (i8c: scale[n] * sum_s dx[r, s] * isum[r, n, s])

**Error bound.** The weights are used exactly as the reference sees them (``np.asarray(qt)``);
the only approximation is the activations': ``|x_k - dx_k * q_x,k| <= dx_k / 2`` (round to
nearest; ``dx_k`` the scale of k's block; ``x / dx`` is an f32 division, off by at most
``127 * 2^-24`` before ``rint``, hence the factor below), so against the reference interpreter
(dequantize, then compute in f32)::

    |y_kernel[r, n] - y_ref[r, n]| <= (1 + 2^-10) * sum_k |w[n, k]| * dx[r, k] / 2
                                      + 2^-22 * (K + 64) * sum_k |w[n, k]| * |x[r, k]|

where the second term covers the f32 sums on both sides (the reference's K-long dot product,
the kernel's per-block f32 accumulation; integer sums are exact).

(``tests/test_cpu_quant.py`` checks it, and checks the kernels against a NumPy evaluation of
the formula above, to f32 rounding). Non-finite activations give NaN in their rows.

**Kernels.** Weights are read in the ``"r16i"`` layout (``sparsec/quant/repack.py``: 16 output
rows interleaved, each block's scales inline after its values; ``"r16"`` for i8c: the preferred
layouts the quantize pass repacks to; a weight in another layout is repacked once, on first
use, and cached beside it). Work items are (expert, 4 row groups =
64 output rows; at a few rows per expert longer runs, ``item_groups``) dealt to ``numba`` threads
in contiguous runs of equal cost, as the f32 kernel
(``linalg.grouped_gemm_nt``): each weight byte is read once per call, experts without rows cost
nothing, and at one token the active experts' weights stream once. Inside an item the inner loop
is ``llvm_quant``'s LLVM IR (AVX-512 VNNI or AVX2), or, on the ``generic`` path, the Numba loops
``_generic_groups`` here, which compute the same integers and the same f32 operations in the
same order: every path gives bit-identical results. The GEMM (prefill) tiles 8 (then 4, then 1)
activation rows x 16 weight rows, so each weight vector load serves 8 rows (a row group's
weights stay in L1/L2 while its rows are swept).

**Instruction set.** ``current_isa()``: ``set_isa``'s choice (``use_isa`` for a block of
code, as the tests do), else ``SPARSEC_QUANT_ISA`` (``vnni`` / ``avx2`` / ``generic``) if set,
else the host's best from ``llvmlite.binding.get_host_cpu_features()`` (AVX-512 VNNI + BW ->
vnni, AVX2 -> avx2, else generic). Lowering an op binds the path of that moment.
"""
from __future__ import annotations

import contextlib
import os
import weakref

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core.extending import intrinsic

from .common import TILE_ROW_COST, bind_compiled, group_items, num_threads, offsets_partition, split_by_cost
from .linalg import ACT_NONE, gated_rows, prange_only
from .llvm_dot import ISAS, host_isa

#: output-row groups of 16 per work item (64 rows, as the f32 kernel's items), at least
ITEM_GROUPS = 4
#: rows per expert up to which a product streams its weights (decode): then work items grow to
#: ``ITEMS_PER_THREAD`` per thread (see ``item_groups``)
STREAM_ROWS = 4
ITEMS_PER_THREAD = 4
#: multiply-adds below which a product runs on the calling thread
SERIAL_WORK = 1 << 17
#: activation elements from which the quantization runs on threads
PARALLEL_QUANT = 1 << 16
#: format -> (bits, sub-blocks per block S, has a minimum, per-row scale (i8c), correction c)
FORMAT_CODES = {
    "q8_0": (8, 1, False, False, 128),
    "i8c": (8, 1, False, True, 128),
    "q4_0": (4, 1, False, False, 8),
    "int4": (4, 1, True, False, 0),
    "int4g64": (4, 2, True, False, 0),
    "int4g128": (4, 4, True, False, 0),
}

# ---------------------------------------------------------------------------------------------
# instruction set

_forced: str | None = None


def runnable_isas() -> list[str]:
    """The paths this CPU can run: its best and every fallback below it."""
    return list(ISAS[ISAS.index(host_isa()):])


def current_isa() -> str:
    """The path new lowerings use (see the module docstring)."""
    env = os.environ.get("SPARSEC_QUANT_ISA", "").strip().lower()
    isa = _forced or env or host_isa()
    if isa not in ISAS:
        raise ValueError(f"SPARSEC_QUANT_ISA={env!r}: expected one of {', '.join(ISAS)}")
    if isa not in runnable_isas():
        raise RuntimeError(f"quantized kernels: this CPU cannot run the {isa!r} path "
                           f"(it runs {', '.join(runnable_isas())})")
    return isa


def set_isa(isa: str | None) -> None:
    """Force a path for later lowerings (None: the host's best)."""
    global _forced
    if isa is not None and isa not in ISAS:
        raise ValueError(f"unknown instruction set {isa!r}; expected one of {', '.join(ISAS)}")
    _forced = isa


@contextlib.contextmanager
def use_isa(isa: str):
    old = _forced
    set_isa(isa)
    try:
        yield
    finally:
        set_isa(old)


def kernel_address(fmt: str, isa: str) -> int:
    """The address of ``sc_q_<fmt>`` for ``isa`` (0 for the Numba path)."""
    if isa == "generic":
        return 0
    from .llvm_quant import kernel_address as address
    return address(isa, fmt)


# ---------------------------------------------------------------------------------------------
# weights in the kernels' layout (r16i; i8c: r16)

class Prepared:
    """A quantized weight ``[E?, N, K]`` as the kernels read it, flat over its row groups:
    ``qs`` u8 ``[E*ng, bytes]`` (``r16i``: the whole block stream, scales inline; ``i8c``'s
    ``r16``: the quantized values) and ``scale`` f32 ``[E*ng*16]`` (``i8c``; else a dummy)."""

    def __init__(self, qt):
        from ...quant import layouts
        from ...quant.repack import check_kernel_layout, geometry, kernel_layout
        want = kernel_layout(qt.fmt)
        if qt.layout != want:
            qt = layouts.repack(qt, want)
        check_kernel_layout(qt.fmt, qt.shape, qt.parts)
        self.fmt = qt.fmt
        self.shape = qt.shape
        self.E = int(np.prod(qt.shape[:-2], dtype=np.int64))
        self.N, self.K = qt.shape[-2], qt.shape[-1]
        self.ng, self.nsub, self.nb, self.G = geometry(qt.fmt, qt.shape)
        self.nlast = self.N - (self.ng - 1) * 16
        rows = self.E * self.ng
        p = qt.parts
        self.qs = np.ascontiguousarray(p["data"] if "data" in p else p["qs"]).reshape(rows, -1)
        self.scale = p["scale"].reshape(-1) if "scale" in p else np.zeros(1, np.float32)
        self.codes = FORMAT_CODES[qt.fmt]
        self.nbytes = int(sum(a.nbytes for a in p.values()))
        #: ``qmatmul_rows``'s weight arguments (format codes, then the arrays), built once
        self.parts = (self.qs, self.scale)


_PREPARED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def prepare(qt) -> Prepared:
    """``qt`` as the kernels read it (repacked to their layout once and cached while ``qt`` lives)."""
    p = _PREPARED.get(qt)
    if p is None:
        p = Prepared(qt)
        _PREPARED[qt] = p
    return p


# ---------------------------------------------------------------------------------------------
# activation quantization

@njit(cache=True)
def _quant_row(x, r, nsub, S, cmul, has_m, xq, xd, xc, xm, xs):
    """One row. No fast-math: the division and ``rint`` are IEEE, as NumPy's. A block's
    ``max|x|`` is taken on the bit patterns (``|x|`` of a float orders as its bits without the
    sign; an integer max reduction vectorizes, a float one with NaN checks did not): bits at or
    above infinity's mean an inf or NaN in the block. Measured 3.9 -> 1.9 us for 2 x 2816 values
    (the down projection's activations at one token, two experts)."""
    K = x.shape[1]
    zero = np.float32(0.0)
    lim = np.float32(127.0)
    for sb in range(nsub):
        k0 = sb * 32
        n = min(32, K - k0) if k0 < K else 0
        m = np.uint32(0)
        for j in range(n):
            m = max(m, np.float32(x[r, k0 + j]).view(np.uint32) & np.uint32(0x7FFFFFFF))
        s = 0
        if m >= np.uint32(0x7F800000):               # an inf or NaN: the block (and its row) NaN
            for j in range(n):
                xq[r, k0 + j] = 0
            d = np.float32(np.nan)
        else:
            d = np.uint32(m).view(np.float32) / lim  # max|x| / 127
            if d > zero:
                for j in range(n):
                    q = np.rint(x[r, k0 + j] / d)
                    q = min(max(q, -lim), lim)
                    qi = np.int32(q)
                    xq[r, k0 + j] = np.int8(qi)
                    s += qi
            else:
                for j in range(n):
                    xq[r, k0 + j] = 0
                d = zero
        for j in range(n, 32):
            xq[r, k0 + j] = 0
        xd[r, sb] = d
        xc[r, sb] = -cmul * s
        xs[r, sb] = s
    if has_m:
        for jb in range(nsub // S):
            acc = np.float32(0.0)
            for t in range(S):
                acc = acc + xd[r, jb * S + t] * np.float32(xs[r, jb * S + t])
            xm[r, jb] = acc


@njit(parallel=prange_only(), cache=True)
def quantize_rows(x, nsub, S, cmul, has_m, xq, xd, xc, xm):
    """Quantize the f32 rows ``x [M, K]`` in blocks of 32 into ``xq [M, nsub*32]`` (int8),
    ``xd``/``xc`` ``[M, nsub]`` (scale, correction ``-cmul * sum(q)``) and, if ``has_m``,
    ``xm [M, nsub / S]``."""
    M, K = x.shape
    xs = np.empty((M, nsub), np.int32)
    if M * K < PARALLEL_QUANT:
        for r in range(M):
            _quant_row(x, r, nsub, S, cmul, has_m, xq, xd, xc, xm, xs)
    else:
        for r in prange(M):
            _quant_row(x, r, nsub, S, cmul, has_m, xq, xd, xc, xm, xs)


def quantize_activations(x: np.ndarray, fmt: str, nsub: int):
    """``(xq, xd, xc, xm)`` for f32 rows ``x [M, K]`` and a weight of format ``fmt``."""
    bits, S, has_m, _, cmul = FORMAT_CODES[fmt]
    M = x.shape[0]
    xq = np.empty((M, nsub * 32), np.int8)
    xd = np.empty((M, nsub), np.float32)
    xc = np.empty((M, nsub), np.int32)
    xm = np.empty((M, nsub // S) if has_m else (1, 1), np.float32)
    quantize_rows(x, nsub, S, cmul, has_m, xq, xd, xc, xm)
    return xq, xd, xc, xm


# ---------------------------------------------------------------------------------------------
# the generic path (plain Numba; the same integers and f32 operations as llvm_quant's IR)

@njit(cache=True)
def half_to_f32(h):
    """An IEEE half (its bits, uint16) as float32, exactly."""
    h = np.int64(h)
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    if e == 0:
        v = m * 2.0 ** -24
    elif e == 31:
        v = np.inf if m == 0 else np.nan
    else:
        v = (1024 + m) * 2.0 ** (e - 25)
    return np.float32(-v if h & 0x8000 else v)


@njit(cache=True)
def _half_at(qs, g, o):
    """The f16 stored little-endian at bytes ``o, o+1`` of row ``g``, as float32."""
    return half_to_f32(np.uint16(np.int32(qs[g, o]) | (np.int32(qs[g, o + 1]) << 8)))


@njit(cache=True)
def _generic_groups(bits, S, has_m, i8c, qs, scale, g0, ng, nlast, xq, xd, xm, r0, r1, nsub, out, c0):
    """The IR kernel's computation for row groups g0..g0+ng (flat indices into the weight
    arrays) and activation rows r0..r1, into ``out[r, c0 + 16*gi + l]``."""
    nb = nsub // S
    sub = 512 if bits == 8 else 256
    stride = qs.shape[1] // nb  # bytes per block (sparsec.quant.repack.block_stride)
    isum = np.empty(16, np.int32)
    fb = np.empty(16, np.float32)
    facc = np.empty(16, np.float32)
    dw = np.empty(16, np.float32)
    mw = np.empty(16, np.float32)
    for gi in range(ng):
        g = g0 + gi
        nval = nlast if gi == ng - 1 else 16
        for r in range(r0, r1):
            facc[:] = 0
            for jb in range(nb):
                o = jb * stride
                if not i8c:
                    for lane in range(16):
                        dw[lane] = _half_at(qs, g, o + S * sub + 2 * lane)
                if has_m:
                    for lane in range(16):
                        mw[lane] = _half_at(qs, g, o + S * sub + 32 + 2 * lane)
                for t in range(S):
                    sb = jb * S + t
                    for lane in range(16):
                        acc = 0
                        if bits == 8:
                            base = o + t * sub + lane * 4
                            for s in range(8):
                                for u in range(4):
                                    acc += (np.int32(qs[g, base + s * 64 + u]) - 128) * np.int32(xq[r, sb * 32 + 4 * s + u])
                        else:
                            off = 8 if (not has_m) else 0  # q4_0: q - 8
                            base = o + t * sub + lane * 4
                            for s in range(4):
                                for u in range(4):
                                    byte = np.int32(qs[g, base + s * 64 + u])
                                    acc += ((byte & 15) - off) * np.int32(xq[r, sb * 32 + 4 * s + u])
                                    acc += ((byte >> 4) - off) * np.int32(xq[r, sb * 32 + 16 + 4 * s + u])
                        isum[lane] = acc
                    dx = xd[r, sb]
                    for lane in range(16):
                        p = np.float32(isum[lane]) * dx
                        fb[lane] = p if t == 0 else fb[lane] + p
                for lane in range(16):
                    if i8c:
                        facc[lane] = facc[lane] + fb[lane]
                    else:
                        facc[lane] = facc[lane] + fb[lane] * dw[lane]
                    if has_m:
                        facc[lane] = facc[lane] + mw[lane] * xm[r, jb]
            for lane in range(nval):
                v = facc[lane]
                if i8c:
                    v = v * scale[g * 16 + lane]
                out[r, c0 + gi * 16 + lane] = v


# ---------------------------------------------------------------------------------------------
# calling the IR kernels from Numba

@intrinsic
def _call_kernel(typingctx, fn, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11):
    """``((void (*)(i64 x 12)) fn)(a0, ..., a11)``."""
    i64 = types.int64
    sig = types.void(i64, *([i64] * 12))

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(64)] * 12)
        f = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(f, list(args[1:]))
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def _thread_count(typingctx):
    """The threading layer's current thread count, as Numba's parallel loops read it: the
    ``get_num_threads`` symbol its library registers (``numba.get_num_threads()`` in compiled code
    holds a ctypes pointer instead, which keeps a function from Numba's on-disk cache)."""
    sig = types.int64()

    def codegen(context, builder, sig, args):
        from numba.core import cgutils
        f = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []), "get_num_threads")
        return builder.call(f, [])
    return sig, codegen


@njit(cache=True)
def _addr(a):
    return np.int64(a.ctypes.data)


@njit(cache=True)
def _groups(fn, bits, S, has_m, i8c, qs, scale, g0, ng, nlast, xq, xd, xc, xm, r0, r1, nsub, out, c0):
    """Row groups g0..g0+ng of a weight times activation rows r0..r1 into ``out[r0:r1, c0:]``."""
    if fn == 0:
        _generic_groups(bits, S, has_m, i8c, qs, scale, g0, ng, nlast, xq, xd, xm, r0, r1, nsub, out, c0)
        return
    nb = nsub // S
    N = out.shape[1]
    wd = _addr(scale) + g0 * 64 if i8c else 0  # (r16i: the scales are inline in qs)
    _call_kernel(fn, _addr(qs) + g0 * qs.shape[1], wd, np.int64(ng), np.int64(nlast),
                 _addr(xq) + r0 * nsub * 32, _addr(xd) + r0 * nsub * 4,
                 _addr(xc) + r0 * nsub * 4, _addr(xm) + (r0 * nb * 4 if has_m else 0), np.int64(r1 - r0),
                 np.int64(nsub), _addr(out) + (r0 * N + c0) * 4, np.int64(N))


@njit(cache=True)
def _run_items(fn, bits, S, has_m, i8c, qs, scale, qs2, scale2, ngE, nlastE, nsub,
               xq, xd, xc, xm, offsets, bias, act, item_group, item_block, lo, hi, tmp, out, igroups):
    N = out.shape[1]
    has_bias = bias.size > 0
    for it in range(lo, hi):
        e = item_group[it]
        gs = item_block[it] * igroups
        ge = min(gs + igroups, ngE)
        nlast = nlastE if ge == ngE else 16
        r0, r1 = offsets[e], offsets[e + 1]
        g0 = e * ngE + gs
        c0 = gs * 16
        c1 = min(ge * 16, N)
        _groups(fn, bits, S, has_m, i8c, qs, scale, g0, ge - gs, nlast, xq, xd, xc, xm, r0, r1, nsub,
                out, c0)
        if act != ACT_NONE:
            _groups(fn, bits, S, has_m, i8c, qs2, scale2, g0, ge - gs, nlast, xq, xd, xc, xm, r0, r1,
                    nsub, tmp, c0)
            gated_rows(out, tmp, r0, r1, c0, c1, act)
        elif has_bias:
            for r in range(r0, r1):
                for c in range(c0, c1):
                    out[r, c] += bias[c]


# ---------------------------------------------------------------------------------------------
# Python entry points

_NO_BIAS = np.zeros(0, np.float32)


@njit(cache=True)
def item_groups(offsets, ngE, threads, per_thread):
    """Row groups per work item. At up to ``STREAM_ROWS`` rows per expert the product streams the
    weights once, and an item reads its groups' gate rows, then their up rows (two streams): the
    longer an item, the fewer switches between streams, so items grow to about
    ``ITEMS_PER_THREAD`` per thread (the active experts' groups divided among them). Same-process
    measurement, 1 token through 2 of 8 experts of 2816 x 1024, 2 threads: gated q4_0 152 -> 140 us,
    q8_0 272 -> 257 us, the down projections 1-2% faster. With more rows (the product reuses its
    weights), ``ITEM_GROUPS``: many small items balance experts of uneven row counts."""
    active = 0
    most = 0
    for e in range(offsets.size - 1):
        rows = offsets[e + 1] - offsets[e]
        if rows > 0:
            active += 1
            most = max(most, rows)
    if most > STREAM_ROWS:
        return ITEM_GROUPS
    return min(max(ITEM_GROUPS, (active * ngE) // (max(threads, 1) * max(per_thread, 1))), max(ngE, 1))


def scratch_bytes(M: int, N: int, nsub: int, S: int, has_m: bool, gated: bool) -> int:
    """Bytes of ``qmatmul_rows``'s ``scratch`` for ``M`` rows: the quantized rows ``xq`` (int8),
    then ``xd``, ``xc``, ``xs`` (4 bytes per sub-block), ``xm`` and the gated product's ``tmp``."""
    return M * nsub * 32 + 12 * M * nsub + 4 * (M * (nsub // S) if has_m else 1) + 4 * (M * N if gated else 1)


@njit(parallel=prange_only(), cache=True)
def qmatmul_rows(fn, bits, S, has_m, i8c, cmul, qs, scale, qs2, scale2, ngE, nlastE, nsub,
                 x, offsets, bias, act, threads, out, per_thread, scratch):
    """``out[r] = x[r] @ w[e].T`` (+ bias, or ``act(x w_gate^T) * (x w_up^T)`` when ``act``) for
    the rows of each expert ``e`` (``offsets``; empty: one group of all rows, ``sc.linear``).

    One compiled call from Python (at one token a quantized linear is a few microseconds of
    work; the Python glue of separate quantize and matmul calls cost as much): the rows are
    quantized (``_quant_row``; on threads from ``PARALLEL_QUANT`` elements), then the work items
    (expert, ``item_groups`` row groups) run in ``threads`` contiguous runs of equal cost
    (``threads`` <= 0: the current thread count, ``numba.set_num_threads``). Returns 0, or -1
    when ``offsets`` do not rise from 0 to the row count (nothing written). ``scratch`` (int8,
    at least ``scratch_bytes``; else the buffers are allocated here): the per-call buffers,
    carved rather than allocated (a bound call keeps one; six allocations measured 1.7 us per
    call)."""
    M, K = x.shape
    if threads <= 0:  # the current thread count (numba.set_num_threads), read here
        threads = _thread_count()
    offs = offsets
    if offsets.size == 0:
        offs = np.zeros(2, np.int64)
        offs[1] = M
    if not offsets_partition(offs, M):
        return -1
    gated = act != ACT_NONE
    nm = M * (nsub // S) if has_m else 1
    nt = out.shape[0] * out.shape[1] if gated else 1
    if scratch.size >= M * nsub * 32 + 12 * M * nsub + 4 * nm + 4 * nt:
        a = M * nsub * 32
        xq = scratch[:a].reshape((M, nsub * 32))
        xd = scratch[a:a + 4 * M * nsub].view(np.float32).reshape((M, nsub))
        a += 4 * M * nsub
        xc = scratch[a:a + 4 * M * nsub].view(np.int32).reshape((M, nsub))
        a += 4 * M * nsub
        xs = scratch[a:a + 4 * M * nsub].view(np.int32).reshape((M, nsub))
        a += 4 * M * nsub
        xm = scratch[a:a + 4 * nm].view(np.float32).reshape((M, nsub // S) if has_m else (1, 1))
        a += 4 * nm
        tmp = scratch[a:a + 4 * nt].view(np.float32).reshape(out.shape if gated else (1, 1))
    else:
        xq = np.empty((M, nsub * 32), np.int8)
        xd = np.empty((M, nsub), np.float32)
        xc = np.empty((M, nsub), np.int32)
        xm = np.empty((M, nsub // S) if has_m else (1, 1), np.float32)
        xs = np.empty((M, nsub), np.int32)
        tmp = np.empty(out.shape if gated else (1, 1), np.float32)
    if M * K < PARALLEL_QUANT:
        for r in range(M):
            _quant_row(x, r, nsub, S, cmul, has_m, xq, xd, xc, xm, xs)
    else:
        for r in prange(M):
            _quant_row(x, r, nsub, S, cmul, has_m, xq, xd, xc, xm, xs)
    igroups = item_groups(offs, ngE, threads, per_thread)
    blocks = (ngE + igroups - 1) // igroups
    item_group, item_block, cost_end, total = group_items(offs, blocks, 1 << 62, 1 << 62)  # every non-empty expert
    n_items = item_group.size
    if total * igroups * 16 * K < SERIAL_WORK * TILE_ROW_COST:  # total: TILE_ROW_COST per row
        threads = 1
    threads = max(1, min(threads, n_items))
    if threads == 1:
        _run_items(fn, bits, S, has_m, i8c, qs, scale, qs2, scale2, ngE, nlastE, nsub,
                   xq, xd, xc, xm, offs, bias, act, item_group, item_block, 0, n_items, tmp, out, igroups)
        return 0
    first = split_by_cost(cost_end, total, threads)
    for th in prange(threads):
        _run_items(fn, bits, S, has_m, i8c, qs, scale, qs2, scale2, ngE, nlastE, nsub,
                   xq, xd, xc, xm, offs, bias, act, item_group, item_block, first[th], first[th + 1], tmp, out,
                   igroups)
    return 0


_NO_OFFSETS = np.zeros(0, np.int64)
_NO_SCRATCH = np.zeros(0, np.int8)


def qmatmul(fn: int, x: np.ndarray, w: Prepared, w2: Prepared | None, offsets, bias, act: int,
            out: np.ndarray) -> bool:
    """``out`` (f32 ``[M, N]``) from f32 rows ``x [M, K]`` and the prepared weight(s); ``fn`` the
    kernel address (``kernel_address``; 0: generic); ``offsets`` None: one group of all rows.
    False if ``offsets`` are malformed."""
    bits, S, has_m, i8c, cmul = w.codes
    if x.shape[0] == 0:
        return offsets is None or bool(offsets[0] == 0 and offsets[-1] == 0 and np.all(offsets[1:] >= offsets[:-1]))
    v = w2 if act != ACT_NONE else w
    return qmatmul_rows(fn, bits, S, has_m, i8c, cmul, w.qs, w.scale, v.qs, v.scale, w.ng,
                        w.nlast, w.nsub, x, _NO_OFFSETS if offsets is None else offsets,
                        _NO_BIAS if bias is None else bias, act, num_threads(), out, ITEMS_PER_THREAD, _NO_SCRATCH) == 0


def fixed_call(fn: int, w: Prepared, v: Prepared, x, offsets, bias, act: int, out):
    """``qmatmul`` for a prebound step: the compiled entry point of ``qmatmul_rows`` with the
    kernel address, the weights, every array and a scratch buffer bound once (no type dispatch
    on its 21 arguments, no per-call checks or allocations). A no-argument callable returning 0,
    or -1 for malformed offsets; None when the arrays do not allow it (no rows, or not
    C-contiguous: the entry point assumes C layout). The kernel reads the thread count itself
    (``numba.set_num_threads`` applies). ``x`` f32 ``[M, K]``, ``offsets`` int64 (empty: one
    group), ``bias`` f32 (``_NO_BIAS``: none), ``out`` f32 ``[M, N]``."""
    if x.shape[0] == 0 or not (x.flags.c_contiguous and out.flags.c_contiguous and bias.flags.c_contiguous
                               and offsets.flags.c_contiguous):
        return None
    bits, S, has_m, i8c, cmul = w.codes
    head = (fn, bits, S, has_m, i8c, cmul) + w.parts + v.parts + (w.ng, w.nlast, w.nsub)
    scratch = np.empty(scratch_bytes(x.shape[0], out.shape[1], w.nsub, S, has_m, act != ACT_NONE), np.int8)
    args = head + (x, offsets, bias, act, 0, out, ITEMS_PER_THREAD, scratch)
    return bind_compiled(_compiled(args), args)


def _compiled(args):
    """``qmatmul_rows``'s compile result for these argument types (compiled now if new)."""
    from numba import typeof
    sig = tuple(typeof(a) for a in args)
    cres = qmatmul_rows.overloads.get(sig)
    if cres is None:
        qmatmul_rows.compile(sig)
        cres = qmatmul_rows.overloads[sig]
    return cres


def linear(fn: int, x: np.ndarray, w: Prepared, bias, out: np.ndarray) -> None:
    """``out = x @ w.T (+ bias)`` for f32 ``x [M, K]`` and a prepared ``[N, K]`` weight."""
    qmatmul(fn, x, w, None, None, bias, ACT_NONE, out)


# ---------------------------------------------------------------------------------------------
# embedding: dequantized rows

@njit(cache=True)
def _dequant_row(bits, S, has_m, i8c, qs, scale, n, K, out, o):
    g = n // 16
    lane = n % 16
    G = 32 * S
    sub = 512 if bits == 8 else 256
    stride = qs.shape[1] // ((K + G - 1) // G)  # bytes per block (sparsec.quant.repack.block_stride)
    for k in range(K):
        jb = k // G
        t = (k % G) // 32
        kk = k % 32
        base = jb * stride + t * sub
        if bits == 8:
            q = np.float32(np.int32(qs[g, base + (kk // 4) * 64 + lane * 4 + kk % 4]) - 128)
        else:
            j = kk % 16
            byte = np.int32(qs[g, base + (j // 4) * 64 + lane * 4 + j % 4])
            q = np.float32((byte & 15) if kk < 16 else (byte >> 4))
        if i8c:
            v = scale[n] * q
        else:
            d = _half_at(qs, g, jb * stride + S * sub + 2 * lane)
            if has_m:
                v = d * q + _half_at(qs, g, jb * stride + S * sub + 32 + 2 * lane)
            else:
                v = d * (q - np.float32(8.0)) if bits == 4 else d * q
        out[o, k] = v


@njit(cache=True)
def dequant_rows(bits, S, has_m, i8c, qs, scale, N, ids, out):
    """``out[i] = w[ids[i]]`` dequantized (f32); returns the position of the first id outside
    ``[0, N)`` (nothing written from there) or -1."""
    K = out.shape[1]
    for i in range(ids.size):
        n = ids[i]
        if n < 0 or n >= N:
            return i
        _dequant_row(bits, S, has_m, i8c, qs, scale, n, K, out, i)
    return -1


def embedding(w: Prepared, ids: np.ndarray, out: np.ndarray) -> int:
    bits, S, has_m, i8c, _ = w.codes
    return int(dequant_rows(bits, S, has_m, i8c, w.qs, w.scale, w.N, ids, out))
