"""Shape ops (reshape, transpose, concat, slice/getitem, broadcast_to, expand_dims, squeeze,
stack, flatten): shape rules, references against NumPy, errors and text round trips."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsec as sc
from sparsec import ops

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def run(fn, *arrays, dims=None):
    """Trace ``fn`` over specs matching ``arrays`` (``dims`` overrides spec shapes), check the text
    round trip, interpret, and check every output shape against its type's concrete shape."""
    specs = [sc.TensorSpec(d if d is not None else a.shape, a.dtype)
             for a, d in zip(arrays, dims or [None] * len(arrays))]
    g = sc.trace(fn, *specs)
    text = str(g)
    assert str(sc.parse(text)) == text
    outs = sc.interpret(g, *arrays)
    bindings = {d: n for spec, a in zip(specs, arrays) for d, n in zip(spec.shape, a.shape) if isinstance(d, str)}
    check_types(g, outs, bindings)
    return g, outs


def out_types(g):
    return [v.type for v in g.main.body.terminator.operands]


def check_types(g, outs, bindings):
    for o, t in zip(outs, out_types(g)):
        assert o.shape == t.concrete(bindings), (o.shape, t.pretty())
        assert o.dtype == t.dtype.np


# ---------------------------------------------------------------------------------------------
# reshape / flatten

def test_reshape_static_and_infer():
    x = rand(2, 3, 4)
    g, (a, b, c) = run(lambda x: (x.reshape(6, 4), x.reshape(-1), ops.reshape(x, (4, -1, 2))), x)
    np.testing.assert_array_equal(a, x.reshape(6, 4))
    np.testing.assert_array_equal(b, x.reshape(-1))
    np.testing.assert_array_equal(c, x.reshape(4, -1, 2))
    check_types(g, (a, b, c), {})


