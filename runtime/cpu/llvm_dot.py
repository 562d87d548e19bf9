"""Dot-product kernels built with llvmlite directly, for hardware Numba cannot reach: an
int8 x int8 -> int32 dot product on AVX-512 VNNI (``vpdpbusd``) with a portable fallback, and an
f32 dot product. They are the building blocks of the quantized matmuls (a q8_0 block is a
32-long int8 dot product times two scales).

The IR is written with ``llvmlite.ir``, optimized by LLVM's O3 pipeline for a target machine
(the host CPU, or an older one to build a fallback), and JIT-compiled by llvmlite's ORC ``LLJIT``
(``llvmlite.binding.create_lljit_compiler`` + ``JITLibraryBuilder``). Each function is
``i32 sc_dot_i8(i8* a, i8* b, i64 n)`` / ``float sc_dot_f32(float* a, float* b, i64 n)``,
callable from Python (``DotKernels.dot_i8``, through ctypes) and from Numba code (the ctypes
function objects ``DotKernels.c_dot_i8`` / ``c_dot_f32``, called with ``array.ctypes``).

VNNI multiplies *unsigned* bytes by signed bytes. For two signed vectors the VNNI kernel flips
the sign bit of ``a`` (``a ^ 0x80 = a + 128`` as an unsigned byte) and subtracts
``128 * sum(b)``, which another ``vpdpbusd`` against a vector of ones computes: exact for every
int8 value, -128 included. Sums wrap in int32 (no wrap below ``n = 2**31 / 128**2 = 131072``).
"""
from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass, field

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir

#: instruction sets a kernel set can be built for, best first
ISAS = ("vnni", "avx2", "generic")

I8, I32, I64, F32 = ir.IntType(8), ir.IntType(32), ir.IntType(64), ir.FloatType()
V64I8, V16I8, V16I32, V16F32 = ir.VectorType(I8, 64), ir.VectorType(I8, 16), ir.VectorType(I32, 16), \
    ir.VectorType(F32, 16)


def host_isa() -> str:
    """The best of ``ISAS`` this CPU runs."""
    features = llvm.get_host_cpu_features()
    if features.get("avx512vnni", False) and features.get("avx512bw", False):
        return "vnni"
    if features.get("avx2", False):
        return "avx2"
    return "generic"


def _cpu_for(isa: str) -> tuple[str, str]:
    """(cpu name, feature string) to compile ``isa`` for: the host itself when it is the host's
    best, else the oldest CPU of that ISA (so a fallback can be built and tested on a newer host)."""
    host = host_isa()
    if isa == host and isa != "generic":
        return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    if isa == "vnni":
        raise RuntimeError("this CPU has no AVX-512 VNNI; use dot_kernels() for the host's best")
    if isa == "avx2":
        if host != "vnni":
            raise RuntimeError("this CPU has no AVX2")
        return "haswell", ""
    return "", ""  # generic: the target triple's baseline


def _target_machine(cpu: str, features: str) -> llvm.TargetMachine:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu, features=features, opt=3, jit=True)


# ---------------------------------------------------------------------------------------------
# IR

class _Loop:
    """``for i in range(start, stop, step)`` with loop-carried values, in IR (phi nodes)."""

    def __init__(self, builder: ir.IRBuilder, name: str, start, stop, step: int, carried: list):
        self.b = builder
        self.head = builder.append_basic_block(f"{name}.head")
        self.body = builder.append_basic_block(f"{name}.body")
        self.exit = builder.append_basic_block(f"{name}.exit")
        self.pre = builder.block
        self.step = step
        builder.branch(self.head)
        builder.position_at_end(self.head)
        self.i = builder.phi(I64, name=f"{name}.i")
        self.i.add_incoming(start, self.pre)
        self.vals = []
        for v in carried:
            phi = builder.phi(v.type)
            phi.add_incoming(v, self.pre)
            self.vals.append(phi)
        builder.cbranch(builder.icmp_signed("<", self.i, stop), self.body, self.exit)
        builder.position_at_end(self.body)

    def next(self, new_vals: list) -> list:
        """Close the body with the carried values' next state; returns their values after the loop."""
        b = self.b
        self.i.add_incoming(b.add(self.i, ir.Constant(I64, self.step)), b.block)
        for phi, v in zip(self.vals, new_vals):
            phi.add_incoming(v, b.block)
        b.branch(self.head)
        b.position_at_end(self.exit)
        return self.vals


