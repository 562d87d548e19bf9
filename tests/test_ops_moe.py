"""The sparse-dispatch MoE ops: references against naive loops, shape rules, text round trip."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsec as sc
from sparsec import ops
from sparsec.ir import get_opdef


def ref(name, *arrays, **attrs):
    return get_opdef(name).run_reference(list(arrays), attrs)


def naive_counting_sort(ids, num_experts):
    """The textbook counting sort of the flat (token, slot) pairs by expert id."""
    flat = ids.reshape(-1)
    buckets = [[] for _ in range(num_experts)]
    for p, e in enumerate(flat):
        buckets[e].append(p)
    order = [p for b in buckets for p in b]
    offsets = [0]
    for b in buckets:
        offsets.append(offsets[-1] + len(b))
    return np.array(order, np.int64), np.array(offsets, np.int64)


@st.composite
def routing(draw, max_t=9, max_e=6):
    e = draw(st.integers(1, max_e))
    k = draw(st.integers(1, e))
    t = draw(st.integers(0, max_t))
    # ids may repeat within a row here: dispatch does not assume distinct experts per token
    ids = draw(st.lists(st.integers(0, e - 1), min_size=t * k, max_size=t * k))
    return np.array(ids, np.int64).reshape(t, k), e


@given(routing())
def test_dispatch_is_a_stable_counting_sort(case):
    ids, e = case
    order, offsets = ref("sc.moe_dispatch", ids, num_experts=e)
    exp_order, exp_offsets = naive_counting_sort(ids, e)
    np.testing.assert_array_equal(order, exp_order)
    np.testing.assert_array_equal(offsets, exp_offsets)
    assert order.dtype == np.int64 and offsets.dtype == np.int64
    # the properties, stated directly
    flat = ids.reshape(-1)
    assert sorted(order.tolist()) == list(range(flat.size))
    for x in range(e):
        rows = order[offsets[x]:offsets[x + 1]]
        assert np.all(flat[rows] == x)
        assert np.all(np.diff(rows) > 0)  # stable: flat order kept inside an expert


def test_dispatch_rejects_out_of_range_ids():
    with pytest.raises(ValueError, match="outside"):
        ref("sc.moe_dispatch", np.array([[0, 4]]), num_experts=4)
    with pytest.raises(ValueError, match="outside"):
        ref("sc.moe_dispatch", np.array([[-1, 0]]), num_experts=4)


@given(routing(), st.integers(1, 5), st.integers(0, 2**31))
def test_permute_gathers_token_rows(case, h, seed):
    ids, e = case
    t, k = ids.shape
    x = np.random.default_rng(seed).standard_normal((t, h)).astype(np.float32)
    order, _ = ref("sc.moe_dispatch", ids, num_experts=e)
    (xp,) = ref("sc.moe_permute", x, order, top_k=k)
    assert xp.shape == (t * k, h)
    for p in range(t * k):
        np.testing.assert_array_equal(xp[p], x[order[p] // k])


def naive_grouped_matmul(x, w, offsets):
    out = np.zeros((x.shape[0], w.shape[1]), np.float64)
    for r in range(x.shape[0]):
        e = int(np.searchsorted(offsets, r, side="right")) - 1
        for n in range(w.shape[1]):
            out[r, n] = sum(float(x[r, i]) * float(w[e, n, i]) for i in range(x.shape[1]))
    return out


@given(routing(), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**31))
def test_grouped_matmul_matches_per_row_loop(case, kdim, n, seed):
    ids, e = case
    rng = np.random.default_rng(seed)
    _, offsets = ref("sc.moe_dispatch", ids, num_experts=e)
    m = ids.size
    x = rng.standard_normal((m, kdim)).astype(np.float32)
    w = rng.standard_normal((e, n, kdim)).astype(np.float32)
    (y,) = ref("sc.grouped_matmul", x, w, offsets)
    assert y.shape == (m, n) and y.dtype == np.float32
    np.testing.assert_allclose(y, naive_grouped_matmul(x, w, offsets), rtol=1e-5, atol=1e-5)


def test_grouped_matmul_rejects_bad_offsets():
    x = np.ones((3, 2), np.float32)
    w = np.ones((2, 2, 2), np.float32)
    for bad in ([0, 2, 2], [1, 2, 3], [0, 3, 2]):
        with pytest.raises(ValueError, match="offsets"):
            ref("sc.grouped_matmul", x, w, np.array(bad))


@given(routing(), st.integers(1, 4), st.integers(1, 4), st.sampled_from(["silu", "gelu", "relu"]),
       st.integers(0, 2**31))
def test_gated_grouped_matmul_matches_loop(case, kdim, n, act, seed):
    ids, e = case
    rng = np.random.default_rng(seed)
    _, offsets = ref("sc.moe_dispatch", ids, num_experts=e)
    m = ids.size
    x = rng.standard_normal((m, kdim)).astype(np.float32)
    wg = rng.standard_normal((e, n, kdim)).astype(np.float32)
    wu = rng.standard_normal((e, n, kdim)).astype(np.float32)
    (y,) = ref("sc.moe_gated_grouped_matmul", x, wg, wu, offsets, activation=act)
    g = naive_grouped_matmul(x, wg, offsets)
    u = naive_grouped_matmul(x, wu, offsets)
    from math import erf, sqrt
    f = {"silu": lambda v: v / (1 + np.exp(-v)), "relu": lambda v: max(v, 0.0),
         "gelu": lambda v: 0.5 * v * (1 + erf(v / sqrt(2)))}[act]
    exp = np.vectorize(f)(g) * u if m else g
    np.testing.assert_allclose(y, exp, rtol=1e-4, atol=1e-5)


@given(routing(), st.integers(1, 5), st.integers(0, 2**31))
def test_combine_matches_loop(case, h, seed):
    ids, e = case
    t, k = ids.shape
    rng = np.random.default_rng(seed)
    order, _ = ref("sc.moe_dispatch", ids, num_experts=e)
    y = rng.standard_normal((t * k, h)).astype(np.float32)
    w = rng.random((t, k)).astype(np.float32)
    (out,) = ref("sc.moe_combine", y, order, w)
    exp = np.zeros((t, h))
    for tok in range(t):
        for j in range(k):
            pos = int(np.nonzero(order == tok * k + j)[0][0])
            exp[tok] += float(w[tok, j]) * y[pos].astype(np.float64)
    assert out.shape == (t, h) and out.dtype == np.float32
    np.testing.assert_allclose(out, exp, rtol=1e-5, atol=1e-5)


def test_combine_rejects_non_permutation():
    with pytest.raises(ValueError, match="permutation"):
        ref("sc.moe_combine", np.ones((2, 3), np.float32), np.array([0, 0]), np.ones((1, 2), np.float32))


def test_half_precision_results_keep_dtype():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8)).astype(np.float16)
    w = rng.standard_normal((2, 3, 8)).astype(np.float16)
    offsets = np.array([0, 1, 4])
    (y,) = ref("sc.grouped_matmul", x, w, offsets)
    assert y.dtype == np.float16
    exp = naive_grouped_matmul(x.astype(np.float32), w.astype(np.float32), offsets)
    np.testing.assert_allclose(y.astype(np.float32), exp, rtol=1e-2, atol=1e-2)


# ---------------------------------------------------------------------------------------------
# shape rules and tracing

def sparse_chain(x, ids, weights, w_gate, w_up, w_down):
    e = w_gate.shape[0]
    k = ids.shape[1]
    order, offsets = ops.moe_dispatch(ids, num_experts=e)
    xp = ops.moe_permute(x, order, top_k=k)
    h = ops.moe_gated_grouped_matmul(xp, w_gate, w_up, offsets)
    y = ops.grouped_matmul(h, w_down, offsets)
    return ops.moe_combine(y, order, weights)


def dense_expert_sum(x, ids, weights, w_gate, w_up, w_down):
    """Every selected expert's SwiGLU output, weighted, per token (written from the definition)."""
    out = np.zeros((x.shape[0], w_down.shape[1]), np.float64)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = ids[t, j]
            g = w_gate[e] @ x[t]
            u = w_up[e] @ x[t]
            out[t] += weights[t, j] * (w_down[e] @ (g / (1 + np.exp(-g)) * u))
    return out


