"""Elementwise ops against NumPy: integer division semantics, promotion in the traced API."""
import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

import sparsec as sc

big = st.integers(-(2**62), 2**62)


@given(st.lists(st.tuples(big, big.filter(lambda v: v != 0)), min_size=1, max_size=8))
@example([(2**62 + 1, 1), (-(2**62 + 3), 2), (7, -2), (-7, 2), (6, 3)])  # beyond float64's 53 bits
def test_integer_div_truncates_toward_zero_exactly(pairs):
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    g = sc.trace(lambda x, y: x / y, sc.TensorSpec(("n",), "int64"), sc.TensorSpec(("n",), "int64"))
    (out,) = sc.interpret(g, a, b)
    # exact Python integers: |a| // |b| with the sign of the true quotient
    expected = np.array([(abs(x) // abs(y)) * (1 if (x < 0) == (y < 0) else -1)
                         for x, y in zip(a.tolist(), b.tolist())], dtype=np.int64)
    np.testing.assert_array_equal(out, expected)


def test_scalar_promotion_int_tensor_times_float():
    g = sc.trace(lambda x: x * 0.5, sc.TensorSpec((3,), "int64"))
    (out,) = sc.interpret(g, np.array([1, 2, 3], dtype=np.int64))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.5, 1.0, 1.5])


def test_activations_match_formulas():
    x = np.linspace(-6, 6, 25, dtype=np.float32)
    g = sc.trace(lambda v: (sc.ops.silu(v), sc.ops.sigmoid(v), sc.ops.gelu_tanh(v)), sc.TensorSpec((25,), "float32"))
    silu, sig, gt = sc.interpret(g, x)
    xd = x.astype(np.float64)
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-xd)), rtol=1e-6)
    np.testing.assert_allclose(silu, xd / (1 + np.exp(-xd)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gt, 0.5 * xd * (1 + np.tanh(np.sqrt(2 / np.pi) * (xd + 0.044715 * xd**3))),
                               rtol=1e-5, atol=1e-6)
