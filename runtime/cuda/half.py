"""f16 / bf16 on the CUDA target: device functions converting the 16-bit storage formats to the
f32 the kernels compute in, and back with one rounding (the references' "compute in f32, round to
the operand dtype").

Storage: f16 tensors are numba ``float16`` device arrays (``cvt.f32.f16`` / ``cvt.rn.f16.f32`` on
the device, NumPy's conversions under the simulator: both round to nearest even); numba cannot
type ``ml_dtypes.bfloat16``, so kernels receive bf16 tensors as ``uint16`` views
(``launch.CudaFunction`` views every bfloat16 argument as uint16 at launch) and convert with the
bit operations below (round to nearest even, NaN stays a quiet NaN of the same sign: the bit
pattern ml_dtypes' ``astype(bfloat16)`` gives, as ``sparsec.runtime.cpu.numerics``).

The f32 <-> bits reinterpretation is libdevice's ``float_as_int`` / ``int_as_float`` (one
``mov.b32``) on the device; the simulator has no libdevice, so there it is a NumPy ``view``.

Kernels written for several storage dtypes take ``load(dt)`` / ``store(dt)`` (device functions
for a storage dtype name: ``"f32"``, ``"f64"``, ``"f16"``, ``"bf16"``) as closure constants:
``v = ld(a[i])`` widens to the compute type, ``a[i] = st(v)`` rounds once.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from .launch import simulator

HALF = ("f16", "bf16")

if simulator():
    def _f32_bits(x):
        return np.float32(x).view(np.uint32)

    def _f32_from_bits(b):
        return np.uint32(b).view(np.float32)
else:
    from numba.cuda import libdevice

    @cuda.jit(device=True, inline=True)
    def _f32_bits(x):
        return np.uint32(libdevice.float_as_int(np.float32(x)))

    @cuda.jit(device=True, inline=True)
    def _f32_from_bits(b):
        return libdevice.int_as_float(np.int32(b))


@cuda.jit(device=True, inline=True)
def bf16_to_f32(h):
    """The exact f32 value of bf16 bits ``h`` (uint16)."""
    return _f32_from_bits(np.uint32(h) << np.uint32(16))


@cuda.jit(device=True, inline=True)
def bf16_pair(u):
    """The two bf16 values packed in a uint32 word (the lower-addressed element in the low
    half: little-endian), as f32."""
    u = np.uint32(u)
    return _f32_from_bits(u << np.uint32(16)), _f32_from_bits(u & np.uint32(0xFFFF0000))


@cuda.jit(device=True, inline=True)
def f32_to_bf16(x):
    """``x`` (f32) rounded to nearest even bf16, as uint16 bits; NaN stays a quiet NaN."""
    b = _f32_bits(np.float32(x))
    if (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):
        return np.uint16((b >> np.uint32(16)) | np.uint32(0x40))
    b = b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))
    return np.uint16(b >> np.uint32(16))


@cuda.jit(device=True, inline=True)
def round_bf16(x):
    """``x`` (f32) rounded to bf16 precision, as f32."""
    return bf16_to_f32(f32_to_bf16(x))


@cuda.jit(device=True, inline=True)
def f16_to_f32(h):
    return np.float32(h)


@cuda.jit(device=True, inline=True)
def f32_to_f16(x):
    return np.float16(x)


@cuda.jit(device=True, inline=True)
def round_f16(x):
    """``x`` (f32) rounded to f16 precision, as f32."""
    return np.float32(np.float16(x))


@cuda.jit(device=True, inline=True)
def f64_round_f16(x):
    """``x`` (f64) rounded once to f16 (NumPy's direct float64 -> float16), as f32."""
    return np.float32(np.float16(x))


@cuda.jit(device=True, inline=True)
def identity(x):
    return x


@cuda.jit(device=True, inline=True)
def _to_f32(x):
    return np.float32(x)


@cuda.jit(device=True, inline=True)
def _to_f64(x):
    return np.float64(x)


_LOAD = {"f16": f16_to_f32, "bf16": bf16_to_f32, "f32": identity, "f64": identity}
_STORE = {"f16": f32_to_f16, "bf16": f32_to_bf16, "f32": _to_f32, "f64": _to_f64}


def load(dt: str):
    """Device function widening one stored element of dtype ``dt`` to its compute type."""
    return _LOAD[dt]


def store(dt: str):
    """Device function rounding a compute value once to the storage of dtype ``dt``."""
    return _STORE[dt]


def compute_np(dt: str):
    """NumPy scalar type a kernel computes ``dt`` values in (f32 for the 16-bit floats)."""
    return np.float64 if dt == "f64" else np.float32


_VARIANTS: dict = {}


def variant(fn, load_dt: str | None = None, store_dt: str | None = None):
    """The kernel ``fn`` (a ``launch.CudaFunction`` whose Python function reads elements through the
    globals ``ld(...)`` and writes them through ``st(...)``, both ``identity`` in its module) with
    ``ld`` widening ``load_dt`` elements and ``st`` rounding to ``store_dt`` storage (f16/bf16;
    anything else keeps ``identity``). The same function object otherwise, with its own globals, so
    numba compiles it as a separate kernel; the name gets ``_<dt>`` suffixes."""
    load_dt = load_dt if load_dt in HALF else None
    store_dt = store_dt if store_dt in HALF else None
    if load_dt is None and store_dt is None:
        return fn
    key = (fn.pyfunc, load_dt, store_dt)
    v = _VARIANTS.get(key)
    if v is None:
        import types as _pytypes

        from .launch import CudaFunction
        f = fn.pyfunc
        g = dict(f.__globals__)
        g["ld"] = load(load_dt) if load_dt else identity
        g["st"] = store(store_dt) if store_dt else identity
        name = f.__name__ + (f"_ld_{load_dt}" if load_dt else "") + (f"_st_{store_dt}" if store_dt else "")
        nf = _pytypes.FunctionType(f.__code__, g, name, f.__defaults__, f.__closure__)
        nf.__qualname__ = name
        nf.__doc__ = f.__doc__
        v = _VARIANTS[key] = CudaFunction(nf)
    return v
