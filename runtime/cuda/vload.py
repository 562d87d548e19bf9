"""16-byte loads: ``load4(a, i)`` gives ``a[i], a[i+1], a[i+2], a[i+3]`` of a 1-D device array of
32-bit elements (float32, int32, uint32) with one ``ld.global.nc.v4`` instruction.

Memory-bound kernels on Hopper want 16-byte accesses per thread (fewer instructions, more bytes
in flight per load); numba-cuda has no vector loads, so this is an intrinsic emitting the PTX
instruction as inline assembly (as numba-cuda's own ``cache_hints`` do for scalar loads). The
address must be 16-byte aligned: the caller guarantees it (``i`` a multiple of 4 and the array
starting on a 16-byte boundary: ``aligned``), since a misaligned vector load is a sticky device
error. ``.nc``: through the read-only cache, for arrays the kernel does not write (weights).
Under the simulator ``load4`` is the same four reads in Python.
"""
from __future__ import annotations

from numba import cuda

from .launch import simulator


def aligned(a, nbytes: int = 16) -> bool:
    """Whether device array ``a`` starts on an ``nbytes`` boundary (the simulator: always)."""
    if simulator():
        return True
    return a.device_ctypes_pointer.value % nbytes == 0


def _load4_py(a, i):
    return a[i], a[i + 1], a[i + 2], a[i + 3]


def _make_intrinsic():
    from llvmlite import ir
    from numba.core import types
    try:
        from numba.cuda import cgutils
        from numba.cuda.extending import intrinsic
    except ImportError:  # pragma: no cover - an older numba-cuda (a GPU machine's image)
        from numba.core import cgutils
        from numba.core.extending import intrinsic

    @intrinsic
    def load4(typingctx, a, i):
        if not (isinstance(a, types.Array) and a.ndim == 1 and isinstance(i, types.Integer)
                and isinstance(a.dtype, (types.Float, types.Integer)) and a.dtype.bitwidth == 32):
            return None
        sig = types.UniTuple(a.dtype, 4)(a, i)

        def codegen(context, builder, sig, args):
            aty, ity = sig.args
            arr = context.make_array(aty)(context, builder, value=args[0])
            idx = context.cast(builder, args[1], ity, types.intp)
            ptr = cgutils.get_item_pointer(context, builder, aty, arr, [idx], wraparound=False)
            elt = context.get_value_type(aty.dtype)
            reg, kind = ("f", "f32") if isinstance(aty.dtype, types.Float) else ("r", "u32")
            fn = ir.FunctionType(ir.LiteralStructType([elt] * 4), [ptr.type])
            asm = ir.InlineAsm(fn, f"ld.global.nc.v4.{kind} {{$0, $1, $2, $3}}, [$4];",
                               ",".join([f"={reg}"] * 4 + ["l"]))
            res = builder.call(asm, [ptr])
            return context.make_tuple(builder, sig.return_type, [builder.extract_value(res, j) for j in range(4)])
        return sig, codegen
    return load4


load4 = _load4_py if simulator() else _make_intrinsic()
#: the same four reads as a device function (any 1-D array): what kernels that may take the
#: vector path bind where they do not, so their code types either way
load4_scalar = _load4_py if simulator() else cuda.jit(device=True)(_load4_py)
