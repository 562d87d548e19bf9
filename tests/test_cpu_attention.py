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
