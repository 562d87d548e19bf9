"""Quantized weight formats: round trips per mode with their error bounds, exact values,
zero and constant blocks, extremes, padding of K, non-finite weights refused, storage parts."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sparsec.quant import (FORMATS, QuantizationError, QuantizedTensor, block_size, dequantize, format_for_mode,
                           quantize, step_size)
from sparsec.quant.formats import F16_MAX

F16_EPS = 2.0 ** -11   # relative rounding of a float16 (normal range)


def weights(max_k=80):
    shape = st.tuples(st.integers(1, 4), st.integers(1, max_k))
    elems = st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False)
    scale = st.sampled_from([1e-3, 1.0, 50.0])
    return st.builds(lambda a, s: (a * s).astype(np.float32), hnp.arrays(np.float32, shape, elements=elems), scale)


def unclipped(qt, w):
    """Elements whose ideal q lies inside the format's range (the half-step bound holds for them)."""
    if qt.fmt == "q4_0":
        b = block_size("q4_0")
        d = np.repeat(qt.parts["d"].astype(np.float32), b, axis=-1)[..., :w.shape[-1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(d == 0, 0, w / d)
        return r <= 7.5
    return np.ones(w.shape, bool)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=40, deadline=None)
@given(w=weights())
def test_round_trip_within_half_a_step(fmt, w):
    qt = quantize(w, fmt, "w")
    qt.check()
    back = dequantize(qt)
    assert back.shape == w.shape and back.dtype == np.float32
    err = np.abs(back - w)
    step = np.abs(step_size(qt))
    ok = unclipped(qt, w)
    # half a step of the stored (rounded) scale, plus float32 rounding of d*q (+ m)
    slack = 1e-6 * np.maximum(np.abs(w), np.abs(back)) + 1e-30
    if fmt.startswith("int4"):   # the f16 minimum is rounded too: at most its f16 rounding error
        slack = slack + F16_EPS * np.abs(w).max()
    assert np.all(err[ok] <= 0.5 * step[ok] + slack[ok]), (err / np.maximum(step, 1e-30)).max()
    # q4_0's range is [-8, 7] steps with the extreme at -8: the other side loses up to one step
    assert np.all(err[~ok] <= step[~ok] * (1 + 1e-6))


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
@settings(max_examples=30, deadline=None)
@given(d=st.floats(0.0010004043579101562, 100.0, width=16), data=st.data())
def test_representable_values_are_exact(fmt, d, data):
    """x = d*q with d a float16 and the block's extreme at the format's end round-trips exactly."""
    lo, hi, end = (-127, 127, 127) if fmt == "q8_0" else (-8, 7, -8)
    q = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=32, max_size=32)), np.float32)
    q[data.draw(st.integers(0, 31))] = end
    w = (np.float32(d) * q).reshape(1, 32)
    np.testing.assert_array_equal(dequantize(quantize(w, fmt)), w)


@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_and_constant_blocks(fmt):
    w = np.zeros((4, 128), np.float32)
    w[1] = 0.75          # a float16 constant
    w[2, :64] = -3.0
    w[3] = 0.1           # not a float16
    qt = quantize(w, fmt)
    back = dequantize(qt)
    np.testing.assert_array_equal(back[0], 0.0)
    assert np.all(np.abs(back - w) <= 0.5 * step_size(qt) + 1e-7)
    if fmt.startswith("int4"):   # min = the constant, scale 0: exact
        np.testing.assert_array_equal(back[1], w[1])


@pytest.mark.parametrize("fmt", FORMATS)
def test_extremes_and_tiny_values(fmt):
    w = np.array([[6e4, -6e4] + [1.0] * 30, [1e-6, -2e-6] + [0.0] * 30, [3e-8, 1e-9] + [-1e-8] * 30], np.float32)
    qt = quantize(w, fmt)
    back = dequantize(qt)
    assert np.all(np.isfinite(back))
    if fmt == "q4_0":   # +6e4 and -6e4 in one block: the side opposite the extreme is clipped at 7 steps
        assert np.all(np.abs(back - w)[0] <= np.abs(step_size(qt))[0])
    else:
        np.testing.assert_allclose(back[0, :2], w[0, :2], rtol=2e-3)
    assert np.all(np.abs(back - w)[1:] <= 2e-6)


@pytest.mark.parametrize("fmt,big", [("q8_0", F16_MAX * 200), ("q4_0", F16_MAX * 10), ("int4", -F16_MAX * 2)])
def test_scale_overflowing_f16_is_refused(fmt, big):
    w = np.full((1, 32), big, np.float32)
    with pytest.raises(QuantizationError, match="overflows float16"):
        quantize(w, fmt, "big.weight")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_name_the_tensor(fmt, bad):
    w = np.ones((2, 40), np.float32)
    w[1, 7] = bad
    with pytest.raises(QuantizationError, match=r"'layers.3.mlp.up_proj.weight'.*\[1, 7\]"):
        quantize(w, fmt, "layers.3.mlp.up_proj.weight")


def test_k_not_a_multiple_of_the_block_is_padded():
    w = np.random.default_rng(0).standard_normal((5, 45)).astype(np.float32)
    qt = quantize(w, "q8_0")
    assert qt.parts["qs"].shape == (5, 2, 32)
    assert np.all(qt.parts["qs"][:, 1, 13:] == 0)
    assert dequantize(qt).shape == (5, 45)


def test_expert_stacks_quantize_per_row():
    w = np.random.default_rng(1).standard_normal((3, 4, 64)).astype(np.float32)
    for fmt in FORMATS:
        qt = quantize(w, fmt)
        for e in range(3):
            np.testing.assert_array_equal(dequantize(qt)[e], dequantize(quantize(w[e], fmt)))


def test_sizes_per_format():
    w = np.zeros((4096, 1024), np.float32)
    bits = {f: quantize(w, f).nbytes * 8 / w.size for f in FORMATS}
    assert bits["q8_0"] == 8.5 and bits["q4_0"] == 4.5 and bits["int4"] == 5.0
    assert bits["int4g128"] == 4.25 and abs(bits["i8c"] - 8.03125) < 1e-9


def test_storage_round_trip_and_bad_metadata():
    w = np.random.default_rng(2).standard_normal((6, 64)).astype(np.float32)
    qt = quantize(w, "q4_0")
    tensors = qt.to_tensors("w")
    parts = {k.split("::")[1]: v for k, v in tensors.items()}
    qt2 = QuantizedTensor.from_tensors(qt.metadata(), parts)
    np.testing.assert_array_equal(dequantize(qt2), dequantize(qt))
    with pytest.raises(QuantizationError, match="malformed"):
        QuantizedTensor.from_tensors("q4_0;6by64", parts)
    with pytest.raises(QuantizationError, match="part 'qs'"):
        QuantizedTensor.from_tensors("q4_0;6x64;blocks", {**parts, "qs": parts["qs"][:, :1]})


def test_modes():
    assert format_for_mode("int8") == "i8c" and format_for_mode("int4", 128) == "int4g128"
    with pytest.raises(ValueError, match="unknown quantization mode 'q5_k'"):
        format_for_mode("q5_k")
    with pytest.raises(ValueError, match="group must be 32, 64 or 128"):
        format_for_mode("int4", 48)


def test_asarray_is_the_dequantized_weight():
    w = np.random.default_rng(3).standard_normal((2, 32)).astype(np.float32)
    qt = quantize(w, "int4g64")
    np.testing.assert_array_equal(np.asarray(qt), dequantize(qt))
    assert np.asarray(qt, dtype=np.float64).dtype == np.float64
