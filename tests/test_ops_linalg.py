"""sc.matmul and sc.linear: shape rules (batched broadcasting, 1-D operands, transposes,
quantized weights), references against NumPy computed here, errors and text round trips."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsec as sc
from opcheck import out_types, trace_run  # noqa: F401
from sparsec import ops
from sparsec.ir import QuantType, TensorType, get_opdef

RNG = np.random.default_rng(2)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@st.composite
def matmul_case(draw):
    m, k, n = (draw(st.integers(1, 4)) for _ in range(3))
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    a_batch = [d if draw(st.booleans()) else 1 for d in batch][draw(st.integers(0, len(batch))):]
    b_batch = [d if draw(st.booleans()) else 1 for d in batch][draw(st.integers(0, len(batch))):]
    a_shape = a_batch + [m, k]
    b_shape = b_batch + [k, n]
    if not a_batch and draw(st.booleans()):
        a_shape = [k]
    if not b_batch and draw(st.booleans()):
        b_shape = [k]
    ta = len(a_shape) >= 2 and draw(st.booleans())
    tb = len(b_shape) >= 2 and draw(st.booleans())
    return a_shape, b_shape, ta, tb


@given(matmul_case())
def test_matmul_matches_numpy(case):
    a_shape, b_shape, ta, tb = case
    a, b = rand(*a_shape), rand(*b_shape)
    # pass the operands stored transposed when the flag is set
    a_in = np.ascontiguousarray(np.swapaxes(a, -1, -2)) if ta else a
    b_in = np.ascontiguousarray(np.swapaxes(b, -1, -2)) if tb else b
    g, (out,) = trace_run(lambda x, y: ops.matmul(x, y, transpose_a=ta, transpose_b=tb), a_in, b_in)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    assert out.shape == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_matmul_operator_symbolic_and_dtypes():
    def f(x, w):
        return x @ w, x.T @ x
    x, w = rand(5, 3), rand(3, 2)
    g, (y, gram) = trace_run(f, x, w, dims=[("tokens", 3), None])
    assert [t.shape for t in out_types(g)] == [("tokens", 2), (3, 3)]  # contracting over a symbolic dim
    np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gram, x.T @ x, rtol=1e-5, atol=1e-5)

    for dt in (np.float16, ml_dtypes.bfloat16):
        a, b = rand(4, 8).astype(dt), rand(8, 3).astype(dt)
        g, (y,) = trace_run(lambda a, b: a @ b, a, b)
        want = (a.astype(np.float32) @ b.astype(np.float32)).astype(dt)  # f32 accumulation, one rounding
        np.testing.assert_array_equal(y.astype(np.float32), want.astype(np.float32))
    ai, bi = RNG.integers(-5, 5, (2, 3)).astype(np.int32), RNG.integers(-5, 5, (3, 2)).astype(np.int32)
    g, (yi,) = trace_run(lambda a, b: a @ b, ai, bi)
    assert yi.dtype == np.int32
    np.testing.assert_array_equal(yi, ai @ bi)


def test_matmul_errors():
    with pytest.raises(sc.TraceError, match="contracted dims differ"):
        sc.trace(lambda a, b: a @ b, sc.TensorSpec((2, 3)), sc.TensorSpec((4, 5)))
    with pytest.raises(sc.TraceError, match="contracted dims differ"):
        sc.trace(lambda a, b: a @ b, sc.TensorSpec(("tokens", 3)), sc.TensorSpec(("seq", 5)))
    with pytest.raises(sc.TraceError, match="do not broadcast"):
        sc.trace(lambda a, b: a @ b, sc.TensorSpec((2, 2, 3)), sc.TensorSpec((3, 3, 4)))
    with pytest.raises(sc.TraceError, match="transpose_a needs rank >= 2"):
        sc.trace(lambda a, b: ops.matmul(a, b, transpose_a=True), sc.TensorSpec((3,)), sc.TensorSpec((3, 4)))
    with pytest.raises(sc.TraceError, match="scalar"):
        sc.trace(lambda a, b: ops.matmul(a.sum(), b), sc.TensorSpec((3,)), sc.TensorSpec((3, 4)))


# ---------------------------------------------------------------------------------------------
# linear

@given(st.lists(st.integers(1, 3), max_size=2), st.integers(1, 5), st.integers(1, 5), st.booleans())
def test_linear_matches_numpy(lead, n_in, n_out, bias):
    x = rand(*lead, n_in)
    w = sc.Parameter(rand(n_out, n_in))
    b = sc.Parameter(rand(n_out)) if bias else None
    g, (y,) = trace_run(lambda x: ops.linear(x, w, b), x)
    want = x.astype(np.float64) @ w.data.T.astype(np.float64) + (b.data if bias else 0)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_linear_symbolic_and_text():
    w, b = sc.Parameter(rand(6, 4)), sc.Parameter(rand(6))
    g = sc.trace(lambda x: ops.linear(x, w, b), sc.TensorSpec(("batch", "seq", 4)))
    assert out_types(g)[0].shape == ("batch", "seq", 6)
    text = str(g)
    assert '"sc.linear"' in text and str(sc.parse(text)) == text
    x = rand(2, 3, 4)
    (y,) = sc.interpret(sc.parse(text), x, weights={"param0": w.data, "param1": b.data})
    np.testing.assert_allclose(y, x @ w.data.T + b.data, rtol=1e-5, atol=1e-6)


def test_linear_bf16_accumulates_in_f32():
    x, w = rand(3, 16).astype(ml_dtypes.bfloat16), rand(5, 16).astype(ml_dtypes.bfloat16)
    g, (y,) = trace_run(lambda x, w: ops.linear(x, w), x, w)
    assert y.dtype == ml_dtypes.bfloat16
    want = (x.astype(np.float32) @ w.astype(np.float32).T).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(y.astype(np.float32), want.astype(np.float32))


def test_linear_accepts_quantized_weight_type():
    lin = get_opdef("sc.linear")
    (t,) = lin.infer_types([TensorType(("tokens", 64), "f32"), QuantType("q8_0", (32, 64)), None], {})
    assert t == TensorType(("tokens", 32), "f32")
    with pytest.raises(ValueError, match="input features 48"):
        lin.infer_types([TensorType(("tokens", 48), "f32"), QuantType("q8_0", (32, 64)), None], {})


@pytest.mark.parametrize("x_shape, w_shape, b_shape, w_dtype, msg", [
    ((2, 4), (3, 5), None, "float32", "input features 4"),
    ((2, 4), (3, 4), (4,), "float32", r"bias must be \[3\]"),
    ((2, 4), (3, 4, 1), None, "float32", "rank 2"),
    ((2, 4), (3, 4), None, "float16", "weight dtype f16 differs"),
])
def test_linear_errors(x_shape, w_shape, b_shape, w_dtype, msg):
    w = sc.Parameter(np.zeros(w_shape, dtype=w_dtype))
    b = None if b_shape is None else sc.Parameter(np.zeros(b_shape, np.float32))
    with pytest.raises(sc.TraceError, match=msg):
        sc.trace(lambda x: ops.linear(x, w, b), sc.TensorSpec(x_shape))


def test_round_trip_matmul_flags():
    g = sc.trace(lambda a, b: ops.matmul(a, b, transpose_b=True), sc.TensorSpec(("heads", "seq", 8)),
                 sc.TensorSpec(("heads", "seq", 8)))
    assert out_types(g)[0].shape == ("heads", "seq", "seq")
    text = str(g)
    assert "transpose_b = true" in text and str(sc.parse(text)) == text
    a, b = rand(2, 3, 8), rand(2, 3, 8)
    (y,) = sc.interpret(sc.parse(text), a, b)
    np.testing.assert_allclose(y, a @ b.transpose(0, 2, 1), rtol=1e-5, atol=1e-5)
