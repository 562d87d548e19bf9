"""CPU kernel of sc.attention against the reference: random graphs, grouped-query heads, causal
offsets with more keys than queries (decoding from a KV cache), boolean and additive masks, rows
that see no key, and sizes that run on the threads."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cpu_linalg import OTHER_DTYPES, check_graph, check_op

import sparsec as sc


# few random graphs can host an attention (it needs a 2-d float value with a static last dim)
RARE = [HealthCheck.filter_too_much, HealthCheck.too_slow]


@settings(suppress_health_check=RARE)
@given(data=st.data())
def test_random_graphs_f32(data):
    check_op(data, "sc.attention")


@pytest.mark.parametrize("dtypes", OTHER_DTYPES, ids="-".join)
@settings(max_examples=5, suppress_health_check=RARE)
@given(data=st.data())
def test_random_graphs_other_dtypes(dtypes, data):
    check_op(data, "sc.attention", dtypes)


@pytest.mark.slow
@settings(max_examples=300, suppress_health_check=RARE)
@given(data=st.data())
def test_random_graphs_thorough(data):
    check_op(data, "sc.attention", max_size=9)


def attention_graph(q, k, v, mask=None, causal=False, scale=None):
    specs = [sc.TensorSpec(a.shape, a.dtype) for a in (q, k, v)]
    if mask is not None:
        specs.append(sc.TensorSpec(mask.shape, mask.dtype))
        return sc.trace(lambda q, k, v, m: sc.ops.attention(q, k, v, m, causal=causal, scale=scale), *specs)
    return sc.trace(lambda q, k, v: sc.ops.attention(q, k, v, causal=causal, scale=scale), *specs)


def qkv(rng, b, hq, hkv, s, l, d, dv=None, dtype=np.float32):
    dv = dv or d
    return (rng.standard_normal((b, hq, s, d)).astype(dtype), rng.standard_normal((b, hkv, l, d)).astype(dtype),
            rng.standard_normal((b, hkv, l, dv)).astype(dtype))


@pytest.mark.parametrize("shape", [
    (1, 8, 2, 1, 300, 64, 64),    # decode: one query, a long KV cache, GQA 4:1 (several key tiles)
    (2, 4, 4, 37, 37, 32, 16),    # prefill, Dv != D
    (1, 6, 3, 5, 9, 16, 16),      # more keys than queries
    (1, 2, 1, 9, 4, 8, 8),        # fewer keys than queries: early rows see nothing when causal
])
@pytest.mark.parametrize("causal", [False, True])
def test_shapes(shape, causal):
    rng = np.random.default_rng(sum(shape))
    q, k, v = qkv(rng, *shape)
    check_graph(attention_graph(q, k, v, causal=causal), [q, k, v], "sc.attention")


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("mask_shape", [(1, 1, 7, 140), (2, 1, 1, 140), (140,), (7, 1)])
def test_masks_broadcast(kind, mask_shape):
    rng = np.random.default_rng(3)
    q, k, v = qkv(rng, 2, 4, 2, 7, 140, 16)
    if kind == "bool":
        mask = rng.random(mask_shape) < 0.7
    else:
        mask = np.where(rng.random(mask_shape) < 0.2, -np.inf, rng.standard_normal(mask_shape)).astype(np.float32)
    check_graph(attention_graph(q, k, v, mask, causal=True, scale=0.3), [q, k, v, mask], "sc.attention")


def test_fully_masked_rows_give_zeros():
    rng = np.random.default_rng(4)
    q, k, v = qkv(rng, 1, 2, 2, 3, 5, 4)
    mask = np.ones((1, 1, 3, 5), bool)
    mask[0, 0, 1] = False
    out = check_graph(attention_graph(q, k, v, mask), [q, k, v, mask], "sc.attention")[0]
    assert np.all(out[:, :, 1] == 0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_other_float_dtypes(dtype):
    rng = np.random.default_rng(5)
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    q, k, v = qkv(rng, 1, 4, 2, 6, 10, 8, dtype=dt)
    mask = (rng.standard_normal((1, 1, 6, 10))).astype(dt)
    check_graph(attention_graph(q, k, v, mask, causal=True), [q, k, v, mask], "sc.attention")


# -- one query row (a decode step): the attention_decode kernel -----------------------------------

@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 2), hkv=st.integers(1, 3), group=st.integers(1, 4), l=st.integers(1, 150),
       d=st.sampled_from([1, 8, 64]), causal=st.booleans(), mask=st.sampled_from([None, "bool", "float"]),
       seed=st.integers(0, 2**16))
def test_decode_step_matches_reference(b, hkv, group, l, d, causal, mask, seed):
    """S = 1: GQA groups, lengths from 1 (several threads' worth included), boolean and additive
    masks broadcast over heads, causal or not (one query sees every key either way)."""
    rng = np.random.default_rng(seed)
    q, k, v = qkv(rng, b, hkv * group, hkv, 1, l, d)
    if mask is None:
        g, inputs = attention_graph(q, k, v, causal=causal), [q, k, v]
    else:
        m = rng.random((b, 1, 1, l)) < 0.7 if mask == "bool" else \
            np.where(rng.random((1, hkv * group, 1, l)) < 0.2, -np.inf, rng.standard_normal((1, hkv * group, 1, l)))
        m = m if mask == "bool" else m.astype(np.float32)
        g, inputs = attention_graph(q, k, v, m, causal=causal), [q, k, v, m]
    check_graph(g, inputs, "sc.attention")


@pytest.mark.parametrize("hq,hkv", [(8, 1), (8, 2), (6, 3)])
def test_decode_step_long_context_on_threads(hq, hkv):
    """Contexts long enough for the threads: one query head per work item when there are fewer KV
    heads than threads (multi-query), a KV head's group (heads in pairs, an odd one alone)
    otherwise; lengths not a multiple of the 4-key passes, some keys masked."""
    from sparsec.runtime.cpu.attention import attention_chunks
    rng = np.random.default_rng(hq * 10 + hkv)
    q, k, v = qkv(rng, 1, hq, hkv, 1, 603, 64)
    assert attention_chunks(q.shape, k.shape, v.shape) > 1 or __import__("numba").get_num_threads() == 1
    m = rng.random((1, 1, 1, 603)) < 0.9
    check_graph(attention_graph(q, k, v, causal=True), [q, k, v], "sc.attention")
    check_graph(attention_graph(q, k, v, m), [q, k, v, m], "sc.attention")


def test_decode_step_special_rows():
    """A fully masked row gives zeros, a NaN query a NaN row, an +inf score a NaN row (inf - inf),
    as the reference; the other rows are unaffected."""
    rng = np.random.default_rng(7)
    q, k, v = qkv(rng, 1, 4, 2, 1, 6, 8)
    q[0, 1, 0, 3] = np.nan
    q[0, 2, 0, 0] = np.inf
    mask = np.ones((1, 4, 1, 6), bool)
    mask[0, 3] = False
    out = check_graph(attention_graph(q, k, v, mask), [q, k, v, mask], "sc.attention")[0]
    assert np.all(out[0, 3] == 0) and np.all(np.isnan(out[0, 1])) and np.all(np.isnan(out[0, 2]))
    assert np.all(np.isfinite(out[0, 0]))


def test_decode_step_reads_a_cache_view_through_its_buffer():
    """``generate`` passes ``cache[:, :, :ctx]`` views; the kernel reads the first ``ctx`` positions of
    the contiguous buffer (not a copy, not the positions after ``ctx``), and a view that does not
    start at the buffer's first position is copied instead."""
    from sparsec.lower.cpu.attention import _positions_view
    rng = np.random.default_rng(8)
    q, kb, vb = qkv(rng, 1, 4, 2, 1, 20, 16)
    kb[:, :, 9:] = np.nan  # beyond ctx: must not be read
    vb[:, :, 9:] = np.nan
    k, v = kb[:, :, :9], vb[:, :, :9]
    assert _positions_view(k) is kb
    shifted = kb[:, :, 1:10]
    pv = _positions_view(shifted)
    assert pv is not kb and pv.shape == shifted.shape and np.array_equal(pv, shifted, equal_nan=True)
    from sparsec.lower.cpu import lower_op
    g = attention_graph(q, np.ascontiguousarray(k), np.ascontiguousarray(v), causal=True)
    (op,) = [o for o in g.main.ops if o.name == "sc.attention"]
    got = np.empty(q.shape, np.float32)
    lower_op(op).fn(q, k, v, got)  # the views themselves, as the executable hands donated caches over
    want = sc.interpret(g, q, np.ascontiguousarray(k), np.ascontiguousarray(v))[0]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
