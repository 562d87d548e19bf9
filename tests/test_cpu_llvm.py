"""The llvmlite-built dot-product kernels: each instruction-set path (AVX-512 VNNI, the AVX2 and
generic fallbacks) gives NumPy's results, the VNNI path really uses ``vpdpbusd`` and the
fallbacks do not, and the kernels can be called from Numba code."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba import njit

from sparsec.runtime.cpu import llvm_dot as D

HOST = D.host_isa()
# the ISAs this machine can run: its best and every fallback below it
RUNNABLE = list(D.ISAS[D.ISAS.index(HOST):]) if HOST != "generic" else ["generic"]
LENGTHS = [0, 1, 15, 16, 17, 63, 64, 65, 127, 1000, 4099]


def isa_params():
    return [pytest.param(isa, marks=pytest.mark.skipif(isa not in RUNNABLE, reason=f"this CPU has no {isa}"))
            for isa in D.ISAS]


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("n", LENGTHS)
def test_int8_dot_matches_numpy(isa, n):
    k = D.dot_kernels(isa)
    rng = np.random.default_rng(n)
    a = rng.integers(-128, 128, n, dtype=np.int8)
    b = rng.integers(-128, 128, n, dtype=np.int8)
    assert k.dot_i8(a, b) == int(a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("isa", isa_params())
def test_int8_dot_extremes(isa):
    # -128 has no positive int8 counterpart: the sign-flip trick must stay exact for it
    k = D.dot_kernels(isa)
    for va, vb in [(-128, -128), (-128, 127), (127, 127), (127, -128)]:
        a, b = np.full(4096, va, np.int8), np.full(4096, vb, np.int8)
        assert k.dot_i8(a, b) == 4096 * va * vb


@pytest.mark.parametrize("isa", isa_params())
@given(pair=st.integers(0, 300).flatmap(lambda n: st.tuples(*[hnp.arrays(np.int8, n)] * 2)))
def test_int8_dot_random(isa, pair):
    a, b = pair
    assert D.dot_kernels(isa).dot_i8(a, b) == int(a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("n", LENGTHS)
def test_f32_dot_matches_numpy(isa, n):
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((2, n)).astype(np.float32)
    ref = float(a.astype(np.float64) @ b.astype(np.float64))
    assert abs(D.dot_kernels(isa).dot_f32(a, b) - ref) <= 1e-5 * max(1.0, float(np.abs(a) @ np.abs(b)))


@pytest.mark.parametrize("isa", isa_params())
def test_each_path_uses_its_instructions(isa):
    asm = D.dot_kernels(isa).assembly
    assert ("vpdpbusd" in asm) == (isa == "vnni")
    if isa == "generic":
        assert "ymm" not in asm and "zmm" not in asm
    if isa == "avx2":
        assert "ymm" in asm and "zmm" not in asm


def test_host_kernels_are_the_best_available():
    assert D.dot_kernels().isa == HOST
    assert D.dot_kernels() is D.dot_kernels(HOST)


def test_callable_from_numba():
    k = D.dot_kernels()
    dot_i8, dot_f32 = k.c_dot_i8, k.c_dot_f32

    @njit
    def rows_times_vector(w, x, wf, xf, out, outf):
        for r in range(w.shape[0]):
            out[r] = dot_i8(w[r].ctypes, x.ctypes, x.size)
            outf[r] = dot_f32(wf[r].ctypes, xf.ctypes, xf.size)

    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (5, 100), dtype=np.int8)
    x = rng.integers(-128, 128, 100, dtype=np.int8)
    wf, xf = w.astype(np.float32), x.astype(np.float32)
    out, outf = np.zeros(5, np.int32), np.zeros(5, np.float32)
    rows_times_vector(w, x, wf, xf, out, outf)
    assert out.tolist() == (w.astype(np.int64) @ x).tolist()
    np.testing.assert_allclose(outf, wf.astype(np.float64) @ xf, rtol=1e-6)


def test_bad_arguments_are_refused():
    k = D.dot_kernels()
    with pytest.raises(TypeError, match="int8"):
        k.dot_i8(np.zeros(4, np.int16), np.zeros(4, np.int16))
    with pytest.raises(ValueError, match="one length"):
        k.dot_f32(np.zeros(4, np.float32), np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="unknown instruction set"):
        D.dot_kernels("sse9")
