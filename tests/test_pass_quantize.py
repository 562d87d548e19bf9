"""quantize: the pass on an MLP, a MoE (after the MoE passes) and causal LMs (tied and untied
embeddings), skip globs, layouts, statistics and the per-layer table; the reference semantics
of quantized weights (interpreter, verifier, text round trip); storage (.spc artifacts and
.safetensors beside .mlir); `sparsec show` sizes; `sparsec opt` with quantize; errors.

Bounds tested (relative L2 error of the interpreter output against fp32, N(0, 1) inputs, every
weight with K >= 32 inputs): 8-bit modes (int8, q8_0) 0.03, 4-bit modes (q4_0, int4 groups
32/64/128) 0.3; measured at most 0.011 and 0.19 over 600 random MLPs of 32-150 features
(gated/plain, gelu, 1-6 tokens). With fewer inputs per row (K = 8) a 4-bit dot product averages
fewer errors: 0.4 was seen, so the properties draw K >= 32.
"""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsec as sc
from sparsec.cli import main as cli
from sparsec.errors import SparsecError, VerifyError
from sparsec.fileio import read_model_ir, read_weights, write_weights
from sparsec.ir.types import QuantType, TensorType
from sparsec.passes import PASSES, PassFailure, PassManager, PipelineError, parse_pipeline
from sparsec.passes.quantize import DEFAULT_SKIP, Quantize, parse_skip, skip_match
from sparsec.quant import QuantizedTensor, dequantize, layouts, quantize, step_size
from sparsec.quant.report import (accuracy_report, format_layers, layer_errors, quantization_layers,
                                  sample_inputs)
from sparsec.runtime.artifact import ArtifactError, load_artifact, save_artifact
from sparsec.summary import format_summary, quant_nbytes, summarize
from sparsec.testing import check_pass

F32 = "float32"
MODES = ["int8", "q8_0", "q4_0", "int4", "int4,group=64", "int4,group=128"]
FORMAT = {"int8": "i8c", "q8_0": "q8_0", "q4_0": "q4_0", "int4": "int4", "int4,group=64": "int4g64",
          "int4,group=128": "int4g128"}
BOUND = {"int8": 0.03, "q8_0": 0.03, "q4_0": 0.3, "int4": 0.3, "int4,group=64": 0.3, "int4,group=128": 0.3}
MOE_PASSES = "sparse-activation,expert-fusion,fold-constants{fold-params=true}"


def run_pass(g, text):
    pm = PassManager.parse(text, verify_each=True)
    out = pm.run(g)
    return out, pm


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def quant_params(g):
    return {n: t for n, t in g.params().items() if isinstance(t, QuantType)}


def mlp_graph(hidden=64, ffn=96, seed=1, **kw):
    m = sc.nn.MLP(hidden, ffn, seed=seed, **kw)
    return sc.trace(m, sc.TensorSpec(("tokens", hidden), F32))


def moe_graph(hidden=64, ffn=32, shared_ffn=64, seed=3, **kw):
    m = sc.nn.MoE(hidden=hidden, ffn=ffn, num_experts=4, top_k=2, shared_ffn=shared_ffn, seed=seed, **kw)
    g = sc.trace(m, sc.TensorSpec(("tokens", hidden), F32))
    return g, PassManager.parse(MOE_PASSES).run(g)


def lm_graph(tie=True, seed=0):
    lm = sc.nn.CausalLM(vocab=96, hidden=32, layers=2, heads=4, kv_heads=2, ffn=64, seed=seed,
                        tie_word_embeddings=tie)
    return sc.trace(lm, sc.TensorSpec(("batch", "seq"), "int64"))


def x_for(g, tokens=7, seed=0):
    fn = g.main
    return np.random.default_rng(seed).standard_normal((tokens, fn.args[0].type.shape[1])).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the pass on models

