"""Scalar numerics shared by the CPU kernels: f16 / bf16 conversions with NumPy's and ml_dtypes'
rounding, and bit casts.

Numba cannot type ``ml_dtypes.bfloat16`` arrays, and its float16 support is partial, so kernels
receive f16 and bf16 arrays as ``uint16`` views and convert each element with these helpers:

- ``f16_to_f32`` / ``bf16_to_f32``: exact widening of the 16-bit patterns.
- ``f32_to_f16`` / ``f32_to_bf16``: round to nearest even (NaN stays NaN), the bit pattern NumPy
  (``astype(float16)``) and ml_dtypes (``astype(bfloat16)``) produce.
- ``round_f16`` / ``round_bf16``: an f32 value rounded to the 16-bit format and widened back (what a
  reference computes when it rounds an intermediate result to the operand dtype).
- ``f64_to_f16``: NumPy rounds float64 to float16 directly (one rounding); going through f32 would
  round twice, so the f64 value is first rounded to f32 *to odd* (exact for the later rounding
  since f32 keeps 13 more bits than f16). ml_dtypes converts float64 to bfloat16 through float32,
  so ``f32_to_bf16(np.float32(x))`` is already its rounding.

On CPUs with F16C the half conversions are single LLVM ``fpext``/``fptrunc`` instructions
(intrinsics below); elsewhere (or when Numba targets a generic CPU) a bit-exact software version
is used, since LLVM would otherwise emit calls to compiler-rt helpers that the JIT may not resolve.
"""
from __future__ import annotations

import hashlib

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# ---------------------------------------------------------------------------------------------
# bit casts


