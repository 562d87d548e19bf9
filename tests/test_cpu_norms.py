"""CPU kernels of rms_norm, layer_norm and rope against the reference interpreter."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cpu_elementwise import T, check_graph, check_op_on_random_graph, graph_of

import sparsec as sc

OWNED = {"sc.rms_norm", "sc.layer_norm", "sc.rope"}
BF16 = ml_dtypes.bfloat16


@pytest.mark.parametrize("op", sorted(OWNED))
@settings(max_examples=12)
@given(data=st.data())
def test_op_matches_reference(op, data):
    check_op_on_random_graph(data, op, OWNED, ("f32", "bf16"), max_ops=3)


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(OWNED))
@settings(max_examples=max(60, settings.default.max_examples))
@given(data=st.data())
def test_op_matches_reference_all_dtypes(op, data):
    check_op_on_random_graph(data, op, OWNED, ("f32", "f64", "f16", "bf16"), max_ops=4, max_size=6)


@pytest.mark.parametrize("xdt,wdt", [("f32", "f32"), ("bf16", "f32"), ("f32", "bf16"), ("f16", "f16"),
                                     ("f64", "f32"), ("f32", "f64"), ("bf16", "bf16")])
def test_rms_norm_mixed_dtypes(xdt, wdt):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 48)).astype(sc.ir.as_dtype(xdt).np)
    w = rng.uniform(0.5, 1.5, 48).astype(sc.ir.as_dtype(wdt).np)
    g = graph_of("sc.rms_norm", [T(x.shape, xdt), T((48,), wdt)], {"eps": 1e-6})
    check_graph(g, [x, w], "sc.rms_norm", OWNED)


@pytest.mark.parametrize("dt", ["f32", "bf16", "f64"])
@pytest.mark.parametrize("nparams", [0, 1, 2])
def test_layer_norm_optional_params(dt, nparams):
    rng = np.random.default_rng(1)
    npdt = sc.ir.as_dtype(dt).np
    x = (rng.standard_normal((7, 40)) * 3 + 2).astype(npdt)
    ps = [rng.uniform(0.5, 1.5, 40).astype(npdt) for _ in range(nparams)]
    g = graph_of("sc.layer_norm", [T(x.shape, dt)] + [T((40,), dt)] * nparams, {"eps": 1e-5})
    check_graph(g, [x] + ps, "sc.layer_norm", OWNED)


def test_norms_large_rows_parallel():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((256, 1024)).astype(np.float32)
    w = rng.uniform(0.5, 1.5, 1024).astype(np.float32)
    check_graph(graph_of("sc.rms_norm", [T(x.shape, "f32"), T((1024,), "f32")]), [x, w], "sc.rms_norm", OWNED)
    check_graph(graph_of("sc.layer_norm", [T(x.shape, "f32"), T((1024,), "f32"), T((1024,), "f32")]), [x, w, w],
                "sc.layer_norm", OWNED)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("rotary_dim", [0, 8])
@pytest.mark.parametrize("pos_batched", [False, True])
def test_rope_layouts(interleaved, rotary_dim, pos_batched):
    rng = np.random.default_rng(3)
    B, H, S, D = 2, 3, 5, 16
    x = rng.standard_normal((B, H, S, D)).astype(np.float32)
    pos = (np.arange(S)[None, :] + np.array([[0], [7]])).astype(np.int64) if pos_batched else \
        np.arange(100, 100 + S, dtype=np.int64)
    g = graph_of("sc.rope", [T(x.shape, "f32"), T(pos.shape, "i64")],
                 {"theta": 10000.0, "rotary_dim": rotary_dim, "interleaved": interleaved})
    check_graph(g, [x, pos], "sc.rope", OWNED)
    xb = x.astype(BF16)
    g = graph_of("sc.rope", [T(x.shape, "bf16"), T(pos.shape, "i64")],
                 {"theta": 500000.0, "rotary_dim": rotary_dim, "interleaved": interleaved})
    check_graph(g, [xb, pos], "sc.rope", OWNED)


def test_rope_big_positions_and_parallel():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 8, 512, 64)).astype(np.float32)
    pos = np.arange(3000, 3512, dtype=np.int32)
    g = graph_of("sc.rope", [T(x.shape, "f32"), T(pos.shape, "i32")], {"theta": 10000.0})
    check_graph(g, [x, pos], "sc.rope", OWNED)
    x3 = rng.standard_normal((4, 16, 32)).astype(np.float64)
    g = graph_of("sc.rope", [T(x3.shape, "f64"), T((4, 16), "i64")], {"interleaved": True})
    check_graph(g, [x3, np.tile(np.arange(16), (4, 1)).astype(np.int64)], "sc.rope", OWNED)
