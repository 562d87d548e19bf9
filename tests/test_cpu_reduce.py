"""CPU kernels of the reductions, softmax and top-k against the reference interpreter."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cpu_elementwise import T, check_graph, check_op_on_random_graph, graph_of

from sparsec.lower.cpu import run_naive

OWNED = {"sc.sum", "sc.mean", "sc.max", "sc.min", "sc.argmax", "sc.softmax", "sc.log_softmax", "sc.topk"}
BF16 = ml_dtypes.bfloat16


@pytest.mark.parametrize("op", sorted(OWNED))
@settings(max_examples=10)
@given(data=st.data())
def test_op_matches_reference(op, data):
    dts = ("f32", "bf16") if op in ("sc.mean", "sc.softmax", "sc.log_softmax") else ("f32", "i32", "f16")
    check_op_on_random_graph(data, op, OWNED, dts, max_ops=3)


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(OWNED))
@settings(max_examples=max(60, settings.default.max_examples))
@given(data=st.data())
def test_op_matches_reference_all_dtypes(op, data):
    floats = ("f32", "f64", "f16", "bf16")
    dts = floats if op in ("sc.mean", "sc.softmax", "sc.log_softmax") else floats + ("i8", "i32", "i64", "ui8")
    check_op_on_random_graph(data, op, OWNED, dts, max_ops=3, max_size=6)


def run1(op, x, **attrs):
    g = graph_of(op, [T(x.shape, x.dtype)], attrs)
    return check_graph(g, [x], op, OWNED)


@pytest.mark.parametrize("axes", [(), (0,), (1,), (2,), (0, 2), (1, 2), (0, 1), (-1, 0), (0, 1, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_axes_and_keepdims(axes, keepdims):
    x = np.random.default_rng(0).standard_normal((5, 6, 7)).astype(np.float32)
    for op in ("sc.sum", "sc.mean", "sc.max", "sc.min"):
        run1(op, x, axes=list(axes), keepdims=keepdims)


def test_integer_sums_wrap_and_unsigned():
    x = np.full((3, 100), 100, np.int8)
    (out,) = run1("sc.sum", x, axes=[1])
    np.testing.assert_array_equal(out, np.sum(x, axis=1, dtype=np.int8))
    u = np.full((4, 300), 250, np.uint8)
    (out,) = run1("sc.sum", u, axes=[0, 1])
    assert out == np.sum(u, dtype=np.uint8)
    (out,) = run1("sc.max", np.array([[-128, 5], [3, -7]], np.int8), axes=[0])
    np.testing.assert_array_equal(out, [3, 5])


def test_nan_semantics():
    x = np.array([[1.0, np.nan, 3.0], [np.nan, 2.0, np.nan], [4.0, 5.0, 6.0]], np.float32)
    for op in ("sc.max", "sc.min"):
        run1(op, x, axes=[1])
        run1(op, x, axes=[0])
    (out,) = run1("sc.argmax", x, axis=1)
    np.testing.assert_array_equal(out, [1, 0, 2])
    (out,) = run1("sc.argmax", x, axis=0)
    np.testing.assert_array_equal(out, np.argmax(x, axis=0))
    run1("sc.softmax", x, axis=1)
    run1("sc.softmax", np.array([[-np.inf, -np.inf], [0.0, -np.inf]], np.float32), axis=1)


def test_softmax_large_rows_stable_and_parallel():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((64, 3000)) * 30 + 500).astype(np.float32)
    (out,) = run1("sc.softmax", x, axis=-1)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    run1("sc.log_softmax", x, axis=-1)
    run1("sc.softmax", x, axis=0)
    run1("sc.softmax", x.astype(np.float64), axis=1)
    run1("sc.log_softmax", x.astype(BF16), axis=1)
    run1("sc.sum", x, axes=[1])
    run1("sc.sum", x, axes=[0])


@pytest.mark.parametrize("largest", [True, False])
def test_topk_ties_and_nan_like_reference(largest):
    x = np.array([[1, 3, 3, 2, 3, 1, 0], [5, 5, 5, 5, 5, 5, 5]], np.float32)
    for k in range(0, 8):
        vals, idx = run1("sc.topk", x, k=k, axis=1, largest=largest)
    xn = np.array([[1.0, np.nan, 3.0, np.nan, 3.0, -0.0, 0.0]], np.float32)
    for k in (1, 3, 7):
        run1("sc.topk", xn, k=k, axis=1, largest=largest)
    xi = np.array([[-128, 127, -128, 0, 127]], np.int8)
    run1("sc.topk", xi, k=4, axis=1, largest=largest)
    # the merge-sort path (k > 32) on many ties and an inner axis
    rng = np.random.default_rng(2)
    xb = rng.integers(0, 5, (3, 100, 2)).astype(np.float32)
    run1("sc.topk", xb, k=60, axis=1, largest=largest)
    run1("sc.topk", xb, k=3, axis=1, largest=largest)


def test_topk_bf16_and_router_shape():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 64)).astype(BF16)
    vals, idx = run1("sc.topk", x, k=8, axis=-1, largest=True)
    assert vals.dtype == BF16 and idx.dtype == np.int64


def test_symbolic_rows():
    g = graph_of("sc.softmax", [T(("tokens", 16), "f32")], {"axis": -1})
    for n in (1, 4, 9):
        check_graph(g, [np.random.rand(n, 16).astype(np.float32)], "sc.softmax", OWNED)
    g = graph_of("sc.sum", [T(("batch", "tokens", 8), "f32")], {"axes": [0, 2]})
    check_graph(g, [np.random.rand(3, 5, 8).astype(np.float32)], "sc.sum", OWNED)
    assert run_naive.last_kernels == ["sc.sum"]