@pytest.mark.parametrize("mode", MODES)
def test_every_mode_on_an_mlp(mode):
    g = mlp_graph()
    g2, pm = run_pass(g, f"quantize{{mode={mode}}}")
    fmt = FORMAT[mode]
    q = quant_params(g2)
    assert q == {"gate_proj.weight": QuantType(fmt, (96, 64)), "up_proj.weight": QuantType(fmt, (96, 64)),
                 "down_proj.weight": QuantType(fmt, (64, 96))}
    for n in q:
        qt = g2.weights[n]
        assert isinstance(qt, QuantizedTensor) and qt.fmt == fmt and qt.shape == g.weights[n].shape
        assert isinstance(g.weights[n], np.ndarray)  # the input graph keeps its float weights
        # every element within half a step of its block's scale (q4_0: one step)
        assert qt.layout == layouts.preferred_layout(fmt)
        err = np.abs(np.asarray(qt) - g.weights[n])
        assert np.all(err <= step_size(layouts.to_blocks(qt)) * (1.0 if fmt == "q4_0" else 0.5) * (1 + 1e-5) + 1e-12)
    x = x_for(g)
    (ref,), (out,) = sc.interpret(g, x), sc.interpret(g2, x)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert rel_err(ref, out) < BOUND[mode]
    assert rel_err(ref, out) > 0  # it did quantize
    stats = pm.report[0].stats
    assert stats["weights quantized"] == 3
    assert stats["bytes before"] == 3 * 96 * 64 * 4
    assert stats["bytes after"] == sum(g2.weights[n].nbytes for n in q)
    layers, skipped = quantization_layers(pm.report)
    assert [r.name for r in layers] == ["gate_proj.weight", "up_proj.weight", "down_proj.weight"] and not skipped
    for r in layers:
        w, wq = g.weights[r.name], np.asarray(g2.weights[r.name])
        assert r.rel_error == pytest.approx(rel_err(w, wq), rel=1e-6)
        assert r.bytes_before == w.nbytes and r.bytes_after == g2.weights[r.name].nbytes and r.format == fmt


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_on_a_moe_after_the_moe_passes(mode):
    g0, g = moe_graph()
    g2, pm = run_pass(g, f"quantize{{mode={mode}}}")
    fmt = FORMAT[mode]
    q = quant_params(g2)
    stacked = {n: t for n, t in q.items() if len(t.shape) == 3}
    assert len(stacked) == 3 and all(t.format == fmt for t in stacked.values())  # gate/up/down stacks [E, N, K]
    ops = {op.name: op for op in g2.main.ops}
    assert isinstance(ops["sc.moe_gated_grouped_matmul"].operands[1].type, QuantType)
    assert isinstance(ops["sc.moe_gated_grouped_matmul"].operands[2].type, QuantType)
    assert isinstance(ops["sc.grouped_matmul"].operands[1].type, QuantType)
    assert isinstance(g2.params()["gate.weight"], TensorType)  # the router stays fp32
    skipped = dict(pm.report[0].stats.skipped)
    assert skipped["gate.weight"] == "skip gate.weight"
    x = x_for(g)
    (ref,), (out,) = sc.interpret(g0, x), sc.interpret(g2, x)
    assert rel_err(ref, out) < BOUND[mode]


def test_a_moe_whose_stacks_are_not_folded_is_reported():
    m = sc.nn.MoE(hidden=32, ffn=16, num_experts=4, top_k=2, seed=0)
    g = PassManager.parse("sparse-activation,expert-fusion").run(sc.trace(m, sc.TensorSpec(("tokens", 32), F32)))
    g2, pm = run_pass(g, "quantize")
    st_ = pm.report[0].stats
    assert st_["weights skipped (weight computed by other ops; run fold-constants{fold-params=true} first)"] == 3  # gate, up (fused op) and down
    assert st_["weights quantized"] == 0 and str(g2) == str(g)


def test_tied_embedding_keeps_fp32_and_lm_head_is_skipped_by_default():
    g = lm_graph(tie=True)
    g2, pm = run_pass(g, "quantize{mode=q8_0}")
    p = g2.params()
    assert isinstance(p["model.embed_tokens.weight"], TensorType)
    assert "model.embed_tokens.weight.q8_0" not in p
    assert dict(pm.report[0].stats.skipped)["model.embed_tokens.weight"] == "skip lm_head.*"
    assert isinstance(p["model.layers.0.self_attn.q_proj.weight"], QuantType)
    assert isinstance(p["model.layers.1.mlp.down_proj.weight"], QuantType)
    assert pm.report[0].stats["weights quantized"] == 14  # 2 layers x (4 attention + 3 mlp)
    ids = np.random.default_rng(0).integers(0, 96, (2, 9))
    (ref,), (out,) = sc.interpret(g, ids), sc.interpret(g2, ids)
    assert rel_err(ref, out) < BOUND["q8_0"]
    assert np.mean(ref.argmax(-1) == out.argmax(-1)) >= 0.9


def test_tied_embedding_with_skip_none_gets_a_quantized_copy_for_the_matmul():
    g = lm_graph(tie=True)
    g2, pm = run_pass(g, "quantize{mode=q4_0,skip=none}")
    p = g2.params()
    assert isinstance(p["model.embed_tokens.weight"], TensorType)
    assert p["model.embed_tokens.weight.q4_0"] == QuantType("q4_0", (96, 32))
    assert isinstance(g2.weights["model.embed_tokens.weight"], np.ndarray)
    emb = next(op for op in g2.main.ops if op.name == "sc.embedding")
    assert emb.operands[1].owner.attrs["name"] == "model.embed_tokens.weight"
    last = [op for op in g2.main.ops if op.name == "sc.linear"][-1]
    assert last.operands[1].owner.attrs["name"] == "model.embed_tokens.weight.q4_0"
    assert pm.report[0].stats["float weights kept for other uses"] == 1
    ids = np.random.default_rng(1).integers(0, 96, (1, 12))
    (ref,), (out,) = sc.interpret(g, ids), sc.interpret(g2, ids)
    assert rel_err(ref, out) < BOUND["q4_0"]
    assert str(sc.parse(str(g2))) == str(g2)