def test_symbolic_tokens_trace_print_parse_and_run():
    e, k, h, f = 4, 2, 8, 6
    g = sc.trace(sparse_chain,
                 sc.TensorSpec(("tokens", h), "float32", "x"), sc.TensorSpec(("tokens", k), "int64", "ids"),
                 sc.TensorSpec(("tokens", k), "float32", "weights"), sc.TensorSpec((e, f, h), "float32", "w_gate"),
                 sc.TensorSpec((e, f, h), "float32", "w_up"), sc.TensorSpec((e, h, f), "float32", "w_down"))
    text = str(g)
    assert "sc.moe_dispatch" in text and "sc.moe_combine" in text
    assert str(sc.parse(text)) == text
    ops_by_name = {op.name: op for op in g.main.body.ops}
    assert ops_by_name["sc.moe_dispatch"].results[0].type.shape == ("2*tokens",)
    assert ops_by_name["sc.moe_dispatch"].results[1].type.shape == (e + 1,)
    assert ops_by_name["sc.moe_permute"].results[0].type.shape == ("2*tokens", h)
    assert ops_by_name["sc.grouped_matmul"].results[0].type.shape == ("2*tokens", h)
    assert ops_by_name["sc.moe_combine"].results[0].type.shape == ("tokens", h)
    rng = np.random.default_rng(1)
    for t in (0, 1, 7):
        x = rng.standard_normal((t, h)).astype(np.float32)
        ids = np.array([rng.choice(e, k, replace=False) for _ in range(t)], np.int64).reshape(t, k)
        w = rng.random((t, k)).astype(np.float32)
        ws = [rng.standard_normal(s).astype(np.float32) for s in ((e, f, h), (e, f, h), (e, h, f))]
        (y,) = sc.interpret(g, x, ids, w, *ws)
        assert y.shape == (t, h)
        np.testing.assert_allclose(y, dense_expert_sum(x, ids, w, *ws), rtol=1e-4, atol=1e-5)


