"""fuse-projections: sibling linears of one input become one linear over stacked weights.
Property tests over random sibling groups (float and quantized weights, biases, consumers), the
compiled result, the functions sharing stacked weights, what is left alone, and where
``sc.compile`` runs the pass."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsec as sc
from sparsec.frontend.tracer import Parameter
from sparsec.passes import PassManager
from sparsec.testing import check_pass, compare_outputs


@st.composite
def sibling_linears(draw):
    """x [tokens, K] read by 1-4 linears (each its own N, all with or all without bias), their
    results combined so every one reaches the output; sometimes a linear of another value."""
    K = draw(st.sampled_from([8, 32, 40, 64]))
    n = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    ws = [Parameter(rng.standard_normal((s, K)).astype(np.float32)) for s in sizes]
    bs = [Parameter(rng.standard_normal(s).astype(np.float32)) for s in sizes] if bias else [None] * n
    other = draw(st.booleans())
    w_other = Parameter(rng.standard_normal((K, sizes[0])).astype(np.float32))

    def f(x):
        ys = [sc.ops.linear(x, w, b) for w, b in zip(ws, bs)]
        outs = [sc.ops.tanh(y) for y in ys]
        if other:  # a linear of another value: never stacked with x's
            outs.append(sc.ops.linear(ys[0], w_other))
        return tuple(outs)
    return sc.trace(f, sc.TensorSpec(("tokens", K), "float32"))


def test_fuse_projections_property_float():
    check_pass("fuse-projections", examples=40, graph_strategy=sibling_linears(), seed=1)


@pytest.mark.parametrize("mode", ["q8_0", "q4_0", "int8", "int4"])
def test_fuse_projections_property_after_quantize(mode):
    """Stacking quantized weights (their block parts, repacked back) is exact: the quantized graph
    with and without the stacking computes the same."""
    strategy = sibling_linears().map(
        lambda g: PassManager.parse(f"quantize{{mode={mode},skip=none}}").run(g))
    check_pass("fuse-projections", examples=15, graph_strategy=strategy, seed=2)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=sibling_linears(), tokens=st.integers(1, 5), mode=st.sampled_from([None, "q8_0", "q4_0"]))
def test_compiled_fused_matches_unfused(g, tokens, mode):
    """Compiled (CPU kernels) with and without the stacked weights. Quantized: bit-identical (the
    activations are quantized per row as before, and each output is the same integer dot product);
    float: within f32 rounding, and both match the interpreter."""
    if mode is not None:
        g = PassManager.parse(f"quantize{{mode={mode},skip=none}}").run(g)
    fused = PassManager.parse("fuse-projections").run(g)
    x = np.random.default_rng(tokens).standard_normal((tokens, g.main.args[0].type.shape[1])).astype(np.float32)

    def run(graph):
        out = sc.compile(graph, pipeline="", progress=False, accuracy_samples=0)(x)
        return out if isinstance(out, tuple) else (out,)
    want, got = run(g), run(fused)
    if mode is not None:
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b)
    else:
        assert compare_outputs(want, got, rtol=1e-5, atol=1e-5) is None
        assert compare_outputs(sc.interpret(g, x), got, rtol=1e-5, atol=1e-5) is None


def _lm():
    return sc.nn.CausalLM(vocab=64, hidden=64, layers=2, heads=4, kv_heads=2, ffn=96, seed=0)


def test_compile_runs_it_last_with_default_and_functions_share_the_stacked_weights():
    lm = _lm()
    cm = sc.compile(lm, sc.TensorSpec((1, "seq"), "int64"), quantize="q8_0", progress=False, accuracy_samples=2)
    assert cm.pipeline.endswith("quantize,fuse-projections"), cm.pipeline
    names = set(cm.graph.weights)
    assert "model.layers.0.self_attn.q_proj+k_proj+v_proj.weight" in names
    assert "model.layers.0.mlp.gate_proj+up_proj.weight" in names
    assert not any(n.endswith(("q_proj.weight", "k_proj.weight", "gate_proj.weight")) and "+" not in n for n in names)
    # main and decode read the same stacked weights (one copy)
    for fn in ("main", "decode"):
        read = {op.attrs["name"] for op in cm.graph.functions[fn].walk() if op.name == "sc.param"}
        assert "model.layers.1.self_attn.q_proj+k_proj+v_proj.weight" in read, fn
    # the quantization report still names the model's own weights, with their output errors
    layers = {r.name: r for r in cm.report["quantization"]["layers"]}
    acc = cm.report["quantization"]["accuracy"]
    assert "model.layers.0.self_attn.k_proj.weight" in layers
    assert "model.layers.0.self_attn.k_proj.weight" in acc.layer_errors
    ids = np.array([[1, 2, 3]], np.int64)
    ref = sc.compile(lm, sc.TensorSpec((1, "seq"), "int64"), quantize="q8_0", progress=False, accuracy_samples=0,
                     pipeline="default")
    assert ref.pipeline.endswith("fuse-projections")
    plain = sc.compile(lm, sc.TensorSpec((1, "seq"), "int64"), progress=False,
                       pipeline="sparse-activation,expert-fusion,classic,fold-constants{fold-params=true},fuse-elementwise")
    assert "fuse-projections" not in plain.pipeline  # a pipeline without default: not added
    assert "model.layers.0.self_attn.q_proj.weight" in plain.graph.weights
    np.testing.assert_allclose(cm(ids), ref(ids), rtol=0, atol=0)
    fp = sc.compile(lm, sc.TensorSpec((1, "seq"), "int64"), progress=False)
    np.testing.assert_allclose(fp(ids), plain(ids), rtol=1e-5, atol=1e-5)
    assert np.array_equal(fp.generate(ids, 4), plain.generate(ids, 4))


def test_weights_of_different_formats_are_not_stacked():
    """A skip glob keeps k_proj in f32: q and v (q8_0) are stacked, k stays a linear of its own."""
    cm = sc.compile(_lm(), sc.TensorSpec((1, "seq"), "int64"), progress=False, accuracy_samples=0,
                    pipeline='default,quantize{mode=q8_0,skip="default,*.k_proj.weight"}')
    names = set(cm.graph.weights)
    assert "model.layers.0.self_attn.q_proj+v_proj.weight" in names
    assert "model.layers.0.self_attn.k_proj.weight" in names
    assert isinstance(cm.graph.weights["model.layers.0.self_attn.k_proj.weight"], np.ndarray)


def test_statistics_and_untouched_graph():
    pm = PassManager.parse("fuse-projections")
    g = sc.trace(lambda x: sc.ops.linear(x, Parameter(np.ones((3, 4), np.float32))), sc.TensorSpec((2, 4), "float32"))
    out = pm.run(g)
    assert str(out) == str(g) and not pm.report[0].changed
    lm = _lm()
    g = sc.trace(lm, sc.TensorSpec((1, "seq"), "int64"))
    pm.run(g)
    stats = pm.report[0].stats
    assert stats["linears fused"] == 10 and stats["fused linears"] == 4  # 2 layers x (q,k,v + gate,up)
