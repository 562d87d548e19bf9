"""Reductions (sum, mean, max, min, argmax), softmax/log_softmax and topk: shape rules,
references against NumPy computed here, errors and text round trips."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsec as sc
from opcheck import out_types, trace_run  # noqa: F401
from sparsec import ops
from sparsec.frontend.tracer import emit

RNG = np.random.default_rng(1)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@st.composite
def reduce_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    r = len(shape)
    axes = draw(st.one_of(st.none(), st.integers(-r, r - 1),
                          st.lists(st.integers(-r, r - 1), min_size=1, max_size=r, unique_by=lambda a: a % r)
                          .map(tuple)))
    return shape, axes, draw(st.booleans())


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
@given(case=reduce_case())
def test_reductions_match_numpy(name, case):
    shape, axis, keepdims = case
    x = rand(*shape)
    g, (out,) = trace_run(lambda x: getattr(ops, name)(x, axis, keepdims), x)
    want = getattr(np, name)(x.astype(np.float64), axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_tensor_methods_and_symbolic_axes():
    def f(x):
        return x.sum(), x.sum(axis=0), x.mean(axis=(0, 2), keepdims=True), x.max(axis=-1), x.min(axis=1)
    x = rand(5, 3, 4)
    g, outs = trace_run(f, x, dims=[("tokens", 3, 4)])
    assert [t.shape for t in out_types(g)] == [(), (3, 4), (1, 3, 1), ("tokens", 3), ("tokens", 4)]
    wants = (x.sum(dtype=np.float64), x.sum(0), x.mean((0, 2), keepdims=True), x.max(-1), x.min(1))
    for o, w in zip(outs, wants):
        np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)


def test_integer_sum_and_mean():
    x = RNG.integers(-50, 50, size=(3, 4)).astype(np.int32)
    g, (s, m, mx) = trace_run(lambda x: (ops.sum(x, 1), ops.mean(x, 0), ops.max(x)), x)
    assert s.dtype == np.int32 and m.dtype == np.float32 and mx.dtype == np.int32
    np.testing.assert_array_equal(s, x.sum(1))
    np.testing.assert_allclose(m, x.mean(0), rtol=1e-6)
    assert mx == x.max()


def test_low_precision_sum_accumulates_wide():
    x = np.full((4096,), 1.0, dtype=np.float16)  # a float16 running sum would stop at 2048
    for dt in (np.float16, ml_dtypes.bfloat16):
        g = sc.trace(lambda x: x.sum(), sc.TensorSpec((4096,), dt))
        (out,) = sc.interpret(g, x.astype(dt))
        assert out.dtype == dt and float(out) == 4096.0


def test_reduce_errors():
    with pytest.raises(sc.TraceError, match="axis 3 is out of range for rank 2"):
        sc.trace(lambda x: x.sum(axis=3), sc.TensorSpec((2, 3)))
    with pytest.raises(sc.TraceError, match="repeated axis"):
        sc.trace(lambda x: x.sum(axis=(0, -2)), sc.TensorSpec((2, 3)))
    with pytest.raises(sc.TraceError, match="booleans"):
        sc.trace(lambda x: ops.sum(x), sc.TensorSpec((2, 3), "bool"))
    with pytest.raises(sc.TraceError, match="must be a float tensor"):
        sc.trace(lambda x: emit("sc.mean", x, axes=(), keepdims=False), sc.TensorSpec((2,), "int64"))


# ---------------------------------------------------------------------------------------------
# argmax

@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_argmax_matches_numpy_with_ties(shape, data):
    r = len(shape)
    axis = data.draw(st.integers(-r, r - 1))
    keepdims = data.draw(st.booleans())
    x = RNG.integers(0, 3, size=shape).astype(np.float32)  # many ties: the first index wins
    g, (out,) = trace_run(lambda x: ops.argmax(x, axis, keepdims), x)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, np.argmax(x, axis=axis, keepdims=keepdims))


def test_argmax_symbolic_and_errors():
    g = sc.trace(lambda x: x.argmax(), sc.TensorSpec(("tokens", 7)))
    assert out_types(g)[0].shape == ("tokens",) and out_types(g)[0].dtype.name == "i64"
    with pytest.raises(sc.TraceError, match="axis 2 is out of range for rank 2"):
        sc.trace(lambda x: x.argmax(2), sc.TensorSpec((2, 3)))
    with pytest.raises(sc.TraceError, match="rank >= 1"):
        sc.trace(lambda x: x.sum().argmax(), sc.TensorSpec((2, 3)))


# ---------------------------------------------------------------------------------------------
# softmax / log_softmax

def np_softmax(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.data(), st.floats(0.1, 1000.0))
def test_softmax_matches_numpy(shape, data, scale):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = rand(*shape) * np.float32(scale)  # large scales: a naive exp would overflow
    g, (sm, lsm) = trace_run(lambda x: (ops.softmax(x, axis), ops.log_softmax(x, axis)), x)
    want = np_softmax(x, axis)
    assert np.isfinite(sm).all() and np.isfinite(lsm).all()
    np.testing.assert_allclose(sm, want, rtol=1e-5, atol=1e-7)
    xs = x.astype(np.float64) - x.max(axis=axis, keepdims=True)
    np.testing.assert_allclose(lsm, xs - np.log(np.exp(xs).sum(axis=axis, keepdims=True)), rtol=1e-5, atol=1e-5)


def test_softmax_dtypes_and_errors():
    x = rand(3, 8).astype(np.float16)
    g, (sm,) = trace_run(lambda x: x.softmax(), x, dims=[("tokens", 8)])
    assert sm.dtype == np.float16
    np.testing.assert_allclose(sm.astype(np.float32), np_softmax(x, -1), atol=1e-3)
    g, (si,) = trace_run(lambda x: ops.softmax(x), np.arange(4, dtype=np.int64))  # ints cast to f32
    assert si.dtype == np.float32
    with pytest.raises(sc.TraceError, match="axis 2 is out of range for rank 2"):
        sc.trace(lambda x: ops.log_softmax(x, 2), sc.TensorSpec((2, 3)))


# ---------------------------------------------------------------------------------------------
# topk

def topk_expected(x, k, axis, largest):
    """Per-row Python sort by (value, index): descending values, lower index first on ties."""
    xm = np.moveaxis(x, axis, -1)
    vals = np.empty(xm.shape[:-1] + (k,), x.dtype)
    idx = np.empty(xm.shape[:-1] + (k,), np.int64)
    for pos in np.ndindex(*xm.shape[:-1]):
        row = xm[pos]
        key = (lambda i: (-row[i], i)) if largest else (lambda i: (row[i], i))
        order = sorted(range(len(row)), key=key)[:k]
        idx[pos] = order
        vals[pos] = row[order]
    return np.moveaxis(vals, -1, axis), np.moveaxis(idx, -1, axis)


@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.data())
def test_topk_matches_sort(shape, data):
    r = len(shape)
    axis = data.draw(st.integers(-r, r - 1))
    k = data.draw(st.integers(0, shape[axis]))
    largest = data.draw(st.booleans())
    dtype = data.draw(st.sampled_from([np.float32, np.int32, np.int64]))
    x = RNG.integers(-3, 3, size=shape).astype(dtype)  # small range: plenty of ties
    g, (v, i) = trace_run(lambda x: ops.topk(x, k, axis, largest), x)
    wv, wi = topk_expected(x, k, axis, largest)
    np.testing.assert_array_equal(i, wi)
    np.testing.assert_array_equal(v, wv)
    assert v.dtype == dtype and i.dtype == np.int64


def test_topk_extremes_and_symbolic_rows():
    x = np.array([[np.iinfo(np.int64).min, 5, np.iinfo(np.int64).max, 5]], dtype=np.int64)
    x = np.repeat(x, 3, axis=0)
    g, (v, i) = trace_run(lambda x: ops.topk(x, 3), x, dims=[("tokens", 4)])
    assert out_types(g)[0].shape == ("tokens", 3)
    np.testing.assert_array_equal(i, [[2, 1, 3]] * 3)
    np.testing.assert_array_equal(v, x[:, [2, 1, 3]])


def test_topk_errors():
    with pytest.raises(sc.TraceError, match="k=5 exceeds dim 4"):
        sc.trace(lambda x: ops.topk(x, 5), sc.TensorSpec((2, 4)))
    with pytest.raises(sc.TraceError, match="static dim along axis 0"):
        sc.trace(lambda x: ops.topk(x, 2, axis=0), sc.TensorSpec(("tokens", 4)))
    with pytest.raises(sc.TraceError, match="axis 2 is out of range for rank 2"):
        sc.trace(lambda x: ops.topk(x, 1, axis=2), sc.TensorSpec((2, 4)))
    with pytest.raises(sc.TraceError, match="k=-1"):
        sc.trace(lambda x: ops.topk(x, -1), sc.TensorSpec((2, 4)))


def test_round_trip_all_reduce_ops():
    def f(x):
        v, i = ops.topk(x, 2)
        return (ops.sum(x, 0), ops.mean(x, -1, True), ops.max(x), ops.min(x, 1), ops.argmax(x, 0, True),
                ops.softmax(x, 0), ops.log_softmax(x), v, i)
    g = sc.trace(f, sc.TensorSpec(("tokens", 4)))
    text = str(g)
    for name in ("sum", "mean", "max", "min", "argmax", "softmax", "log_softmax", "topk"):
        assert f'"sc.{name}"' in text
    assert str(sc.parse(text)) == text
    x = rand(3, 4)
    outs = sc.interpret(sc.parse(text), x)
    np.testing.assert_allclose(outs[0], x.astype(np.float64).sum(0).astype(np.float32), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(outs[4], x.argmax(0)[None])
    np.testing.assert_array_equal(outs[8], np.argsort(-x, axis=-1, kind="stable")[:, :2])