def trace_err(fn, *specs):
    with pytest.raises(sc.TraceError) as info:
        sc.trace(fn, *specs)
    return str(info.value)


def test_shape_rules_reject_mismatches():
    T = sc.TensorSpec
    msg = trace_err(lambda x, o: ops.moe_permute(x, o, top_k=2), T(("tokens", 8)), T(("tokens",), "int64"))
    assert "tokens*top_k" in msg and "2*tokens" in msg
    msg = trace_err(lambda x, w, o: ops.grouped_matmul(x, w, o), T((6, 8)), T((3, 4, 5)), T((4,), "int64"))
    assert "8 columns" in msg
    msg = trace_err(lambda x, w, o: ops.grouped_matmul(x, w, o), T((6, 8)), T((3, 4, 8)), T((3,), "int64"))
    assert "experts+1" in msg
    msg = trace_err(lambda x, w, o: ops.grouped_matmul(x, w, o), T((6, 8)), T((3, 4, 8), "float16"),
                    T((4,), "int64"))
    assert "sc.cast" in msg
    msg = trace_err(lambda ids: ops.moe_dispatch(ids, num_experts=4), T(("tokens", 2), "float32"))
    assert "integer" in msg
    msg = trace_err(lambda y, o, w: ops.moe_combine(y, o, w), T((6, 8)), T((6,), "int64"), T((2, 2)))
    assert "tokens*top_k" in msg
    msg = trace_err(lambda x, g, u, o: ops.moe_gated_grouped_matmul(x, g, u, o), T((6, 8)), T((3, 4, 8)),
                    T((3, 5, 8)), T((4,), "int64"))
    assert "must match" in msg


def test_grouped_matmul_accepts_quantized_weight_type():
    from sparsec.ir.types import QuantType
    x = sc.TensorSpec(("m", 64)).type
    offsets = sc.TensorSpec((5,), "int64").type
    (out,) = get_opdef("sc.grouped_matmul").infer_types([x, QuantType("q8_0", (4, 32, 64)), offsets], {})
    assert out.shape == ("m", 32) and out.dtype.name == "f32"