def _load_vector(b: ir.IRBuilder, ptr, i, vtype: ir.VectorType):
    p = b.bitcast(b.gep(ptr, [i]), vtype.as_pointer())
    return b.load(p, align=1)


def _declare(mod: ir.Module, name: str, ret, args):
    return mod.globals.get(name) or ir.Function(mod, ir.FunctionType(ret, args), name=name)


def _splat(t: ir.VectorType, value):
    return ir.Constant(t, [ir.Constant(t.element, value)] * t.count)


def _scalar_tail(b: ir.IRBuilder, a, bp, start, n, acc, step):
    """``acc = step(acc, a[j], b[j])`` for j in start..n (the elements after the last full vector)."""
    loop = _Loop(b, "tail", start, n, 1, [acc])
    (acc,) = loop.next([step(loop.vals[0], b.load(b.gep(a, [loop.i])), b.load(b.gep(bp, [loop.i])))])
    return acc


def _i8_step(b: ir.IRBuilder):
    return lambda acc, x, y: b.add(acc, b.mul(b.sext(x, I32), b.sext(y, I32)))


def _dot_i8_vnni(mod: ir.Module) -> None:
    fn = ir.Function(mod, ir.FunctionType(I32, [I8.as_pointer(), I8.as_pointer(), I64]), name="sc_dot_i8")
    a, bp, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    vnni = _declare(mod, "llvm.x86.avx512.vpdpbusd.512", V16I32, [V16I32, V16I32, V16I32])
    reduce_add = _declare(mod, "llvm.vector.reduce.add.v16i32", I32, [V16I32])
    n_vec = b.and_(n, ir.Constant(I64, -64))
    zero = ir.Constant(V16I32, None)
    loop = _Loop(b, "vnni", ir.Constant(I64, 0), n_vec, 64, [zero, zero])
    acc, bsum = loop.vals
    va = _load_vector(b, a, loop.i, V64I8)
    vb = b.bitcast(_load_vector(b, bp, loop.i, V64I8), V16I32)
    ua = b.bitcast(b.xor(va, _splat(V64I8, -128)), V16I32)              # a + 128, as unsigned bytes
    acc = b.call(vnni, [acc, ua, vb])                                    # sum((a + 128) * b)
    bsum = b.call(vnni, [bsum, _splat(V16I32, 0x01010101), vb])          # sum(b)
    acc, bsum = loop.next([acc, bsum])
    total = b.sub(b.call(reduce_add, [acc]), b.shl(b.call(reduce_add, [bsum]), ir.Constant(I32, 7)))
    total = _scalar_tail(b, a, bp, n_vec, n, total, _i8_step(b))
    b.ret(total)


def _dot_i8_portable(mod: ir.Module) -> None:
    fn = ir.Function(mod, ir.FunctionType(I32, [I8.as_pointer(), I8.as_pointer(), I64]), name="sc_dot_i8")
    a, bp, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    reduce_add = _declare(mod, "llvm.vector.reduce.add.v16i32", I32, [V16I32])
    n_vec = b.and_(n, ir.Constant(I64, -16))
    loop = _Loop(b, "vec", ir.Constant(I64, 0), n_vec, 16, [ir.Constant(V16I32, None)])
    va = b.sext(_load_vector(b, a, loop.i, V16I8), V16I32)
    vb = b.sext(_load_vector(b, bp, loop.i, V16I8), V16I32)
    (acc,) = loop.next([b.add(loop.vals[0], b.mul(va, vb))])
    total = _scalar_tail(b, a, bp, n_vec, n, b.call(reduce_add, [acc]), _i8_step(b))
    b.ret(total)


def _dot_f32(mod: ir.Module, lanes: int = 4) -> None:
    """Four 16-wide FMA accumulators (64 floats per step) hide the FMA latency."""
    fn = ir.Function(mod, ir.FunctionType(F32, [F32.as_pointer(), F32.as_pointer(), I64]), name="sc_dot_f32")
    a, bp, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    fma_v = _declare(mod, "llvm.fma.v16f32", V16F32, [V16F32, V16F32, V16F32])
    fma_s = _declare(mod, "llvm.fma.f32", F32, [F32, F32, F32])
    reduce_fadd = _declare(mod, "llvm.vector.reduce.fadd.v16f32", F32, [F32, V16F32])
    step = 16 * lanes
    n_vec = b.and_(n, ir.Constant(I64, -step))
    loop = _Loop(b, "vec", ir.Constant(I64, 0), n_vec, step, [ir.Constant(V16F32, None)] * lanes)
    accs = []
    for j, acc in enumerate(loop.vals):
        i = b.add(loop.i, ir.Constant(I64, 16 * j))
        accs.append(b.call(fma_v, [_load_vector(b, a, i, V16F32), _load_vector(b, bp, i, V16F32), acc]))
    accs = loop.next(accs)
    acc = accs[0]
    for other in accs[1:]:
        acc = b.fadd(acc, other)
    total = b.call(reduce_fadd, [ir.Constant(F32, 0.0), acc], fastmath=("reassoc",))
    total = _scalar_tail(b, a, bp, n_vec, n, total, lambda acc, x, y: b.call(fma_s, [x, y, acc]))
    b.ret(total)


