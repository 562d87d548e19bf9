"""CPU kernels of the MoE dispatch chain against the reference: random graphs, the traced
``sc.nn.MoE`` layer (sparse formulation) at 1, 5 and 64 tokens, uneven expert loads (empty
experts, an expert big enough for BLAS), every gated activation, and malformed routing data."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cpu_linalg import OTHER_DTYPES, check_graph, check_op, run_kernels, trace

import sparsec as sc
from sparsec.frontend.tracer import Parameter
from sparsec.lower.cpu import run_naive
from sparsec.runtime.cpu import linalg as L

MOE_OPS = ["sc.softmax_topk", "sc.moe_dispatch", "sc.moe_permute", "sc.grouped_matmul", "sc.moe_gated_grouped_matmul",
           "sc.moe_combine"]
# random graphs host the MoE ops only when a [T, k] id tensor can be made from their inputs
RARE = [HealthCheck.filter_too_much, HealthCheck.too_slow]


@pytest.mark.parametrize("op", MOE_OPS)
@settings(max_examples=20, suppress_health_check=RARE)
@given(data=st.data())
def test_random_graphs_f32(op, data):
    check_op(data, op)


@pytest.mark.parametrize("dtypes", OTHER_DTYPES, ids="-".join)
@pytest.mark.parametrize("op", MOE_OPS)
@settings(max_examples=4, suppress_health_check=RARE)
@given(data=st.data())
def test_random_graphs_other_dtypes(op, dtypes, data):
    check_op(data, op, dtypes)


@pytest.mark.slow
@pytest.mark.parametrize("dtypes", [("f32", "i64")] + OTHER_DTYPES, ids="-".join)
@pytest.mark.parametrize("op", MOE_OPS)
@settings(max_examples=200, suppress_health_check=RARE)
@given(data=st.data())
def test_random_graphs_thorough(op, dtypes, data):
    check_op(data, op, dtypes, max_size=9)


# ---------------------------------------------------------------------------------------------
# the traced MoE layer

SPARSE_CHAIN = {"sc.linear", "sc.moe_dispatch", "sc.moe_permute", "sc.grouped_matmul", "sc.moe_combine"}


@pytest.fixture(scope="module")
def moe_graph():
    moe = sc.nn.MoE(hidden=64, ffn=128, num_experts=8, top_k=2, seed=0, formulation="sparse")
    return sc.trace(moe, sc.TensorSpec(("tokens", 64), "float32"))


@pytest.mark.parametrize("tokens", [1, 5, 64])
def test_moe_layer(moe_graph, tokens):
    x = np.random.default_rng(tokens).standard_normal((tokens, 64)).astype(np.float32)
    check_graph(moe_graph, [x])
    assert SPARSE_CHAIN <= set(run_naive.last_kernels), run_naive.last_kernels


def test_moe_layer_deepseek_router_with_shared_expert():
    moe = sc.nn.MoE(32, 48, 8, 3, router="sigmoid", n_group=4, topk_group=2, score_bias=True, shared_ffn=40,
                    routed_scaling_factor=2.5, naming="deepseek", seed=3, formulation="sparse")
    g = sc.trace(moe, sc.TensorSpec(("batch", "seq", 32), "float32"))
    x = np.random.default_rng(0).standard_normal((2, 7, 32)).astype(np.float32)
    check_graph(g, [x])
    assert {"sc.take_along_axis", "sc.scatter"} | SPARSE_CHAIN <= set(run_naive.last_kernels)


# ---------------------------------------------------------------------------------------------
# uneven loads, every activation, the BLAS path, f16/bf16

def expert_chain(num_experts, top_k, hidden, ffn, activation, rng, dtype=np.float32):
    s = 1 / np.sqrt(hidden)
    wg, wu = (Parameter((rng.uniform(-s, s, (num_experts, ffn, hidden))).astype(dtype)) for _ in range(2))
    wd = Parameter((rng.uniform(-s, s, (num_experts, hidden, ffn))).astype(dtype))

    def fn(x, ids, weights):
        order, offsets = sc.ops.moe_dispatch(ids, num_experts)
        xp = sc.ops.moe_permute(x, order, top_k)
        h = sc.ops.moe_gated_grouped_matmul(xp, wg, wu, offsets, activation=activation)
        return sc.ops.moe_combine(sc.ops.grouped_matmul(h, wd, offsets), order, weights)
    name = np.dtype(dtype).name
    return trace(fn, (("tokens", hidden), name), (("tokens", top_k), "int64"), (("tokens", top_k), name))


@pytest.mark.parametrize("activation", ["silu", "gelu", "gelu_tanh", "relu"])
def test_uneven_expert_loads(activation):
    rng = np.random.default_rng(7)
    e, k, t = 6, 2, L.BLAS_MIN_ROWS + 6
    g = expert_chain(e, k, 40, 72, activation, rng)
    # expert 0 gets every token (a BLAS-sized group), experts 3 and 5 none, the rest a few
    ids = np.stack([np.zeros(t, np.int64), rng.choice([1, 2, 4], t)], axis=1)
    x = rng.standard_normal((t, 40)).astype(np.float32)
    w = rng.random((t, k)).astype(np.float32)
    check_graph(g, [x, ids, w], "sc.moe_gated_grouped_matmul")


@pytest.mark.parametrize("tokens", [1, 3])
def test_decode_sizes_on_threads(tokens):
    # one token: each active expert's [N, K] weight read once, split over the threads
    rng = np.random.default_rng(tokens)
    g = expert_chain(8, 2, 256, 512, "silu", rng)
    ids = np.stack([rng.choice(8, 2, replace=False) for _ in range(tokens)])
    x = rng.standard_normal((tokens, 256)).astype(np.float32)
    check_graph(g, [x, ids, rng.random((tokens, 2)).astype(np.float32)], "sc.grouped_matmul")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_other_float_dtypes(dtype):
    rng = np.random.default_rng(8)
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    g = expert_chain(4, 2, 16, 24, "silu", rng, dt)
    ids = rng.integers(0, 4, (9, 2))
    check_graph(g, [rng.standard_normal((9, 16)).astype(dt), ids, rng.random((9, 2)).astype(dt)],
                "sc.moe_gated_grouped_matmul")


def test_large_permute_and_combine_on_threads():
    rng = np.random.default_rng(9)
    t, k, h = 300, 4, 256  # 1200 rows of 1 KiB
    g = trace(lambda x, ids, w: sc.ops.moe_combine(
        sc.ops.moe_permute(x, sc.ops.moe_dispatch(ids, 16)[0], k), sc.ops.moe_dispatch(ids, 16)[0], w),
        ((t, h), "float32"), ((t, k), "int64"), ((t, k), "float32"))
    check_graph(g, [rng.standard_normal((t, h)).astype(np.float32), rng.integers(0, 16, (t, k)),
                    rng.random((t, k)).astype(np.float32)], "sc.moe_combine")


# ---------------------------------------------------------------------------------------------
# malformed routing data

def test_expert_id_out_of_range():
    g = trace(lambda ids: sc.ops.moe_dispatch(ids, 4), ((3, 2), "int64"))
    with pytest.raises(ValueError, match=r"sc\.moe_dispatch.*expert id 4 is outside \[0, 4\)"):
        run_kernels(g, np.array([[0, 1], [4, 2], [3, 3]]))


def test_permute_order_out_of_range():
    g = trace(lambda x, o: sc.ops.moe_permute(x, o, 2), ((2, 3), "float32"), ((4,), "int64"))
    with pytest.raises(IndexError, match=r"sc\.moe_permute.*order entry 4 is out of range \[0, 4\)"):
        run_kernels(g, np.zeros((2, 3), np.float32), np.array([0, 1, 4, 2]))


def test_combine_needs_a_permutation():
    g = trace(lambda y, o, w: sc.ops.moe_combine(y, o, w), ((4, 3), "float32"), ((4,), "int64"),
              ((2, 2), "float32"))
    with pytest.raises(ValueError, match=r"sc\.moe_combine.*not a permutation"):
        run_kernels(g, np.zeros((4, 3), np.float32), np.array([0, 1, 1, 3]), np.ones((2, 2), np.float32))


@pytest.mark.parametrize("offsets", [[0, 2, 1, 3], [1, 2, 3, 3], [0, 1, 2, 2]])
def test_grouped_matmul_rejects_bad_offsets(offsets):
    w = Parameter(np.ones((3, 2, 4), np.float32))
    g = trace(lambda x, off: sc.ops.grouped_matmul(x, w, off), ((3, 4), "float32"), ((4,), "int64"))
    with pytest.raises(ValueError, match=r"sc\.grouped_matmul.*offsets must rise from 0 to 3"):
        run_kernels(g, np.ones((3, 4), np.float32), np.array(offsets))


# ---------------------------------------------------------------------------------------------
# sc.softmax_topk: the same values as the four kernels it replaces

def _router_values(draw, rows, n, dtype):
    """Logits with ties, repeats, large magnitudes and (sometimes) NaN / inf."""
    pool = draw(st.lists(st.floats(-30, 30, width=32), min_size=1, max_size=4))
    special = [np.nan, np.inf, -np.inf] if draw(st.booleans()) else []
    vals = draw(st.lists(st.sampled_from(pool + special) | st.floats(-30, 30, width=32),
                         min_size=rows * n, max_size=rows * n))
    return np.array(vals, np.float64).reshape(rows, n).astype(dtype)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_softmax_topk_kernel_is_the_softmax_and_topk_kernels_then_the_reference_division(data):
    """``sc.softmax_topk``'s kernel against the ``sc.softmax`` and ``sc.topk`` CPU kernels: the same
    ids and, bit for bit, the same values; with ``normalize`` the values are exactly the
    reference's ``sc.sum`` (float64, NumPy's order) and ``sc.div`` applied to those top-k
    probabilities. Every float dtype, k up to n, ties, NaN and inf rows."""
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.float16, ml_dtypes.bfloat16]), label="dtype")
    rows, n = data.draw(st.integers(0, 5), label="rows"), data.draw(st.integers(1, 40), label="n")
    k = data.draw(st.integers(1, n), label="k")
    normalize = data.draw(st.booleans(), label="normalize")
    x = _router_values(data.draw, rows, n, dtype)
    name = np.dtype(dtype).name
    fused = sc.trace(lambda v: sc.ops.softmax_topk(v, k, normalize), sc.TensorSpec(("t", n), name))
    two = sc.trace(lambda v: sc.ops.topk(sc.ops.softmax(v, -1), k), sc.TensorSpec(("t", n), name))
    with np.errstate(all="ignore"):
        got = run_naive(fused, x)
        w, ids = run_naive(two, x)
        assert run_naive.last_kernels == ["sc.softmax", "sc.topk"]
        if normalize:
            ref = sc.ops.REGISTRY
            w = ref["sc.div"].reference(w, ref["sc.sum"].reference(w, axes=(-1,), keepdims=True))
    np.testing.assert_array_equal(got[1], ids)
    np.testing.assert_array_equal(got[0].astype(np.float64), w.astype(np.float64))
    check_graph(fused, [x], "sc.softmax_topk")


def test_softmax_topk_rejects_bad_attributes():
    with pytest.raises(sc.errors.SparsecError, match=r"sc.softmax_topk .*k=9 must be in \[1, 8\]"):
        sc.trace(lambda v: sc.ops.softmax_topk(v, 9), sc.TensorSpec(("t", 8), "float32"))
    with pytest.raises(sc.errors.SparsecError, match="x must be a float tensor, got i64"):
        sc.trace(lambda v: sc.ops.softmax_topk(v, 1), sc.TensorSpec(("t", 8), "int64"))
