"""The inner loops of the quantized matmuls, written as LLVM IR with llvmlite and JIT-compiled
per instruction set (ORC ``LLJIT``, as ``llvm_dot``): AVX-512 VNNI (``vpdpbusd``) or AVX2
(``vpmaddubsw`` + ``vpmaddwd``). The third path, ``generic``, is plain Numba
(``sparsec.runtime.cpu.quant``). Which one runs is chosen when an op is lowered (see
``sparsec.runtime.cpu.quant.current_isa``).

One function per weight format, ``void sc_q_<fmt>(i64 x 12)`` (every argument an ``i64``;
pointers as integers)::

    wq, wd          weight data of the first row group: its block stream (the "r16i" layout,
                    sparsec/quant/repack.py: per block the quantized values, then the 16
                    f16 scales d, then for int4 formats the 16 f16 minimums m; ``wd`` unused);
                    i8c: its quantized values ("r16") and ``wd`` its 16 f32 row scales
    ng, nlast       row groups of 16 to compute; valid rows of the last one (1..16)
    xq, xd, xc, xm  the quantized activation rows (first row): int8 [M, nsub*32], per 32-block
                    scale f32 [M, nsub], correction i32 [M, nsub], int4: dx*sum(q) per weight
                    block f32 [M, nb]
    mr, nsub        activation rows; sub-blocks of 32 per row
    out, ldo        f32 output of (first row, first group's first column); its row stride

For each row group and each tile of activation rows (``TILE_ROWS``: 8, then 4, then 1 rows)
the tile loops over the weight's blocks. Per 32-input sub-block and activation row it forms the
16 exact int32 dot products (one per weight row, in the lanes of one vector):

* VNNI: ``vpdpbusd`` takes the weights as the unsigned operand (``q + 128`` for 8-bit formats,
  the 0..15 nibbles for 4-bit ones) and 4 activation bytes broadcast as the signed one, 8 (or
  4 x 2 nibble halves) steps per sub-block, starting from the activation's correction
  ``-128 * sum(q_x)`` (8-bit) / ``-8 * sum(q_x)`` (q4_0) so the sum is exactly ``sum(q_w * q_x)``
  (high nibbles are multiplied in place, as ``16 * q``, into their own accumulator, shifted
  right by 4 once per sub-block); two accumulator chains per row hide the ``vpdpbusd`` latency;
* AVX2: ``vpmaddubsw`` (u8 x s8 -> pairs of i16) then ``vpmaddwd`` by ones (-> i32). For 8-bit
  weights the sign trick (``|q_w|`` times ``sign(q_w) * q_x``) keeps the i16 pair sums below
  saturation (2 * 127 * 128 < 2^15), so the sum is exact without the correction; nibbles
  times int8 never saturate.

Then, in f32 and without contraction (so every path rounds identically)::

    fb   = sum over the block's sub-blocks (in order) of float(isum) * dx_sub
    acc += fb * d            (i8c: acc += fb; times the row scale at the end)
    acc += m * xm_block      (int4 formats)

and the 16 sums are stored (fewer for the last group). The integer sums are exact on every
path and the float operations are the same in the same order, so VNNI, AVX2 and the Numba
path give bit-identical outputs (the tests check it).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from llvmlite import binding as llvm
from llvmlite import ir

from ...quant.repack import LAYOUT_INLINE, block_stride, kernel_layout
from .llvm_dot import ISAS, _declare, _Loop, host_isa, jit_compile

__all__ = ["FORMATS", "ISAS", "QuantKernels", "TILE_ROWS", "build_ir", "host_isa", "kernel_address", "quant_kernels"]

I1, I8, I16, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
F16, F32 = ir.HalfType(), ir.FloatType()
V64I8, V32I8 = ir.VectorType(I8, 64), ir.VectorType(I8, 32)
V16I32, V8I32, V16I16 = ir.VectorType(I32, 16), ir.VectorType(I32, 8), ir.VectorType(I16, 16)
V16F32, V16F16 = ir.VectorType(F32, 16), ir.VectorType(F16, 16)

#: format -> (bits, block G, uses the activation correction (VNNI), has a minimum m)
FORMATS = {
    "q8_0": (8, 32, True, False),
    "i8c": (8, 32, True, False),
    "q4_0": (4, 32, True, False),
    "int4": (4, 32, False, True),
    "int4g64": (4, 64, False, True),
    "int4g128": (4, 128, False, True),
}
#: activation rows per register tile, largest first: the GEMM (prefill) sweeps a row group's
#: rows 8 at a time, then 4, then one at a time (8 measured 3-14% faster than 4 alone at
#: 32-128 rows per expert)
TILE_ROWS = (8, 4, 1)
N_ARGS = 12
#: bytes ahead of the weight stream that one-row tiles (decode) prefetch (``llvm.prefetch``, read,
#: locality 3), one prefetch per 64-byte line. From DRAM the hardware prefetchers alone left the
#: q4_0 kernels 5-15% short: same process, alternating, 64 weight copies of 2816 x 1024, 2
#: threads: 41.2 -> 43.2 GB/s (another run 48.6 -> 52.0); the expert kernels of a q4_0 decode
#: step 2171 -> 1845 and 2083 -> 1862 us summed over a generation. Distances 1-8 KB measured
#: alike, 16-32 KB slightly worse; locality 0 (NTA) no better. Tiles of several activation rows
#: (prefill) reuse each weight vector from cache: no prefetches there.
PREFETCH_BYTES = 4096


def _c(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


class _Gen:
    """Emits one ``sc_q_<fmt>`` function."""

    def __init__(self, mod: ir.Module, fmt: str, isa: str):
        self.mod, self.fmt, self.isa = mod, fmt, isa
        self.bits, self.G, corr, self.has_m = FORMATS[fmt]
        self.S = self.G // 32                          # sub-blocks per block
        self.steps = 8 if self.bits == 8 else 4
        self.sub_bytes = 512 if self.bits == 8 else 256
        # r16i: each block's scales (and minimums) follow its quantized values; i8c: r16
        self.inline = kernel_layout(fmt) == LAYOUT_INLINE
        self.stride = block_stride(fmt)
        # the AVX2 path computes exact signed sums for 8-bit weights: no correction
        self.use_corr = corr and not (isa == "avx2" and self.bits == 8)
        # VNNI, 4-bit: the high nibbles multiply in place (w & 0xF0 = 16 * hi; vpdpbusd sums in
        # int32 without saturating), one shift per sub-block instead of one per step.
        # (vpmaddubsw would saturate on 240 * 127 * 2, so AVX2 shifts them down.)
        self.hi16 = isa == "vnni" and self.bits == 4
        fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [I64] * N_ARGS), name=f"sc_q_{fmt}")
        self.fn = fn
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))

    # -- helpers -------------------------------------------------------------------------------
    def load(self, ty, addr, align=1):
        return self.b.load(self.b.inttoptr(addr, ty.as_pointer()), align=align)

    def store(self, v, addr, align=4):
        self.b.store(v, self.b.inttoptr(addr, v.type.as_pointer()), align=align)

    def splat(self, scalar, vty: ir.VectorType):
        b = self.b
        undef = ir.Constant(vty, ir.Undefined)
        v = b.insert_element(undef, scalar, ir.Constant(I32, 0))
        return b.shuffle_vector(v, undef, ir.Constant(ir.VectorType(I32, vty.count), [0] * vty.count))

    def addr(self, base, *terms):
        """base + sum(a * k) for (a, k) in terms (k an int constant or None for a plain value)."""
        b = self.b
        out = base
        for t in terms:
            if isinstance(t, tuple):
                v, k = t
                out = b.add(out, b.mul(v, _c(k)) if isinstance(k, int) else b.mul(v, k))
            elif isinstance(t, int):
                out = b.add(out, _c(t))
            else:
                out = b.add(out, t)
        return out

    # -- int8 dot steps ------------------------------------------------------------------------
    def dot(self, acc, w64, xb):
        """acc (16 x i32) += the 16 row dot products of the 4-byte step ``w64`` (16 rows x 4 u8)
        with the broadcast activation bytes ``xb`` (an i32 holding 4 s8)."""
        b = self.b
        if self.isa == "vnni":
            f = _declare(self.mod, "llvm.x86.avx512.vpdpbusd.512", V16I32, [V16I32, V16I32, V16I32])
            return b.call(f, [acc, b.bitcast(w64, V16I32), self.splat(xb, V16I32)])
        pmaddubsw = _declare(self.mod, "llvm.x86.avx2.pmadd.ub.sw", V16I16, [V32I8, V32I8])
        pmaddwd = _declare(self.mod, "llvm.x86.avx2.pmadd.wd", V8I32, [V16I16, V16I16])
        x32 = b.bitcast(self.splat(xb, V8I32), V32I8)
        ones = ir.Constant(V16I16, [1] * 16)
        halves = []
        for h in range(2):
            w32 = b.shuffle_vector(w64, ir.Constant(V64I8, ir.Undefined),
                                   ir.Constant(ir.VectorType(I32, 32), list(range(32 * h, 32 * h + 32))))
            if self.bits == 8:
                psign = _declare(self.mod, "llvm.x86.avx2.psign.b", V32I8, [V32I8, V32I8])
                absb = _declare(self.mod, "llvm.abs.v32i8", V32I8, [V32I8, I1])
                ws = b.xor(w32, ir.Constant(V32I8, [-128] * 32))          # q (signed)
                p16 = b.call(pmaddubsw, [b.call(absb, [ws, ir.Constant(I1, 0)]), b.call(psign, [x32, ws])])
            else:
                p16 = b.call(pmaddubsw, [w32, x32])
            halves.append(b.call(pmaddwd, [p16, ones]))
        p = b.shuffle_vector(halves[0], halves[1], ir.Constant(ir.VectorType(I32, 16), list(range(16))))
        return b.add(acc, p)

    # -- the function --------------------------------------------------------------------------
    def group(self, gi, ng, nlast) -> dict:
        """Pointers and output columns of row group ``gi``."""
        b, a = self.b, self.args
        g = {"wq": self.addr(a["wq"], (gi, b.mul(self.nb, _c(self.stride))))}
        if self.fmt == "i8c":
            g["wd"] = self.addr(a["wd"], (gi, 16 * 4))
        g["nval"] = b.select(b.icmp_signed("==", gi, b.sub(ng, _c(1))), nlast, _c(16))
        g["col"] = b.mul(gi, _c(16))
        return g

    def build(self) -> None:
        b = self.b
        wq, wd, ng, nlast, xq, xd, xc, xm, mr, nsub, out, ldo = self.fn.args
        self.args = dict(wq=wq, wd=wd, xq=xq, xd=xd, xc=xc, xm=xm, nsub=nsub, out=out, ldo=ldo)
        self.nb = b.udiv(nsub, _c(self.S)) if self.S > 1 else nsub
        # per row group: tiles of TILE_ROWS activation rows. (Decode, one row:
        # one weight stream per thread. Tiles of 2 or 4 row groups, i.e. more streams in flight,
        # measured 10-25% slower on the MoE shapes.)
        gloop = _Loop(b, "group", _c(0), ng, 1, [])
        g = self.group(gloop.i, ng, nlast)
        start = _c(0)
        for R in TILE_ROWS:
            stop = mr if R == 1 else b.add(start, b.mul(b.udiv(b.sub(mr, start), _c(R)), _c(R)))
            rloop = _Loop(b, f"rows{R}", start, stop, R, [])
            self.tile([g], rloop.i, R)
            rloop.next([])
            start = stop
        gloop.next([])
        b.ret_void()

    def tile(self, gs: list, r, R: int) -> None:
        """Activation rows r..r+R-1 times the row groups ``gs`` (R x len(gs) x 16 outputs)."""
        b, a = self.b, self.args
        nsub = a["nsub"]
        C = len(gs)
        zero_f = ir.Constant(V16F32, [0.0] * 16)
        zero_i = ir.Constant(V16I32, [0] * 16)
        rows = [b.add(r, _c(i)) if i else r for i in range(R)]
        xrow = [self.addr(a["xq"], (ri, b.mul(nsub, _c(32)))) for ri in rows]        # xq of each row
        srow = [b.mul(ri, nsub) for ri in rows]                                       # row * nsub
        mrow = [b.mul(ri, self.nb) for ri in rows] if self.has_m else None
        loop = _Loop(b, "blk", _c(0), self.nb, 1, [zero_f] * (R * C))
        jb = loop.i
        facc = list(loop.vals)                                                        # [j * R + i]
        dw, m16 = [None] * C, [None] * C
        blk = [self.addr(g["wq"], (jb, self.stride)) for g in gs]                      # block jb of each group
        for j in range(C):
            if self.inline:
                dw[j] = b.fpext(self.load(V16F16, self.addr(blk[j], self.S * self.sub_bytes), 2), V16F32)
            if self.has_m:
                m16[j] = b.fpext(self.load(V16F16, self.addr(blk[j], self.S * self.sub_bytes + 32), 2), V16F32)
        if R == 1 and PREFETCH_BYTES:
            self.prefetch([self.addr(w, PREFETCH_BYTES + 64 * line) for w in blk
                           for line in range(-(-self.stride // 64))])
        fb = [None] * (R * C)
        for t in range(self.S):
            sb = b.add(b.mul(jb, _c(self.S)), _c(t)) if self.S > 1 else jb
            wbase = [self.addr(w, t * self.sub_bytes) if t else w for w in blk]
            # two integer chains per (row, group) (even / odd steps; 4-bit: low / high nibbles)
            # halve the vpdpbusd latency chain; exact either way
            first = []
            for i in range(R):
                f = zero_i
                if self.use_corr:
                    cv = self.load(I32, self.addr(a["xc"], (b.add(srow[i], sb), 4)), 4)
                    f = self.splat(cv, V16I32)
                first.append(f)
            acc = [[first[i], zero_i] for j in range(C) for i in range(R)]
            n = 0
            for s in range(self.steps):
                ws = []
                for j in range(C):
                    w64 = self.load(V64I8, self.addr(wbase[j], s * 64), 1)
                    if self.bits == 8:
                        ws.append([(w64, 4 * s)])
                    else:
                        lo = b.and_(w64, ir.Constant(V64I8, [15] * 64))
                        if self.hi16:  # 16 * the high nibble (chain 1 is shifted back at the end)
                            hi = b.and_(w64, ir.Constant(V64I8, [-16] * 64))
                        else:
                            hi = b.and_(b.lshr(w64, ir.Constant(V64I8, [4] * 64)), ir.Constant(V64I8, [15] * 64))
                        ws.append([(lo, 4 * s), (hi, 16 + 4 * s)])  # chain 0: low, chain 1: high nibbles
                for part in range(len(ws[0])):
                    c = n % 2
                    k = ws[0][part][1]
                    for i in range(R):
                        xb = self.load(I32, self.addr(xrow[i], (sb, 32), k), 4)
                        for j in range(C):
                            acc[j * R + i][c] = self.dot(acc[j * R + i][c], ws[j][part][0], xb)
                    n += 1
            for j in range(C):
                for i in range(R):
                    q = j * R + i
                    hi = acc[q][1]
                    if self.hi16:
                        hi = b.ashr(hi, ir.Constant(V16I32, [4] * 16))   # exact: a multiple of 16
                    isum = b.add(acc[q][0], hi)
                    dx = self.load(F32, self.addr(a["xd"], (b.add(srow[i], sb), 4)), 4)
                    p = b.fmul(b.sitofp(isum, V16F32), self.splat(dx, V16F32))
                    fb[q] = p if t == 0 else b.fadd(fb[q], p)
        new = []
        for j in range(C):
            for i in range(R):
                q = j * R + i
                v = b.fadd(facc[q], fb[q]) if self.fmt == "i8c" else b.fadd(facc[q], b.fmul(fb[q], dw[j]))
                if self.has_m:
                    xmv = self.load(F32, self.addr(a["xm"], (b.add(mrow[i], jb), 4)), 4)
                    v = b.fadd(v, b.fmul(m16[j], self.splat(xmv, V16F32)))
                new.append(v)
        facc = loop.next(new)
        for j, g in enumerate(gs):
            if self.fmt == "i8c":
                scale = self.load(V16F32, g["wd"], 4)
            for i in range(R):
                v = facc[j * R + i]
                if self.fmt == "i8c":
                    v = b.fmul(v, scale)
                dst = self.addr(a["out"], (b.add(b.mul(rows[i], a["ldo"]), g["col"]), 4))
                self.store_row(v, dst, g["nval"])

    def prefetch(self, addrs) -> None:
        """``llvm.prefetch`` (read, locality 3, data) of each address."""
        b = self.b
        pf = _declare(self.mod, "llvm.prefetch", ir.VoidType(), [I8.as_pointer(), I32, I32, I32])
        for a in addrs:
            b.call(pf, [b.inttoptr(a, I8.as_pointer()), ir.Constant(I32, 0), ir.Constant(I32, 3), ir.Constant(I32, 1)])

    def store_row(self, v, dst, nval) -> None:
        """16 floats at ``dst``, or the first ``nval`` of them."""
        b = self.b
        full = b.icmp_signed("==", nval, _c(16))
        with b.if_else(full) as (then, other):
            with then:
                self.store(v, dst)
            with other:
                loop = _Loop(b, "tail", _c(0), nval, 1, [])
                e = b.extract_element(v, loop.i)
                self.store(e, self.addr(dst, (loop.i, 4)))
                loop.next([])


def build_ir(isa: str, formats=tuple(FORMATS)) -> ir.Module:
    """The LLVM IR module of the quantized kernels for ``isa`` ("vnni" or "avx2")."""
    if isa not in ("vnni", "avx2"):
        raise ValueError(f"no llvmlite kernels for {isa!r} (the generic path is Numba code)")
    mod = ir.Module(name=f"sparsec_quant_{isa}")
    mod.triple = llvm.get_process_triple()
    for fmt in formats:
        _Gen(mod, fmt, isa).build()
    return mod


@dataclass
class QuantKernels:
    """The JIT-compiled ``sc_q_<fmt>`` functions of one instruction set (their addresses)."""
    isa: str
    cpu: str
    addresses: dict
    assembly: str = field(repr=False)
    _keep_alive: tuple = field(repr=False)


def quant_kernels(isa: str, formats=tuple(FORMATS)) -> QuantKernels:
    """The kernels of ``formats`` for ``isa`` ("vnni" / "avx2"), compiled once per process (about
    0.2 s per format; ``kernel_address`` builds one format at a time)."""
    return _build(isa, tuple(formats))


def kernel_address(isa: str, fmt: str) -> int:
    return int(_build(isa, (fmt,)).addresses[fmt])


@functools.lru_cache(maxsize=None)
def _build(isa: str, formats: tuple) -> QuantKernels:
    if isa not in ISAS or isa == "generic":
        raise ValueError(f"no llvmlite kernels for {isa!r}")
    cpu, named, assembly, keep_alive = jit_compile(isa, build_ir(isa, formats), [f"sc_q_{f}" for f in formats],
                                                   f"sparsec_quant_{isa}_{'_'.join(formats)}")
    addresses = {f: named[f"sc_q_{f}"] for f in formats}
    return QuantKernels(isa=isa, cpu=cpu or "generic", addresses=addresses, assembly=assembly,
                        _keep_alive=keep_alive)