def test_untied_lm_head_and_both_functions_of_a_compiled_lm():
    lm = sc.nn.CausalLM(vocab=64, hidden=32, layers=1, heads=2, ffn=48, seed=2)
    g = sc.trace(lm, sc.TensorSpec(("batch", "seq"), "int64"))
    from sparsec.compiler import add_decode_function
    add_decode_function(g, lm)
    g2, pm = run_pass(g, "quantize{mode=int8}")
    assert isinstance(g2.params()["lm_head.weight"], TensorType)
    # main and decode read the same names: both functions get the quantized types
    for fn in g2.functions.values():
        ts = {op.attrs["name"]: op.result.type for op in fn.ops if op.name == "sc.param"}
        assert ts["model.layers.0.mlp.up_proj.weight"] == QuantType("i8c", (48, 32))
    assert pm.report[0].stats["weights quantized"] == 7


# ---------------------------------------------------------------------------------------------
# options

def test_skip_globs():
    assert parse_skip("default") == DEFAULT_SKIP
    assert parse_skip("none") == () and parse_skip("") == ()
    assert parse_skip("default, *.down_proj.*") == DEFAULT_SKIP + ("*.down_proj.*",)
    assert skip_match("model.layers.0.mlp.gate.weight", DEFAULT_SKIP) == "gate.weight"
    assert skip_match("model.layers.0.mlp.gate_proj.weight", DEFAULT_SKIP) is None
    assert skip_match("gate.weight", DEFAULT_SKIP) == "gate.weight"
    assert skip_match("lm_head.weight", DEFAULT_SKIP) == "lm_head.*"
    assert skip_match("model.layers.0.mlp.router.weight", DEFAULT_SKIP) == "router.*"
    assert skip_match("x.mlp.shared_expert_gate.weight", DEFAULT_SKIP) == "shared_expert_gate.weight"
    assert skip_match("xgate.weight", DEFAULT_SKIP) is None
    g = mlp_graph()
    for text, kept in [("down_proj.weight", {"down_proj.weight"}), ("*_proj.weight", None),
                       ("'default,up_*'", {"up_proj.weight"}), ("none", set()), ('""', set()),
                       ('"gate_proj.weight,down_proj.weight"', {"gate_proj.weight", "down_proj.weight"})]:
        g2, pm = run_pass(g, f"quantize{{skip={text}}}")
        fp = {n for n, t in g2.params().items() if isinstance(t, TensorType)}
        assert fp == (kept if kept is not None else {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}), text
        assert {n for n, _ in pm.report[0].stats.skipped} == fp
    _, g = moe_graph()
    g2, _ = run_pass(g, "quantize{skip=none}")
    assert isinstance(g2.params()["gate.weight"], QuantType)  # the router too


def test_min_elements():
    g = mlp_graph(hidden=8, ffn=16)  # 128-element weights
    g2, pm = run_pass(g, "quantize{min-elements=129}")
    assert not quant_params(g2)
    assert pm.report[0].stats["weights skipped (fewer than 129 elements)"] == 3
    g2, _ = run_pass(g, "quantize{min-elements=128}")
    assert len(quant_params(g2)) == 3


def test_pipeline_text_round_trips_and_the_pass_is_opt_in():
    assert "quantize" in PASSES and "quantize" not in sc.passes.PIPELINES["default"]
    for text in ["quantize", "quantize{mode=q4_0}", "quantize{mode=int4,group=128}",
                 'quantize{mode=int8,skip="default,*.down_proj.*",min-elements=4096}', "quantize{layout=blocks}",
                 "quantize{skip=none}"]:
        (p,) = parse_pipeline(text)
        assert str(p) == text and parse_pipeline(str(p)) == [p]
    assert Quantize(mode="int4", group=64).format == "int4g64"
    assert Quantize(mode="int8").format == "i8c"


@pytest.mark.parametrize("text, words", [
    ("quantize{mode=q5}", "'q5' is not one of int8, q8_0, q4_0, int4"),
    ("quantize{mode=int4,group=16}", "'16' is not one of 32, 64, 128"),
    ("quantize{mode=q8_0,group=64}", "group=64 applies to mode int4 only"),
    ("quantize{mode=int8,group=128}", "group=128 applies to mode int4 only"),
    ("quantize{layout=zigzag}", "no layout 'zigzag' for q8_0"),
    ("quantize{min-elements=-1}", "min-elements must be >= 0"),
    ("quantize{bits=4}", "has no option 'bits'"),
])
def test_bad_options_are_pipeline_errors(text, words):
    with pytest.raises(PipelineError, match=words.replace("(", r"\(").replace("*", r"\*")):
        parse_pipeline(text)