@intrinsic
def f32_bits(typingctx, x):
    """The IEEE bits of a float32 as uint32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@intrinsic
def f32_from_bits(typingctx, b):
    """The float32 whose IEEE bits are ``b`` (any integer type; the low 32 bits count)."""
    if not isinstance(b, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        w = signature.args[0].bitwidth
        if w > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif w < 32:
            v = builder.zext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())
    return types.float32(b), codegen


@intrinsic
def _hw_f16_to_f32(typingctx, h):
    if not isinstance(h, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        w = signature.args[0].bitwidth
        if w > 16:
            v = builder.trunc(v, ir.IntType(16))
        return builder.fpext(builder.bitcast(v, ir.HalfType()), ir.FloatType())
    return types.float32(h), codegen


@intrinsic
def _hw_f32_to_f16(typingctx, x):
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))
    return types.uint16(types.float32), codegen


def _host_has_f16c() -> bool:
    try:
        import numba
        from llvmlite import binding as llvm
        if numba.config.CPU_NAME not in (None, "", "host"):
            return False  # a generic target (portable caches): no guarantee of F16C
        feats = llvm.get_host_cpu_features()
        return bool(feats.get("f16c", False))
    except Exception:  # pragma: no cover - unknown platform: the software path is always right
        return False


HAS_F16C = _host_has_f16c()

# ---------------------------------------------------------------------------------------------
# software half conversions (bit exact, round to nearest even)


@njit(cache=True)
def f16_to_f32_sw(h):
    h = np.uint32(h) & np.uint32(0xFFFF)
    sign = (h & np.uint32(0x8000)) << np.uint32(16)
    e = (h >> np.uint32(10)) & np.uint32(0x1F)
    m = h & np.uint32(0x3FF)
    if e == 0:
        if m == 0:
            return f32_from_bits(sign)
        ee = np.int32(1)
        while (m & np.uint32(0x400)) == 0:
            m = m << np.uint32(1)
            ee -= 1
        m = m & np.uint32(0x3FF)
        return f32_from_bits(sign | (np.uint32(ee + 112) << np.uint32(23)) | (m << np.uint32(13)))
    if e == 31:
        return f32_from_bits(sign | np.uint32(0x7F800000) | (m << np.uint32(13)))
    return f32_from_bits(sign | ((e + np.uint32(112)) << np.uint32(23)) | (m << np.uint32(13)))


@njit(cache=True)
def f32_to_f16_sw(x):
    b = f32_bits(np.float32(x))
    sign = (b >> np.uint32(16)) & np.uint32(0x8000)
    e = np.int32((b >> np.uint32(23)) & np.uint32(0xFF))
    m = b & np.uint32(0x7FFFFF)
    if e == 255:
        if m != 0:
            return np.uint16(sign | np.uint32(0x7E00) | (m >> np.uint32(13)))
        return np.uint16(sign | np.uint32(0x7C00))
    ee = e - 112
    if ee >= 31:
        return np.uint16(sign | np.uint32(0x7C00))
    if ee <= 0:
        if ee < -10:
            return np.uint16(sign)
        m = m | np.uint32(0x800000)
        shift = np.uint32(14 - ee)
        half = m >> shift
        rem = m & ((np.uint32(1) << shift) - np.uint32(1))
        halfway = np.uint32(1) << (shift - np.uint32(1))
        if rem > halfway or (rem == halfway and (half & np.uint32(1)) != 0):
            half += np.uint32(1)
        return np.uint16(sign | half)
    half = (np.uint32(ee) << np.uint32(10)) | (m >> np.uint32(13))
    rem = m & np.uint32(0x1FFF)
    if rem > np.uint32(0x1000) or (rem == np.uint32(0x1000) and (half & np.uint32(1)) != 0):
        half += np.uint32(1)
    return np.uint16(sign | half)


if HAS_F16C:
    f16_to_f32 = _hw_f16_to_f32
    f32_to_f16 = _hw_f32_to_f16
else:  # pragma: no cover - exercised on hosts without F16C
    f16_to_f32 = f16_to_f32_sw
    f32_to_f16 = f32_to_f16_sw


# ---------------------------------------------------------------------------------------------
# bfloat16 (ml_dtypes semantics)


@njit(cache=True)
def bf16_to_f32(h):
    return f32_from_bits(np.uint32(h) << np.uint32(16))


@njit(cache=True)
def f32_to_bf16(x):
    b = f32_bits(np.float32(x))
    if (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):  # NaN: a quiet NaN of the same sign
        return np.uint16((b >> np.uint32(16)) | np.uint32(0x40))
    b = b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))
    return np.uint16(b >> np.uint32(16))


@njit(cache=True)
def round_bf16(x):
    """``x`` (float32) rounded to bfloat16 precision, as float32."""
    return bf16_to_f32(f32_to_bf16(x))


@njit(cache=True)
def round_f16(x):
    """``x`` (float32) rounded to float16 precision, as float32."""
    return f16_to_f32(f32_to_f16(np.float32(x)))


@njit(cache=True)
def f64_to_f32_odd(x):
    """float64 -> float32 rounding to odd (truncate, then set the last bit if inexact)."""
    r = np.float32(x)
    if np.float64(r) == x or x != x:
        return r
    b = f32_bits(r)
    if abs(np.float64(r)) > abs(x):  # rounded away from zero: step back one ulp
        b = b - np.uint32(1)
    return f32_from_bits(b | np.uint32(1))


@njit(cache=True)
def f64_to_f16(x):
    """float64 -> float16 bits with a single rounding (NumPy's ``astype(float16)``)."""
    return f32_to_f16(f64_to_f32_odd(np.float64(x)))


@njit(cache=True)
def f64_round_f16(x):
    return f16_to_f32(f64_to_f16(x))


@njit(cache=True)
def f64_round_bf16(x):
    return bf16_to_f32(f32_to_bf16(np.float32(x)))


# ---------------------------------------------------------------------------------------------
# vectorizable float32 math
#
# Numba lowers np.exp & co. to scalar libm calls (no SVML here), which LLVM cannot vectorize;
# these straight-line versions (Cephes polynomials, selects instead of branches) vectorize with
# AVX2/AVX-512 and stay within ~2 ulp of the correctly rounded result.

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_MAGIC = np.float32(12582912.0)  # 1.5 * 2**23: adding and subtracting it rounds to an integer


@njit(cache=True)
def exp_f32(x):
    """e**x in float32 (overflow to inf, gradual underflow, NaN propagates)."""
    x = np.float32(x)
    xc = x if x < np.float32(89.0) else np.float32(89.0)
    xc = xc if xc > np.float32(-104.0) else np.float32(-104.0)
    nf = (xc * _LOG2E + _MAGIC) - _MAGIC
    r = xc - nf * _LN2_HI
    r = r - nf * _LN2_LO
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    y = p * (r * r) + r + np.float32(1.0)
    n = np.int32(nf)
    h = n >> np.int32(1)
    s1 = f32_from_bits(np.uint32(h + np.int32(127)) << np.uint32(23))
    s2 = f32_from_bits(np.uint32(n - h + np.int32(127)) << np.uint32(23))
    y = (y * s1) * s2
    return y if x == x else x


@njit(cache=True)
def tanh_f32(x):
    x = np.float32(x)
    ax = abs(x)
    z = x * x
    p = np.float32(-5.70498872745e-3)
    p = p * z + np.float32(2.06390887954e-2)
    p = p * z - np.float32(5.37397155531e-2)
    p = p * z + np.float32(1.33314422036e-1)
    p = p * z - np.float32(3.33332819422e-1)
    small = p * z * x + x
    e = exp_f32(np.float32(2.0) * ax)
    big = np.float32(1.0) - np.float32(2.0) / (e + np.float32(1.0))
    big = big if x >= np.float32(0.0) else -big
    return small if ax < np.float32(0.625) else big


@njit(cache=True)
def sigmoid_f32(x):
    """The stable form: exp of a non-positive number only."""
    x = np.float32(x)
    e = exp_f32(-abs(x))
    d = np.float32(1.0) + e
    return (np.float32(1.0) / d) if x >= np.float32(0.0) else (e / d)


@intrinsic
def fmuladd(typingctx, a, b, c):
    """``a * b + c`` for float32, fused when the CPU has FMA (``llvm.fmuladd``)."""
    if not (a == b == c == types.float32):
        return None

    def codegen(context, builder, signature, args):
        f = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fmuladd", [f], ir.FunctionType(f, [f, f, f]))
        return builder.call(fn, args)
    return types.float32(types.float32, types.float32, types.float32), codegen


_F = np.float32


@njit(cache=True)
def _erfc_big(t, s):
    """For t = |a| > 0.927734375: erfc(t) = exp(r) (N. Juffa's erff; max error ~1 ulp)."""
    r = fmuladd(_F(-1.72853470e-5), t, _F(3.83197126e-4))
    u = fmuladd(_F(-3.88396438e-3), t, _F(2.42546219e-2))
    r = fmuladd(r, s, u)
    r = fmuladd(r, t, _F(-1.06777877e-1))
    r = fmuladd(r, t, _F(-6.34846687e-1))
    r = fmuladd(r, t, _F(-1.28717512e-1))
    r = fmuladd(r, t, -t)
    return exp_f32(r)


@njit(cache=True)
def _erf_small(a, s):
    q = _F(-5.96761703e-4)
    q = fmuladd(q, s, _F(4.99119423e-3))
    q = fmuladd(q, s, _F(-2.67681349e-2))
    q = fmuladd(q, s, _F(1.12819925e-1))
    q = fmuladd(q, s, _F(-3.76125336e-1))
    q = fmuladd(q, s, _F(1.28379166e-1))
    return fmuladd(q, a, a)


@njit(cache=True)
def erf_f32(a):
    """erf in float32, branch free (max error 1.0 ulp against math.erf over [-5, 5])."""
    a = _F(a)
    t = abs(a)
    s = a * a
    big = _F(1.0) - _erfc_big(t, s)
    big = big if a >= _F(0.0) else -big
    return big if t > _F(0.927734375) else _erf_small(a, s)


@njit(cache=True)
def gelu_f32(x):
    """``0.5 * x * (1 + erf(x / sqrt(2)))`` in float32; for large |x| the factor comes straight
    from erfc (``2 - erfc`` or ``erfc``) so negative tails keep their relative accuracy."""
    x = _F(x)
    a = x * _F(0.7071067811865476)
    t = abs(a)
    s = a * a
    e = _erfc_big(t, s)
    big = (_F(2.0) - e) if a >= _F(0.0) else e
    f = big if t > _F(0.927734375) else _F(1.0) + _erf_small(a, s)
    return _F(0.5) * x * f


@njit(cache=True, nogil=True)
def _pairwise_block(a, base, n):
    a = a[base:base + n]  # index from 0: no negative-index checks in the loop
    base = 0
    if n < 8:
        r = a.dtype.type(0)
        for i in range(n):
            r += a[base + i]
        return r
    r0, r1, r2, r3 = a[base], a[base + 1], a[base + 2], a[base + 3]
    r4, r5, r6, r7 = a[base + 4], a[base + 5], a[base + 6], a[base + 7]
    m = n - n % 8
    i = 8
    while i < m:
        r0 += a[base + i]
        r1 += a[base + i + 1]
        r2 += a[base + i + 2]
        r3 += a[base + i + 3]
        r4 += a[base + i + 4]
        r5 += a[base + i + 5]
        r6 += a[base + i + 6]
        r7 += a[base + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[base + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def pairwise_sum(a, base, n):
    """``a[base:base+n].sum()`` in a's dtype with NumPy's pairwise summation order (8 partial
    sums in blocks of up to 128 elements, halves above that), so row statistics round exactly
    like the references' ``np.sum``/``np.mean`` over a contiguous last axis. (NumPy recurses;
    this walks the same tree with an explicit stack: Numba cannot cache recursive functions.)"""
    if n <= 128:
        return _pairwise_block(a, base, n)
    sb = np.empty(64, np.int64)
    sn = np.empty(64, np.int64)
    st = np.zeros(64, np.int8)
    vals = np.empty(64, a.dtype)
    nv = 0
    top = 0
    sb[0] = base
    sn[0] = n
    while top >= 0:
        b = sb[top]
        m = sn[top]
        if m <= 128:
            vals[nv] = _pairwise_block(a, b, m)
            nv += 1
            top -= 1
            continue
        n2 = m // 2
        n2 -= n2 % 8
        if st[top] == 0:
            st[top] = 1
            top += 1
            sb[top], sn[top], st[top] = b, n2, 0
        elif st[top] == 1:
            st[top] = 2
            top += 1
            sb[top], sn[top], st[top] = b + n2, m - n2, 0
        else:
            vals[nv - 2] = vals[nv - 2] + vals[nv - 1]
            nv -= 1
            top -= 1
    return vals[0]


def fast_exp(x):
    """``exp`` that uses ``exp_f32`` for float32 and ``np.exp`` otherwise (inside njit code)."""
    return np.exp(x)


@overload(fast_exp, jit_options={"cache": True})
def _ol_fast_exp(x):
    if x == types.float32:
        return lambda x: exp_f32(x)
    return lambda x: np.exp(x)


def _fingerprint() -> str:
    import inspect
    import sys
    src = inspect.getsource(sys.modules[__name__])
    return hashlib.sha256(f"{src}|f16c={HAS_F16C}".encode()).hexdigest()[:16]


#: changes whenever this module (inlined into every generated kernel) or its F16C choice changes
FINGERPRINT = _fingerprint()
