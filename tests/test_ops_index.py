"""Gather/scatter ops (take, take_along_axis, embedding, scatter, scatter_add, index_add,
one_hot): shape rules, references against loops and NumPy written here, out-of-range indices,
errors and text round trips."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsec as sc
from opcheck import out_types, trace_run  # noqa: F401
from sparsec import ops

RNG = np.random.default_rng(3)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.lists(st.integers(0, 3), max_size=2), st.data())
def test_take_matches_numpy(shape, idx_shape, data):
    r = len(shape)
    axis = data.draw(st.integers(-r, r - 1))
    x = rand(*shape)
    idx = RNG.integers(0, shape[axis], size=idx_shape)
    g, (out,) = trace_run(lambda x, i: ops.take(x, i, axis), x, idx)
    np.testing.assert_array_equal(out, np.take(x, idx, axis=axis))


def test_take_symbolic_and_dtypes():
    x, idx = rand(5, 3), np.array([[4, 0, 4]], dtype=np.int32)
    g, (out,) = trace_run(lambda x, i: ops.take(x, i, 0), x, idx, dims=[("vocab", 3), ("batch", "seq")])
    assert out_types(g)[0].shape == ("batch", "seq", 3)
    np.testing.assert_array_equal(out, x[idx])


@pytest.mark.parametrize("bad", [5, -1])
def test_take_out_of_range_raises(bad):
    g = sc.trace(lambda x, i: ops.take(x, i, 0), sc.TensorSpec((5, 3)), sc.TensorSpec((2,), "int64"))
    with pytest.raises(sc.InterpretError, match=rf"IndexError: index {bad} is out of range \[0, 5\)"):
        sc.interpret(g, rand(5, 3), np.array([0, bad]))


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_take_along_axis_matches_numpy(shape, data):
    r = len(shape)
    axis = data.draw(st.integers(-r, r - 1))
    idx_shape = [data.draw(st.sampled_from([1, d])) for d in shape]
    idx_shape[axis] = data.draw(st.integers(0, 4))
    x = rand(*shape)
    idx = RNG.integers(0, shape[axis], size=idx_shape)
    g, (out,) = trace_run(lambda x, i: ops.take_along_axis(x, i, axis), x, idx)
    np.testing.assert_array_equal(out, np.take_along_axis(x, idx, axis=axis))


def test_gather_topk_rows_and_errors():
    def f(x):
        v, i = ops.topk(x, 2)
        return ops.take_along_axis(x, i, -1), v
    x = rand(4, 6)
    g, (gathered, v) = trace_run(f, x, dims=[("tokens", 6)])
    np.testing.assert_array_equal(gathered, v)
    with pytest.raises(sc.TraceError, match="rank of x"):
        sc.trace(lambda x, i: ops.take_along_axis(x, i, 0), sc.TensorSpec((4, 6)), sc.TensorSpec((4,), "int64"))
    with pytest.raises(sc.TraceError, match="do not broadcast"):
        sc.trace(lambda x, i: ops.take_along_axis(x, i, 1), sc.TensorSpec((4, 6)), sc.TensorSpec((3, 2), "int64"))
    with pytest.raises(sc.TraceError, match="indices must be an integer tensor"):
        sc.trace(lambda x, i: ops.take(x, i), sc.TensorSpec((4, 6)), sc.TensorSpec((3,), "float32"))
    with pytest.raises(sc.TraceError, match="axis 2 is out of range for rank 2"):
        sc.trace(lambda x, i: ops.take(x, i, 2), sc.TensorSpec((4, 6)), sc.TensorSpec((3,), "int64"))


def test_embedding():
    table = sc.Parameter(rand(10, 4))
    ids = np.array([[1, 9, 1], [0, 2, 3]], dtype=np.int64)
    g, (out,) = trace_run(lambda i: ops.embedding(i, table), ids, dims=[("batch", "seq")])
    assert out_types(g)[0].shape == ("batch", "seq", 4)
    np.testing.assert_array_equal(out, table.data[ids])
    with pytest.raises(sc.InterpretError, match="IndexError: index 10 is out of range"):
        sc.interpret(g, np.array([[10]]))
    with pytest.raises(sc.TraceError, match="vocab, dim"):
        sc.trace(lambda i: ops.embedding(i, sc.Parameter(rand(10))), sc.TensorSpec((2,), "int64"))


# ---------------------------------------------------------------------------------------------
# scatter / scatter_add / index_add

def loop_scatter(base, idx, upd, axis, add):
    out = base.astype(np.float64).copy()
    for pos in np.ndindex(*idx.shape):  # row-major: for plain scatter the last write wins
        tgt = list(pos)
        tgt[axis] = idx[pos]
        out[tuple(tgt)] = out[tuple(tgt)] + upd[pos] if add else upd[pos]
    return out.astype(base.dtype)


@pytest.mark.parametrize("add", [False, True])
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_scatter_matches_loop(add, shape, data):
    r = len(shape)
    axis = data.draw(st.integers(-r, r - 1))
    idx_shape = list(shape)
    idx_shape[axis] = data.draw(st.integers(0, 5))  # more rows than the base: duplicates
    base, upd = rand(*shape), rand(*idx_shape)
    idx = RNG.integers(0, shape[axis], size=idx_shape)
    op = ops.scatter_add if add else ops.scatter
    g, (out,) = trace_run(lambda b, i, u: op(b, i, u, axis), base, idx, upd)
    np.testing.assert_allclose(out, loop_scatter(base, idx, upd, axis % r, add), rtol=1e-6, atol=1e-6)


def test_scatter_add_duplicates_sum_and_base_untouched():
    base = np.zeros((3, 2), np.float32)
    idx = np.array([[0, 2], [0, 2], [0, 0]])
    upd = np.ones((3, 2), np.float32)
    g, (out,) = trace_run(lambda b, i, u: ops.scatter_add(b, i, u, 0), base, idx, upd)
    np.testing.assert_array_equal(out, [[3, 1], [0, 0], [0, 2]])
    assert not base.any()


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_index_add_matches_torch_semantics(axis):
    base = rand(4, 3)
    n = 5
    index = RNG.integers(0, base.shape[axis], size=n)
    src_shape = list(base.shape)
    src_shape[axis] = n
    src = rand(*src_shape)
    g, (out,) = trace_run(lambda b, i, s: ops.index_add(b, i, s, axis), base, index, src,
                          dims=[None, ("n",), [("n" if k == axis % 2 else d) for k, d in enumerate(src_shape)]])
    want = base.astype(np.float64).copy()
    for j, t in enumerate(index):  # base.index_add_(axis, index, src)
        if axis % 2 == 0:
            want[t] += src[j]
        else:
            want[:, t] += src[:, j]
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_scatter_errors():
    b, i, u = sc.TensorSpec((4, 3)), sc.TensorSpec((2, 3), "int64"), sc.TensorSpec((2, 3))
    with pytest.raises(sc.TraceError, match=r"updates shape \[2, 2\] differs from indices shape \[2, 3\]"):
        sc.trace(lambda b, i, u: ops.scatter(b, i, u, 0), b, i, sc.TensorSpec((2, 2)))
    with pytest.raises(sc.TraceError, match="indices dim 0 is 2, base has 4"):
        sc.trace(lambda b, i, u: ops.scatter_add(b, i, u, 1), b, i, u)
    with pytest.raises(sc.TraceError, match="updates dtype f16 differs"):
        sc.trace(lambda b, i, u: ops.scatter(b, i, u, 0), b, i, sc.TensorSpec((2, 3), "float16"))
    with pytest.raises(sc.TraceError, match="axis 2 is out of range for rank 2"):
        sc.trace(lambda b, i, u: ops.scatter(b, i, u, 2), b, i, u)
    with pytest.raises(sc.TraceError, match=r"source must be \[2, 3\]"):
        sc.trace(lambda b, i, u: ops.index_add(b, i, u), b, sc.TensorSpec((2,), "int64"), sc.TensorSpec((2, 4)))
    with pytest.raises(sc.TraceError, match="index must be 1-D"):
        sc.trace(lambda b, i, u: ops.index_add(b, i, u), b, i, u)
    g = sc.trace(lambda b, i, u: ops.scatter(b, i, u, 0), b, i, u)
    with pytest.raises(sc.InterpretError, match="IndexError"):
        sc.interpret(g, rand(4, 3), np.full((2, 3), 4), rand(2, 3))


# ---------------------------------------------------------------------------------------------
# one_hot

@given(st.lists(st.integers(0, 3), max_size=2), st.integers(1, 5),
       st.sampled_from(["float32", "int64", "bool", "float16"]))
def test_one_hot_matches_eye(shape, depth, dtype):
    idx = RNG.integers(0, depth, size=shape)
    g, (out,) = trace_run(lambda i: ops.one_hot(i, depth, dtype), idx)
    np.testing.assert_array_equal(out, np.eye(depth, dtype=dtype)[idx])


def test_one_hot_errors_and_default_dtype():
    g = sc.trace(lambda i: ops.one_hot(i, 4), sc.TensorSpec(("tokens",), "int32"))
    assert out_types(g)[0].shape == ("tokens", 4) and out_types(g)[0].dtype.name == "f32"
    with pytest.raises(sc.InterpretError, match=r"IndexError: index 4 is out of range \[0, 4\)"):
        sc.interpret(g, np.array([1, 4], dtype=np.int32))
    with pytest.raises(sc.TraceError, match="depth must be >= 0"):
        sc.trace(lambda i: ops.one_hot(i, -2), sc.TensorSpec((3,), "int64"))
    with pytest.raises(sc.TraceError, match="must be an integer tensor"):
        sc.trace(lambda i: ops.one_hot(i, 2), sc.TensorSpec((3,), "float32"))


def test_round_trip_all_index_ops():
    def f(x, ids):
        t = ops.take(x, ids, 0)
        ta = ops.take_along_axis(x, ops.argmax(x, -1, keepdims=True), -1)
        e = ops.embedding(ids, x)
        s = ops.scatter(x, ops.argmax(x, 0, keepdims=True), x[:1], 0)
        sa = ops.scatter_add(x, ops.argmax(x, 0, keepdims=True), x[:1], 0)
        ia = ops.index_add(x, ids, t, 0)
        oh = ops.one_hot(ids, 6, "int64")
        return t, ta, e, s, sa, ia, oh
    g = sc.trace(f, sc.TensorSpec(("vocab", 4)), sc.TensorSpec(("n",), "int64"))
    text = str(g)
    for name in ("take", "take_along_axis", "embedding", "scatter", "scatter_add", "index_add", "one_hot"):
        assert f'"sc.{name}"' in text
    assert str(sc.parse(text)) == text
    x, ids = rand(6, 4), np.array([5, 0, 5])
    t, ta, e, s, sa, ia, oh = sc.interpret(sc.parse(text), x, ids)
    np.testing.assert_array_equal(t, x[ids])
    np.testing.assert_array_equal(ta[:, 0], x.max(-1))
    np.testing.assert_array_equal(e, x[ids])
    am = x.argmax(0)
    want_s, want_sa = x.copy(), x.copy()
    want_s[am, np.arange(4)] = x[0]
    want_sa[am, np.arange(4)] += x[0]
    np.testing.assert_array_equal(s, want_s)
    np.testing.assert_allclose(sa, want_sa, rtol=1e-6)
    want_ia = x.copy()
    for j, r in enumerate(ids):
        want_ia[r] += x[r]
    np.testing.assert_allclose(ia, want_ia, rtol=1e-6)
    np.testing.assert_array_equal(oh, np.eye(6, dtype=np.int64)[ids])