def test_non_finite_weight_is_refused_naming_it():
    g = mlp_graph()
    g.weights["up_proj.weight"] = g.weights["up_proj.weight"].copy()
    g.weights["up_proj.weight"][5, 7] = np.inf
    with pytest.raises(PassFailure, match=r"weight 'up_proj.weight' has a non-finite value inf at \[5, 7\]"):
        run_pass(g, "quantize")
    g.weights["up_proj.weight"][5, 7] = 1e9  # an f16 scale cannot hold it in q8_0 ...
    with pytest.raises(PassFailure, match=r"weight 'up_proj.weight'.*overflows float16"):
        run_pass(g, "quantize")
    g2, _ = run_pass(g, "quantize{mode=int8}")  # ... int8's f32 scale can
    assert isinstance(g2.params()["up_proj.weight"], QuantType)


def test_missing_weight_is_an_error():
    g = mlp_graph()
    del g.weights["down_proj.weight"]
    with pytest.raises(PassFailure, match="'down_proj.weight' is not in the graph's weight store"):
        run_pass(g, "quantize")


def test_a_graph_without_weights_is_untouched():
    g = sc.trace(lambda x, w: sc.ops.linear(x, w) * 2.0, sc.TensorSpec(("tokens", 8), F32), sc.TensorSpec((4, 8), F32))
    g2, pm = run_pass(g, "quantize{skip=none}")
    assert str(g2) == str(g) and not pm.report[0].changed
    assert pm.report[0].stats["weights quantized"] == 0
    g = sc.trace(sc.nn.RMSNorm(8), sc.TensorSpec(("tokens", 8), F32))
    g2, pm = run_pass(g, "quantize{skip=none}")
    assert str(g2) == str(g) and g2.weights.keys() == g.weights.keys()


def test_a_second_quantize_pass_leaves_quantized_weights_alone():
    g2, _ = run_pass(mlp_graph(), "quantize{mode=q4_0},quantize{mode=q8_0}")
    assert {t.format for t in quant_params(g2).values()} == {"q4_0"}


def test_f16_model_quantizes_and_keeps_its_dtype():
    rng = np.random.default_rng(0)
    w16 = sc.Parameter(rng.standard_normal((64, 32)).astype(np.float16))
    g = sc.trace(lambda x: sc.ops.linear(x, w16), sc.TensorSpec(("tokens", 32), "float16"))
    g2, _ = run_pass(g, "quantize{skip=none}")
    assert list(quant_params(g2).values()) == [QuantType("q8_0", (64, 32))]
    x = rng.standard_normal((3, 32)).astype(np.float16)
    (ref,), (out,) = sc.interpret(g, x), sc.interpret(g2, x)
    assert out.dtype == np.float16 and rel_err(ref, out) < BOUND["q8_0"]


# ---------------------------------------------------------------------------------------------
# layouts: the pass repacks into the preferred layout; artifacts keep the repacked form

@pytest.fixture
def swapped_layout():
    """A test layout for q8_0 (the row and block axes of d/qs swapped), preferred while active."""
    def pack(parts, shape):
        return {"d_t": np.ascontiguousarray(np.swapaxes(parts["d"], -1, -2)),
                "qs_t": np.ascontiguousarray(np.swapaxes(parts["qs"], -2, -3))}

    def unpack(parts, shape):
        return {"d": np.ascontiguousarray(np.swapaxes(parts["d_t"], -1, -2)),
                "qs": np.ascontiguousarray(np.swapaxes(parts["qs_t"], -2, -3))}
    key = ("q8_0", "test-swapped")
    old = layouts._PREFERRED.get("q8_0")
    layouts.register_layout("q8_0", "test-swapped", pack, unpack)
    layouts.set_preferred_layout("q8_0", "test-swapped")
    yield "test-swapped"
    layouts._LAYOUTS.pop(key, None)
    if old is None:
        layouts._PREFERRED.pop("q8_0", None)
    else:
        layouts._PREFERRED["q8_0"] = old


def test_layout_auto_repacks_and_storage_keeps_the_repacked_form(swapped_layout, tmp_path):
    g = mlp_graph()
    g2, pm = run_pass(g, "quantize")
    qt = g2.weights["down_proj.weight"]
    assert qt.layout == swapped_layout and set(qt.parts) == {"d_t", "qs_t"}
    assert pm.report[0].stats.layers[0].layout == swapped_layout
    g3, _ = run_pass(g, "quantize{layout=blocks}")
    assert g3.weights["down_proj.weight"].layout == "blocks"
    np.testing.assert_array_equal(np.asarray(qt), np.asarray(g3.weights["down_proj.weight"]))
    x = x_for(g)
    np.testing.assert_array_equal(sc.interpret(g2, x)[0], sc.interpret(g3, x)[0])
    # the artifact and the .safetensors beside an .mlir store the repacked parts as they are
    save_artifact(str(tmp_path / "m.spc"), str(g2), dict(g2.weights), {"target": "cpu"})
    _, w, man = load_artifact(str(tmp_path / "m.spc"))
    assert man["quantized"]["down_proj.weight"] == f"q8_0;64x96;{swapped_layout}"
    assert w["down_proj.weight"].layout == swapped_layout
    np.testing.assert_array_equal(w["down_proj.weight"].parts["qs_t"], qt.parts["qs_t"])
    write_weights(str(tmp_path / "m.safetensors"), g2.weights)
    assert read_weights(str(tmp_path / "m.safetensors"))["down_proj.weight"].layout == swapped_layout