def test_reshape_symbolic_is_exact():
    def f(x):
        b, s, h = x.shape
        flat = x.reshape(-1, h)
        back = flat.reshape(b, s, 2, h // 2)
        return flat, back
    g = sc.trace(f, sc.TensorSpec(("batch", "seq", 8)))
    flat_t, back_t = out_types(g)
    assert flat_t.shape == ("batch*seq", 8)
    assert back_t.shape == ("batch", "seq", 2, 4)
    assert str(sc.parse(str(g))) == str(g)
    x = rand(3, 5, 8)
    flat, back = sc.interpret(g, x)
    np.testing.assert_array_equal(flat, x.reshape(15, 8))
    np.testing.assert_array_equal(back, x.reshape(3, 5, 2, 4))


def test_reshape_symbolic_division():
    g = sc.trace(lambda x: x.reshape(2, -1), sc.TensorSpec(("2*tokens", 3)))
    assert out_types(g)[0].shape == (2, "3*tokens")
    x = rand(8, 3)
    np.testing.assert_array_equal(sc.interpret(g, x)[0], x.reshape(2, -1))


@pytest.mark.parametrize("shape, msg", [
    ((-1, -1), "at most one -1"),
    ((5, 5), "cannot reshape"),
    ((7, -1), "not a multiple"),
])
def test_reshape_errors(shape, msg):
    with pytest.raises(sc.TraceError, match=msg):
        sc.trace(lambda x: x.reshape(shape), sc.TensorSpec((4, 6)))


def test_reshape_symbolic_not_exact():
    with pytest.raises(sc.TraceError, match="not a multiple"):
        sc.trace(lambda x: x.reshape(2, -1), sc.TensorSpec(("tokens",)))
    with pytest.raises(sc.TraceError, match="cannot reshape"):
        sc.trace(lambda x: x.reshape(x.shape[0], 2), sc.TensorSpec(("tokens", 4)))


def test_reshape_unbound_symbols_fail_at_run_time():
    g = sc.trace(lambda x: x.reshape("batch", "seq"), sc.TensorSpec(("batch*seq",)))
    with pytest.raises(sc.InterpretError, match="not bound"):
        sc.interpret(g, rand(6))


def test_flatten():
    def f(x):
        return ops.flatten(x), ops.flatten(x, 1), ops.flatten(x, 0, 1)
    g = sc.trace(f, sc.TensorSpec(("batch", 3, 4)))
    assert [t.shape for t in out_types(g)] == [("12*batch",), ("batch", 12), ("3*batch", 4)]
    x = rand(2, 3, 4)
    outs = sc.interpret(g, x)
    for o, want in zip(outs, (x.reshape(-1), x.reshape(2, 12), x.reshape(6, 4))):
        np.testing.assert_array_equal(o, want)
    with pytest.raises(sc.TraceError, match="comes after"):
        sc.trace(lambda x: ops.flatten(x, 2, 1), sc.TensorSpec((2, 3, 4)))


@st.composite
def reshape_case(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    n = int(np.prod(shape))
    factors = []
    rest = n
    while rest > 1 and len(factors) < 3:
        divs = [d for d in range(1, rest + 1) if rest % d == 0]
        d = draw(st.sampled_from(divs))
        factors.append(d)
        rest //= d
    factors.append(rest)
    if draw(st.booleans()):
        factors[draw(st.integers(0, len(factors) - 1))] = -1
    return shape, factors


@given(reshape_case())
def test_reshape_rule_matches_reference(case):
    shape, new = case
    x = rand(*shape)
    g = sc.trace(lambda x: x.reshape(new), sc.TensorSpec(shape))
    (out,) = sc.interpret(g, x)
    np.testing.assert_array_equal(out, x.reshape(new))
    assert out.shape == out_types(g)[0].shape


# ---------------------------------------------------------------------------------------------
# transpose

@given(st.lists(st.integers(1, 3), min_size=0, max_size=4).flatmap(
    lambda s: st.tuples(st.just(s), st.permutations(range(len(s))))))
def test_transpose_matches_numpy(case):
    shape, perm = case
    x = rand(*shape)
    g = sc.trace(lambda x: ops.transpose(x, perm), sc.TensorSpec(shape))
    (out,) = sc.interpret(g, x)
    np.testing.assert_array_equal(out, np.transpose(x, perm))
    assert out.shape == out_types(g)[0].shape


def test_transpose_symbolic_and_T():
    g = sc.trace(lambda x: (x.T, x.transpose(1, 0, 2)), sc.TensorSpec(("batch", "seq", 4)))
    assert [t.shape for t in out_types(g)] == [(4, "seq", "batch"), ("seq", "batch", 4)]
    x = rand(2, 3, 4)
    a, b = sc.interpret(g, x)
    np.testing.assert_array_equal(a, x.T)
    np.testing.assert_array_equal(b, x.transpose(1, 0, 2))


def test_transpose_bad_perm():
    with pytest.raises(sc.TraceError, match="not a permutation"):
        sc.trace(lambda x: ops.transpose(x, (0, 0)), sc.TensorSpec((2, 3)))
    with pytest.raises(sc.TraceError, match="not a permutation"):
        sc.trace(lambda x: ops.transpose(x, (0, 1, 2)), sc.TensorSpec((2, 3)))


# ---------------------------------------------------------------------------------------------
# concat / stack

@given(st.integers(0, 2), st.lists(st.integers(0, 3), min_size=1, max_size=3))
def test_concat_matches_numpy(axis, sizes):
    arrays = []
    for n in sizes:
        shape = [2, 3, 2]
        shape[axis] = n
        arrays.append(rand(*shape))
    g = sc.trace(lambda *xs: ops.concat(list(xs), axis=axis), *[sc.TensorSpec(a.shape) for a in arrays])
    (out,) = sc.interpret(g, *arrays)
    np.testing.assert_array_equal(out, np.concatenate(arrays, axis=axis))
    assert out.shape == out_types(g)[0].shape


def test_concat_symbolic():
    g = sc.trace(lambda a, b: (ops.concat([a, b], 0), ops.concat([a, a], -1)),
                 sc.TensorSpec(("tokens", 4)), sc.TensorSpec(("tokens", 4)))
    assert [t.shape for t in out_types(g)] == [("2*tokens", 4), ("tokens", 8)]
    a, b = rand(3, 4), rand(3, 4)
    x, y = sc.interpret(g, a, b)
    np.testing.assert_array_equal(x, np.concatenate([a, b]))
    np.testing.assert_array_equal(y, np.concatenate([a, a], -1))


def test_concat_errors():
    with pytest.raises(sc.TraceError, match="not a single symbolic dim"):
        sc.trace(lambda a, b: ops.concat([a, b]), sc.TensorSpec(("tokens", 4)), sc.TensorSpec((2, 4)))
    with pytest.raises(sc.TraceError, match="dim 1 = 5"):
        sc.trace(lambda a, b: ops.concat([a, b]), sc.TensorSpec((2, 4)), sc.TensorSpec((2, 5)))
    with pytest.raises(sc.TraceError, match="dtype"):
        sc.trace(lambda a, b: ops.concat([a, b]), sc.TensorSpec((2, 4)), sc.TensorSpec((2, 4), "int64"))
    with pytest.raises(sc.TraceError, match="axis 2 is out of range for rank 2"):
        sc.trace(lambda a: ops.concat([a, a], axis=2), sc.TensorSpec((2, 4)))


@given(st.integers(-3, 2), st.integers(1, 4))
def test_stack_matches_numpy(axis, n):
    arrays = [rand(2, 3) for _ in range(n)]
    g = sc.trace(lambda *xs: ops.stack(list(xs), axis=axis), *[sc.TensorSpec((2, 3))] * n)
    (out,) = sc.interpret(g, *arrays)
    np.testing.assert_array_equal(out, np.stack(arrays, axis=axis))
    assert out.shape == out_types(g)[0].shape


def test_stack_expert_weights_and_errors():
    ws = [sc.Parameter(rand(4, 3)) for _ in range(3)]
    g = sc.trace(lambda x: ops.stack(ws) + x, sc.TensorSpec((4, 3)))
    assert out_types(g)[0].shape == (3, 4, 3)
    x = rand(4, 3)
    np.testing.assert_array_equal(sc.interpret(g, x)[0], np.stack([w.data for w in ws]) + x)
    with pytest.raises(sc.TraceError, match="input 1 has shape"):
        sc.trace(lambda a, b: ops.stack([a, b]), sc.TensorSpec((2, 3)), sc.TensorSpec((3, 2)))
    with pytest.raises(sc.TraceError, match="out of range"):
        sc.trace(lambda a: ops.stack([a, a], axis=3), sc.TensorSpec((2, 3)))


# ---------------------------------------------------------------------------------------------
# slice / getitem

def slices(n):
    bound = st.one_of(st.none(), st.integers(-n - 2, n + 2))
    step = st.one_of(st.none(), st.integers(-3, 3).filter(lambda s: s != 0))
    return st.builds(slice, bound, bound, step)


@st.composite
def index_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    items = []
    for n in shape:
        kind = draw(st.sampled_from(["slice", "int", "none"]))
        if kind == "int":
            items.append(draw(st.integers(-n, n - 1)))
        elif kind == "none":
            items.append(None)
            items.append(draw(slices(n)))
        else:
            items.append(draw(slices(n)))
    if draw(st.booleans()):  # drop the tail (implicit full slices), or use an ellipsis
        cut = draw(st.integers(0, len(items)))
        items = items[:cut] + ([Ellipsis] if draw(st.booleans()) else [])
    return shape, tuple(items)


@given(index_case())
def test_getitem_matches_numpy(case):
    shape, idx = case
    x = rand(*shape)
    g = sc.trace(lambda x: x[idx], sc.TensorSpec(shape))
    (out,) = sc.interpret(g, x)
    np.testing.assert_array_equal(out, x[idx])
    assert out.shape == out_types(g)[0].shape


@pytest.mark.parametrize("idx, want", [
    ((slice(None), slice(None, 2)), ("tokens", 2)),
    ((slice(None), slice(-3, None)), ("tokens", 3)),
    ((-1,), (5,)),
    ((0, 1), ()),
    ((slice(None, None, -1),), ("tokens", 5)),
    ((slice(2, 4),), (2, 5)),
    ((slice(-3, -1), None), (2, 1, 5)),
    ((Ellipsis, None, 2), ("tokens", 1)),
])
def test_getitem_symbolic_dim(idx, want):
    g = sc.trace(lambda x: x[idx], sc.TensorSpec(("tokens", 5)))
    assert out_types(g)[0].shape == want
    assert str(sc.parse(str(g))) == str(g)
    x = rand(6, 5)
    (out,) = sc.interpret(g, x)
    np.testing.assert_array_equal(out, x[idx])


@given(st.integers(4, 8), st.data())
def test_slice_on_symbolic_dim_rule_matches_reference(n, data):
    """Bounds within the dim: whenever the rule gives a type, the reference produces it."""
    bound = st.one_of(st.none(), st.integers(-4, 4))
    start, stop = data.draw(bound), data.draw(bound)
    step = data.draw(st.sampled_from([1, 2, -1, -2, 3]))
    try:
        g = sc.trace(lambda x: ops.slice(x, 0, start, stop, step), sc.TensorSpec(("2*tokens", 3)))
    except sc.TraceError as e:
        # the rule is conservative (it may refuse a length that happens to be static), never wrong
        assert "no exact symbolic length" in str(e)
        assert not (start in (None, 0) and stop is None and step in (1, 2)), "the whole dim must be accepted"
        return
    x = rand(2 * n, 3)
    (out,) = sc.interpret(g, x)
    np.testing.assert_array_equal(out, x[start:stop:step])
    assert out.shape == out_types(g)[0].concrete({"tokens": n})


def test_slice_symbolic_step():
    g = sc.trace(lambda x: (x[::2], x[::-2]), sc.TensorSpec(("2*tokens",)))
    assert [t.shape for t in out_types(g)] == [("tokens",), ("tokens",)]
    x = rand(6)
    a, b = sc.interpret(g, x)
    np.testing.assert_array_equal(a, x[::2])
    np.testing.assert_array_equal(b, x[::-2])
    with pytest.raises(sc.TraceError, match=r"slice \[1::2\] of symbolic dim 2\*tokens"):
        sc.trace(lambda x: x[1::2], sc.TensorSpec(("2*tokens",)))


def test_slice_symbolic_errors():
    with pytest.raises(sc.TraceError, match="no exact symbolic length"):
        sc.trace(lambda x: x[1:], sc.TensorSpec(("tokens",)))
    with pytest.raises(sc.TraceError, match="no exact symbolic length"):
        sc.trace(lambda x: x[::2], sc.TensorSpec(("tokens",)))


def test_slice_op_directly():
    g = sc.trace(lambda x: (ops.slice(x, 1, 1, None, 2), ops.slice(x, -1, None, None, -1)), sc.TensorSpec((3, 5)))
    x = rand(3, 5)
    a, b = sc.interpret(g, x)
    np.testing.assert_array_equal(a, x[:, 1::2])
    np.testing.assert_array_equal(b, x[:, ::-1])
    with pytest.raises(sc.TraceError, match="step must not be zero"):
        sc.trace(lambda x: ops.slice(x, 0, 0, 2, 0), sc.TensorSpec((3, 5)))
    with pytest.raises(sc.TraceError, match="axis 2 is out of range for rank 2"):
        sc.trace(lambda x: ops.slice(x, 2, 0, 1), sc.TensorSpec((3, 5)))


def test_getitem_index_tensor_and_arrays():
    def f(x, ids):
        return x[ids], x[:, ids], x[[2, 0]], x[None, ids, 1:]
    x, ids = rand(4, 4), np.array([[3, 0], [1, 1]])
    g, outs = run(f, x, ids)
    for o, want in zip(outs, (x[ids], x[:, ids], x[[2, 0]], x[None, ids, 1:])):
        np.testing.assert_array_equal(o, want)
    check_types(g, outs, {})


@pytest.mark.parametrize("idx, msg", [
    ((5,), "out of bounds for axis 0 with size 4"),
    ((0, 0, 0), "too many indices"),
    ((slice(None, None, 0),), "step cannot be zero"),
    ((np.array([True, False, True, True]),), "boolean mask"),
    ((Ellipsis, Ellipsis), "single ellipsis"),
    (("a",), "unsupported index"),
])
def test_getitem_errors(idx, msg):
    with pytest.raises(sc.TraceError, match=msg):
        sc.trace(lambda x: x[idx], sc.TensorSpec((4, 3)))


def test_getitem_tensor_with_int_rejected():
    with pytest.raises(sc.TraceError, match="cannot be combined with integer"):
        sc.trace(lambda x, i: x[0, i], sc.TensorSpec((4, 3)), sc.TensorSpec((2,), "int64"))
    with pytest.raises(sc.TraceError, match="integer tensors"):
        sc.trace(lambda x, i: x[i], sc.TensorSpec((4, 3)), sc.TensorSpec((2,), "float32"))


# ---------------------------------------------------------------------------------------------
# broadcast_to / expand_dims / squeeze

def test_broadcast_to():
    def f(x, m):
        b, s = x.shape
        return ops.broadcast_to(m, (b, s)), ops.broadcast_to(m, (2, b, s)), ops.broadcast_to(m[0, 0], (3,))
    x, m = rand(2, 5), rand(1, 5)
    g, outs = run(f, x, m, dims=[("batch", "seq"), (1, "seq")])
    assert [t.shape for t in out_types(g)] == [("batch", "seq"), (2, "batch", "seq"), (3,)]
    for o, shape in zip(outs, ((2, 5), (2, 2, 5))):
        np.testing.assert_array_equal(o, np.broadcast_to(m, shape))
    np.testing.assert_array_equal(outs[2], np.full(3, m[0, 0]))


def test_broadcast_to_errors():
    with pytest.raises(sc.TraceError, match="cannot broadcast"):
        sc.trace(lambda x: ops.broadcast_to(x, (3, 4)), sc.TensorSpec((2, 4)))
    with pytest.raises(sc.TraceError, match="lower rank"):
        sc.trace(lambda x: ops.broadcast_to(x, (4,)), sc.TensorSpec((2, 4)))
    with pytest.raises(sc.TraceError, match="dim 0: tokens vs seq"):
        sc.trace(lambda x: ops.broadcast_to(x, ("seq", 4)), sc.TensorSpec(("tokens", 4)))


@given(st.lists(st.integers(1, 3), min_size=0, max_size=3), st.data())
def test_expand_squeeze_roundtrip(shape, data):
    n = data.draw(st.integers(1, 2))
    rank = len(shape) + n
    axes = tuple(data.draw(st.lists(st.integers(-rank, rank - 1), min_size=n, max_size=n,
                                    unique_by=lambda a: a % rank)))
    x = rand(*shape)
    g = sc.trace(lambda x: (ops.expand_dims(x, axes), ops.squeeze(ops.expand_dims(x, axes), axes)),
                 sc.TensorSpec(shape))
    e, s = sc.interpret(g, x)
    np.testing.assert_array_equal(e, np.expand_dims(x, axes))
    np.testing.assert_array_equal(s, x)
    assert [e.shape, s.shape] == [t.shape for t in out_types(g)]


def test_squeeze_rules():
    g = sc.trace(lambda x: (ops.squeeze(x), ops.squeeze(x, -1), ops.expand_dims(x, 0)),
                 sc.TensorSpec((1, "tokens", 1)))
    assert [t.shape for t in out_types(g)] == [("tokens",), (1, "tokens"), (1, 1, "tokens", 1)]
    x = rand(1, 1, 1)  # tokens = 1 at run time: only the static 1-dims are squeezed
    a, b, c = sc.interpret(g, x)
    assert a.shape == (1,) and b.shape == (1, 1) and c.shape == (1, 1, 1, 1)
    with pytest.raises(sc.TraceError, match="cannot squeeze axis 1 of size tokens"):
        sc.trace(lambda x: ops.squeeze(x, 1), sc.TensorSpec((1, "tokens")))
    with pytest.raises(sc.TraceError, match="repeated axis"):
        sc.trace(lambda x: ops.expand_dims(x, (0, -3)), sc.TensorSpec((2,)))


# ---------------------------------------------------------------------------------------------
# text round trip with every shape op

def test_round_trip_all_shape_ops():
    def f(x, ids):
        b, s, h = x.shape
        y = x.reshape(-1, h).reshape(b, s, h)
        t = ops.transpose(y, (2, 0, 1))
        c = ops.concat([t, t], axis=0)
        sl = c[1:5:2, :, ::-1]
        e = ops.squeeze(ops.expand_dims(sl, (0, 2)), 0)
        st_ = ops.stack([x, x], axis=-1)
        m = ops.broadcast_to(x[:1], (b, s, h))
        return {"e": e, "st": st_, "m": m, "g": x[ids]}
    g = sc.trace(f, sc.TensorSpec(("batch", "seq", 4)), sc.TensorSpec((3,), "int64"))
    text = str(g)
    for name in ("sc.reshape", "sc.transpose", "sc.concat", "sc.slice", "sc.expand_dims", "sc.squeeze",
                 "sc.stack", "sc.broadcast_to", "sc.take"):
        assert f'"{name}"' in text
    assert str(sc.parse(text)) == text
    x, ids = rand(2, 3, 4), np.array([1, 0, 1])
    e, st_, m, gg = sc.interpret(sc.parse(text), x, ids)
    t = np.concatenate([x.transpose(2, 0, 1)] * 2)
    np.testing.assert_array_equal(e, np.expand_dims(t[1:5:2, :, ::-1], 1))
    np.testing.assert_array_equal(st_, np.stack([x, x], -1))
    np.testing.assert_array_equal(m, np.broadcast_to(x[:1], x.shape))
    np.testing.assert_array_equal(gg, x[ids])


def test_verify_catches_bad_written_type():
    g = sc.trace(lambda x: x.reshape(-1), sc.TensorSpec((2, 3)))
    bad = str(g).replace("tensor<6xf32>", "tensor<5xf32>")
    with pytest.raises((sc.VerifyError, sc.ParseError), match="shape rule"):
        sc.parse(bad)