def build_ir(isa: str) -> ir.Module:
    """The LLVM IR module of the kernels for ``isa``."""
    if isa not in ISAS:
        raise ValueError(f"unknown instruction set {isa!r}; expected one of {', '.join(ISAS)}")
    mod = ir.Module(name=f"sparsec_dot_{isa}")
    mod.triple = llvm.get_process_triple()
    (_dot_i8_vnni if isa == "vnni" else _dot_i8_portable)(mod)
    _dot_f32(mod)
    return mod


# ---------------------------------------------------------------------------------------------
# JIT

I8_DOT = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_int8),
                          ctypes.c_int64)
F32_DOT = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float),
                           ctypes.c_int64)


@dataclass
class DotKernels:
    """JIT-compiled ``sc_dot_i8`` / ``sc_dot_f32`` for one instruction set."""
    isa: str
    cpu: str
    addresses: dict
    assembly: str
    c_dot_i8: ctypes._CFuncPtr = field(repr=False)
    c_dot_f32: ctypes._CFuncPtr = field(repr=False)
    _keep_alive: tuple = field(repr=False)  # the LLJIT and its resource tracker own the code

    def dot_i8(self, a: np.ndarray, b: np.ndarray) -> int:
        """``sum(int32(a) * int32(b))`` of two contiguous int8 vectors of one length."""
        a, b = _pair(a, b, np.int8)
        return int(self.c_dot_i8(a.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
                                 b.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)), a.size))

    def dot_f32(self, a: np.ndarray, b: np.ndarray) -> float:
        """``sum(a * b)`` of two contiguous float32 vectors (f32 FMA accumulation)."""
        a, b = _pair(a, b, np.float32)
        return float(self.c_dot_f32(a.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                    b.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), a.size))


def _pair(a, b, dtype):
    if a.dtype != dtype or b.dtype != dtype:
        raise TypeError(f"expected two {np.dtype(dtype).name} vectors, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two 1-d vectors of one length, got shapes {a.shape} and {b.shape}")
    if not (a.flags.c_contiguous and b.flags.c_contiguous):
        raise ValueError("the vectors must be contiguous")
    return a, b


def dot_kernels(isa: str | None = None) -> DotKernels:
    """The kernels for ``isa`` (default: the host's best), compiled once per process."""
    return _build(isa or host_isa())


def jit_compile(isa: str, module_ir: ir.Module, names, library: str):
    """Optimize ``module_ir`` for ``isa``'s CPU and JIT it: ``(cpu, {name: address}, assembly,
    keep_alive)``; ``keep_alive`` must outlive every use of the addresses."""
    cpu, features = _cpu_for(isa)
    tm = _target_machine(cpu, features)
    module = llvm.parse_assembly(str(module_ir))
    module.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(module, pb)
    assembly = tm.emit_assembly(module)
    jit = llvm.create_lljit_compiler(tm)
    builder = llvm.JITLibraryBuilder().add_ir(str(module))
    for name in names:
        builder.export_symbol(name)
    tracker = builder.link(jit, library)
    return cpu, {name: tracker[name] for name in names}, assembly, (jit, tracker, tm)


@functools.lru_cache(maxsize=None)
def _build(isa: str) -> DotKernels:
    if isa not in ISAS:
        raise ValueError(f"unknown instruction set {isa!r}; expected one of {', '.join(ISAS)}")
    cpu, addresses, assembly, keep_alive = jit_compile(isa, build_ir(isa), ("sc_dot_i8", "sc_dot_f32"),
                                                       f"sparsec_dot_{isa}")
    return DotKernels(isa=isa, cpu=cpu or "generic", addresses=addresses, assembly=assembly,
                      c_dot_i8=I8_DOT(addresses["sc_dot_i8"]), c_dot_f32=F32_DOT(addresses["sc_dot_f32"]),
                      _keep_alive=keep_alive)