def test_layout_unknown_to_the_reader_is_a_clear_error(swapped_layout, tmp_path):
    g2, _ = run_pass(mlp_graph(), "quantize")
    save_artifact(str(tmp_path / "m.spc"), str(g2), dict(g2.weights), {})
    layouts._LAYOUTS.pop(("q8_0", swapped_layout))
    with pytest.raises(ArtifactError, match=f"quantized weight '[a-z_]+.weight' is broken: layout '{swapped_layout}' of format "
                                            f"q8_0 is unknown to this build"):
        load_artifact(str(tmp_path / "m.spc"))


# ---------------------------------------------------------------------------------------------
# reference semantics: interpreter, verifier, text

@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "i8c", "int4", "int4g64", "int4g128"])
def test_ops_compute_with_the_dequantized_weight(fmt):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 40)).astype(np.float32)
    w = rng.standard_normal((3, 6, 40)).astype(np.float32)
    qt = quantize(w, fmt)
    wd = dequantize(qt)
    offsets = np.array([0, 2, 2, 5])
    from sparsec.ir import get_opdef
    lin = get_opdef("sc.linear").reference
    np.testing.assert_array_equal(lin(x, quantize(w[0], fmt), None), lin(x, dequantize(quantize(w[0], fmt)), None))
    gm = get_opdef("sc.grouped_matmul").reference
    got = gm(x, qt, offsets)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, gm(x, wd, offsets))
    gg = get_opdef("sc.moe_gated_grouped_matmul").reference
    np.testing.assert_array_equal(gg(x, qt, qt, offsets, activation="silu"), gg(x, wd, wd, offsets, activation="silu"))
    emb = get_opdef("sc.embedding").reference
    table = quantize(w[1], fmt)
    ids = np.array([[0, 5], [3, 3]])
    got = emb(ids, table)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, dequantize(table)[ids])


def test_interpreter_runs_quantized_params_and_checks_them():
    g2, _ = run_pass(mlp_graph(), "quantize{mode=q4_0}")
    x = x_for(g2)
    g3 = sc.parse(str(g2))
    g3.weights = dict(g2.weights)
    (a,) = sc.interpret(g3, x)
    h = np.asarray(g2.weights["gate_proj.weight"])
    u = np.asarray(g2.weights["up_proj.weight"])
    d = np.asarray(g2.weights["down_proj.weight"])
    gate = x @ h.T
    np.testing.assert_allclose(a, ((gate / (1 + np.exp(-gate))) * (x @ u.T)) @ d.T, rtol=1e-4, atol=1e-5)


def test_interpreter_refuses_a_store_that_does_not_match_the_types():
    g2, _ = run_pass(mlp_graph(), "quantize{mode=q4_0}")
    x = x_for(g2)
    with pytest.raises(sc.InterpretError, match=r"declared !sc.q4_0<96x64> but the weight store holds an array"):
        sc.interpret(g2, x, weights={"gate_proj.weight": np.asarray(g2.weights["gate_proj.weight"])})
    with pytest.raises(sc.InterpretError, match=r"declared !sc.q4_0<96x64> but the weight store holds a q8_0"):
        sc.interpret(g2, x, weights={"gate_proj.weight": quantize(np.ones((96, 64), np.float32), "q8_0")})
    g = mlp_graph()
    with pytest.raises(sc.InterpretError, match=r"declared tensor<96x64xf32> but the weight store holds a q8_0"):
        sc.interpret(g, x, weights={"gate_proj.weight": quantize(np.ones((96, 64), np.float32), "q8_0")})


def test_verifier_checks_quantized_weights_against_the_types():
    g2, _ = run_pass(mlp_graph(), "quantize{mode=int4}")
    g2.verify()
    bad = dict(g2.weights)
    bad["up_proj.weight"] = np.asarray(g2.weights["up_proj.weight"])
    g2.weights = bad
    with pytest.raises(VerifyError, match=r"param 'up_proj.weight': the IR declares !sc.int4<96x64> but the weight "
                                          r"store holds an unquantized float32 array"):
        g2.verify()
    bad["up_proj.weight"] = quantize(np.ones((96, 32), np.float32), "int4")
    with pytest.raises(VerifyError, match=r"holds a int4 weight of shape \(96, 32\)"):
        g2.verify()
    g = mlp_graph()
    g.weights["up_proj.weight"] = quantize(g.weights["up_proj.weight"], "q8_0")
    with pytest.raises(VerifyError, match=r"declares tensor<96x64xf32> but the weight store holds a q8_0"):
        g.verify()


def test_quantized_graphs_print_parse_and_verify():
    for g in (moe_graph()[1], lm_graph()):
        for mode in ("int8", "q4_0", "int4,group=128"):
            g2, _ = run_pass(g, f"quantize{{mode={mode},skip=none}}")
            text = str(g2)
            assert f"!sc.{FORMAT[mode]}<" in text
            g3 = sc.parse(text)
            assert str(g3) == text
            g3.weights = g2.weights
            g3.verify()


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(hidden=st.integers(32, 150), ffn=st.integers(32, 150), gated=st.booleans(),
       mode=st.sampled_from(MODES), seed=st.integers(0, 2**16), tokens=st.integers(1, 6))
def test_property_mlp_output_error_is_bounded(hidden, ffn, gated, mode, seed, tokens):
    g = mlp_graph(hidden, ffn, seed=seed, gated=gated, activation="gelu")
    g2, _ = run_pass(g, f"quantize{{mode={mode}}}")
    assert len(quant_params(g2)) == (3 if gated else 2)
    x = np.random.default_rng(seed).standard_normal((tokens, hidden)).astype(np.float32)
    (ref,), (out,) = sc.interpret(g, x), sc.interpret(g2, x)
    assert rel_err(ref, out) < BOUND[mode]


@settings(max_examples=10, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(hidden=st.integers(32, 80), ffn=st.integers(32, 80), shared=st.booleans(), mode=st.sampled_from(MODES),
       seed=st.integers(0, 2**16))
def test_property_moe_output_error_is_bounded(hidden, ffn, shared, mode, seed):
    g0, g = moe_graph(hidden, ffn, shared_ffn=2 * ffn if shared else 0, seed=seed)
    g2, _ = run_pass(g, f"quantize{{mode={mode}}}")
    x = np.random.default_rng(seed).standard_normal((6, hidden)).astype(np.float32)
    (ref,), (out,) = sc.interpret(g0, x), sc.interpret(g2, x)
    assert rel_err(ref, out) < BOUND[mode]


@pytest.mark.parametrize("mode, tol", [("q8_0", 0.03), ("int8", 0.03), ("q4_0", 0.2), ("int4", 0.2)])
def test_check_pass_on_random_graphs(mode, tol):
    # random graphs around the weight ops (helpers such as tanh/abs/add also appear); outputs agree
    # with the fp32 graph within tol * max|output| + tol * |value|
    check_pass(f"quantize{{mode={mode},skip=none}}", examples=40, seed=1, rtol=tol, atol=tol,
               ops=["sc.linear", "sc.grouped_matmul", "sc.moe_gated_grouped_matmul", "sc.add", "sc.relu"])


# ---------------------------------------------------------------------------------------------
# accuracy report (interpreter path)

def test_accuracy_report_on_graphs():
    g = lm_graph(tie=False)
    g2, pm = run_pass(g, "quantize{mode=q4_0}")
    inputs = sample_inputs(g, samples=2, tokens=8)
    assert len(inputs) == 2 and inputs[0][0].shape == (1, 8) and inputs[0][0].dtype == np.int64
    assert inputs[0][0].max() < 96
    rep = accuracy_report(g, g2, inputs)
    (o,) = rep.outputs
    assert o.top1 is not None and 0.5 <= o.top1 <= 1.0
    assert 0 < o.rel_l2 < BOUND["q4_0"] and 0 < o.mean_abs <= o.max_abs
    refs = [sc.interpret(g, *b)[0] for b in inputs]
    outs = [sc.interpret(g2, *b)[0] for b in inputs]
    assert o.max_abs == pytest.approx(max(float(np.abs(r - q).max()) for r, q in zip(refs, outs)))
    assert o.top1 == pytest.approx(np.mean(np.concatenate([(r.argmax(-1) == q.argmax(-1)).ravel()
                                                           for r, q in zip(refs, outs)])))
    layers, skipped = quantization_layers(pm.report)
    assert set(rep.layer_errors) == {r.name for r in layers}
    assert all(0 < e < 0.3 for e in rep.layer_errors.values())
    text = format_layers(layers, skipped, rep.layer_errors) + "\n" + rep.format()
    assert "model.layers.0.mlp.down_proj.weight" in text and "kept in full precision: lm_head.weight" in text
    assert "top-1 agreement" in text and "relative error" in text and "output err" in text
    # identical models: zero error, full agreement
    same = accuracy_report(g, g, inputs)
    assert same.outputs[0].max_abs == 0 and same.outputs[0].top1 == 1.0 and same.layer_errors == {}


def test_layer_errors_measure_each_layer_on_its_own_inputs():
    g = mlp_graph()
    g2, _ = run_pass(g, "quantize{mode=int8}")
    x = x_for(g)
    errs = layer_errors(g2, g.weights, [(x,)])
    h = x @ np.asarray(g.weights["gate_proj.weight"]).T
    hq = x @ np.asarray(g2.weights["gate_proj.weight"]).T
    assert errs["gate_proj.weight"] == pytest.approx(rel_err(h, hq), rel=1e-4)
    assert set(errs) == {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}


def test_sample_inputs_refuse_inputs_it_cannot_make():
    g = sc.trace(lambda x, i: sc.ops.take(x, i, axis=0), sc.TensorSpec((4, 3), F32), sc.TensorSpec((2,), "int64"))
    with pytest.raises(SparsecError, match="input 'i'"):
        sample_inputs(g)


# ---------------------------------------------------------------------------------------------
# storage

def test_artifact_round_trip_of_every_format(tmp_path):
    rng = np.random.default_rng(0)
    w = {"plain": rng.standard_normal((8, 40)).astype(np.float32)}
    for fmt in ["q8_0", "q4_0", "i8c", "int4", "int4g64", "int4g128"]:
        w[f"m.{fmt}.weight"] = quantize(rng.standard_normal((3, 8, 70)).astype(np.float32), fmt)
    path = str(tmp_path / "x.spc")
    save_artifact(path, "ir", w, {"target": "cpu"})
    ir, w2, man = load_artifact(path)
    assert set(w2) == set(w) and man["quantized"]["m.q4_0.weight"] == "q4_0;3x8x70;blocks"
    for k, v in w.items():
        if isinstance(v, QuantizedTensor):
            assert isinstance(w2[k], QuantizedTensor) and (w2[k].fmt, w2[k].shape) == (v.fmt, v.shape)
            for p in v.parts:
                np.testing.assert_array_equal(w2[k].parts[p], v.parts[p])
                assert w2[k].parts[p].dtype == v.parts[p].dtype
        else:
            np.testing.assert_array_equal(w2[k], v)
    write_weights(str(tmp_path / "x.safetensors"), w)
    w3 = read_weights(str(tmp_path / "x.safetensors"))
    for k, v in w.items():
        np.testing.assert_array_equal(np.asarray(w3[k]), np.asarray(v))


def test_broken_quantized_parts_are_artifact_errors_naming_the_tensor(tmp_path):
    q = quantize(np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32), "q8_0")
    cases = [
        (QuantizedTensor("q8_0", q.shape, {"d": q.parts["d"], "qs": q.parts["qs"][:, :1]}),
         r"quantized weight 'w' is broken: q8_0 part 'qs': expected int8\[8, 2, 32\], got int8\[8, 1, 32\]"),
        (QuantizedTensor("q8_0", q.shape, {"d": q.parts["d"].astype(np.float32), "qs": q.parts["qs"]}),
         r"'w' is broken: q8_0 part 'd': expected float16"),
        (QuantizedTensor("q8_0", q.shape, {"qs": q.parts["qs"]}), r"'w' is broken: q8_0 weight needs parts \['d', 'qs'\]"),
        (QuantizedTensor("q8_0", (8, 65), dict(q.parts)), r"'w' is broken: q8_0 part 'd': expected float16\[8, 3\]"),
    ]
    for i, (bad, words) in enumerate(cases):
        path = str(tmp_path / f"b{i}.spc")
        save_artifact(path, "ir", {"w": bad}, {})
        with pytest.raises(ArtifactError, match=words):
            load_artifact(path)
    # parts without metadata, metadata without parts, bad metadata: written by hand
    from safetensors.numpy import save_file
    from sparsec.runtime import artifact as A

    def write(path, tensors, quant):
        man = json.dumps({"raw_dtypes": {}, "quantized": quant}, sort_keys=True)
        meta = {"format": A.FORMAT, "format_version": A.FORMAT_VERSION, "ir": "ir", "manifest": man,
                "checksum": A._checksum("ir", man, tensors)}
        save_file(tensors, path, metadata=meta)
    for i, (tensors, quant, words) in enumerate([
        ({"w::d": q.parts["d"], "w::qs": q.parts["qs"]}, {}, r"tensors w::\* are parts of a quantized weight"),
        ({"v": np.zeros(3, np.float32)}, {"w": "q8_0;8x64;blocks"}, r"quantized weight 'w' \(q8_0;8x64;blocks\) has no"),
        ({"w::d": q.parts["d"], "w::qs": q.parts["qs"]}, {"w": "q8_0;8by64"}, "'w' is broken: malformed"),
        ({"w::d": q.parts["d"], "w::qs": q.parts["qs"]}, {"w": "q9_0;8x64;blocks"}, "unknown quantized format 'q9_0'"),
    ]):
        path = str(tmp_path / f"h{i}.spc")
        write(path, tensors, quant)
        with pytest.raises(ArtifactError, match=words):
            load_artifact(path)
    with pytest.raises(SparsecError, match="must not contain '::'"):
        save_artifact(str(tmp_path / "n.spc"), "ir", {"a::b": np.zeros(2, np.float32)}, {})


def test_load_refuses_weights_that_do_not_match_the_ir(tmp_path):
    g2, _ = run_pass(mlp_graph(), "quantize")
    w = dict(g2.weights)
    w["up_proj.weight"] = quantize(np.asarray(w["up_proj.weight"]), "q4_0")
    path = str(tmp_path / "m.spc")
    save_artifact(path, str(g2), w, {"target": "cpu"})
    with pytest.raises(ArtifactError, match=r"weights do not match the IR: param 'up_proj.weight': the IR declares "
                                            r"!sc.q8_0<96x64> but the weight store holds a q4_0 weight"):
        sc.load(path)


# ---------------------------------------------------------------------------------------------
# summary / show

@pytest.mark.parametrize("fmt, bits", [("q8_0", 8.5), ("q4_0", 4.5), ("int4", 5.0), ("int4g64", 4.5),
                                       ("int4g128", 4.25), ("i8c", 8 + 32 / 256)])
def test_summary_bytes_per_format(fmt, bits):
    shape = (2, 16, 256)
    assert quant_nbytes(fmt, shape) * 8 / np.prod(shape) == pytest.approx(bits)
    rng = np.random.default_rng(0)
    for s in [shape, (5, 70), (1, 1), (3, 4, 129)]:
        assert quant_nbytes(fmt, s) == quantize(rng.standard_normal(s).astype(np.float32), fmt).nbytes


def test_show_reports_quantization():
    g2, _ = run_pass(mlp_graph(), "quantize{mode=q4_0}")
    s = summarize(g2)
    assert s["quantized"] == {"q4_0": 3}
    assert s["param_bytes"] == sum(v.nbytes for v in g2.weights.values())
    text = format_summary(s)
    assert "quantization: q4_0 x3: 18,432 weights in 10.1 KiB (4.50 bits per weight; as f32: 72.0 KiB)" in text
    g3 = sc.parse(str(g2))  # without the weights: sizes from the formats
    assert summarize(g3)["param_bytes"] == s["param_bytes"]
    assert "quantization: none" in format_summary(summarize(mlp_graph()))


# ---------------------------------------------------------------------------------------------
# command line

def test_opt_writes_quantized_ir_and_weights(tmp_path):
    g = mlp_graph()
    src = tmp_path / "m.mlir"
    src.write_text(str(g))
    write_weights(str(tmp_path / "m.safetensors"), g.weights)
    out = tmp_path / "q.mlir"
    r = CliRunner().invoke(cli, ["opt", str(src), "-p", "quantize{mode=int4,group=64}", "-o", str(out), "--statistics"])
    assert r.exit_code == 0, r.output
    assert "quantize: 3 weights quantized" in r.output and "quantized layers:" in r.output
    assert "gate_proj.weight" in r.output and "int4g64" in r.output
    assert "!sc.int4g64<96x64>" in out.read_text()
    g2 = read_model_ir(str(out))
    assert all(isinstance(g2.weights[n], QuantizedTensor) for n in quant_params(g2))
    g2.verify()
    x = x_for(g)
    (ref,), (q,) = sc.interpret(g, x), sc.interpret(g2, x)
    assert rel_err(ref, q) < BOUND["int4"]
    # a second opt over the quantized IR reads and writes the quantized weights back unchanged
    out2 = tmp_path / "q2.mlir"
    assert CliRunner().invoke(cli, ["opt", str(out), "-p", "cse", "-o", str(out2)]).exit_code == 0
    assert out2.read_text() == out.read_text()
    np.testing.assert_array_equal(sc.interpret(read_model_ir(str(out2)), x)[0], q)
    r = CliRunner().invoke(cli, ["show", str(out)])
    assert r.exit_code == 0 and "quantization: int4g64 x3" in r.output


def test_opt_errors_are_one_line(tmp_path):
    g = mlp_graph()
    g.weights["gate_proj.weight"] = g.weights["gate_proj.weight"].copy()
    g.weights["gate_proj.weight"][0, 0] = np.nan
    (tmp_path / "m.mlir").write_text(str(g))
    write_weights(str(tmp_path / "m.safetensors"), g.weights)
    for pipe, words in [("quantize", "weight 'gate_proj.weight' has a non-finite value nan at [0, 0]"),
                        ("quantize{mode=q3}", "'q3' is not one of"),
                        ("quantize{mode=q8_0,group=128}", "group=128 applies to mode int4 only")]:
        r = CliRunner().invoke(cli, ["opt", str(tmp_path / "m.mlir"), "-p", pipe, "-o", str(tmp_path / "o.mlir")])
        assert r.exit_code == 1 and words in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "o.mlir").exists()
    r = CliRunner().invoke(cli, ["compile", str(tmp_path / "m.mlir"), "-o", str(tmp_path / "m.spc"), "--quantize", "q4_0"])
    assert r.exit_code == 1 and "weight 'gate_proj.weight' has a non-finite value nan" in r.output, r.output
    assert "Traceback" not in r.output and not (tmp_path / "m.spc").exists()


def test_compile_option_errors():
    g = mlp_graph()
    with pytest.raises(SparsecError, match="unknown quantize mode 'q3'"):
        sc.compile(g, quantize="q3")
    with pytest.raises(SparsecError, match=r"quantize='q8_0' and a quantize pass in the pipeline \('quantize"
                                           r"\{mode=q4_0\}'\): give only one"):
        sc.compile(g, quantize="q8_0", pipeline="default,quantize{mode=q4_0}")
