"""expert-fusion: the gate and up grouped matmuls become one gated kernel, and a shared expert
whose intermediate size is a multiple of the routed experts' becomes more routed experts every
token goes to. Every router family, the interpreter and the compiled result against the dense
original, near misses, statistics, random graphs (check_pass)."""
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsec as sc
from sparsec.cli import main
from sparsec.fileio import write_weights
from sparsec.passes import PIPELINES, PassManager
from sparsec.testing import check_pass, compare_outputs

from test_pass_sparse_activation import H, MOE_OPS, names, sparsify, tokens

F = 12
MOE_PASSES = "sparse-activation,expert-fusion"


def families(E, shared_ffn):
    """sc.nn.MoE router families, each with a shared expert of ``shared_ffn`` (0: none)."""
    groups = 4 if E % 4 == 0 and E >= 8 else 2 if E % 2 == 0 and E >= 4 else 1
    shared = dict(shared_ffn=shared_ffn)
    return {
        "mixtral": dict(router="softmax", norm_topk_prob=True, naming="mixtral"),
        "qwen2_moe": dict(router="softmax", norm_topk_prob=False, shared_expert_gate=shared_ffn > 0, **shared),
        "qwen3_moe": dict(router="softmax", norm_topk_prob=True),
        "olmoe": dict(router="softmax", norm_topk_prob=False),
        "deepseek_v3": dict(router="sigmoid", n_group=groups, topk_group=max(1, groups // 2), score_bias=True,
                            routed_scaling_factor=2.5, naming="deepseek", **shared),
        "sigmoid_gelu": dict(router="sigmoid", norm_topk_prob=False, activation="gelu", **shared),
    }


FAMILY_NAMES = sorted(families(8, 0))


def dense_moe(E, k, family, shared_ffn=0, hidden=H, ffn=F, seed=0, zero_router=False):
    kw = families(E, shared_ffn)[family]
    if kw.get("n_group", 1) > 1 and kw["topk_group"] * (E // kw["n_group"]) < k:
        kw["topk_group"] = kw["n_group"]
    moe = sc.nn.MoE(hidden=hidden, ffn=ffn, num_experts=E, top_k=k, seed=seed, **kw)
    if zero_router:   # every router score ties
        moe.gate.weight.data = np.zeros_like(moe.gate.weight.data)
    return moe, sc.trace(moe, sc.TensorSpec(("tokens", hidden), "float32"))


def assert_matches(g_ref, g2, inputs, atol=1e-4):
    for args in inputs:
        msg = compare_outputs(sc.interpret(g_ref, *args), sc.interpret(g2, *args), rtol=0, atol=atol)
        assert msg is None, msg


def assert_compiled(g_ref, inputs, pipeline="default"):
    cm = sc.compile(g_ref, pipeline=pipeline, progress=False)
    for args in inputs:
        got = cm(*args)
        msg = compare_outputs(sc.interpret(g_ref, *args), got if isinstance(got, tuple) else (got,),
                              rtol=0, atol=1e-4)
        assert msg is None, msg
    return cm


def expected_shared(kw, shared_ffn, ffn=F):
    return shared_ffn > 0 and shared_ffn % ffn == 0 and "shared_ffn" in kw


# ---------------------------------------------------------------------------------------------
# every family, with and without a foldable shared expert

@pytest.mark.parametrize("shared", [0, 2 * F, 20])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_families(family, shared):
    E, k = 8, 2
    _, g = dense_moe(E, k, family, shared)
    g2, stats = sparsify(g, MOE_PASSES)
    n = names(g2)
    folded = expected_shared(families(E, shared)[family], shared)
    assert n.count("sc.moe_gated_grouped_matmul") == 1 and n.count("sc.grouped_matmul") == 1, n
    assert stats["gate/up matmuls fused"] == 1
    assert stats.get("shared experts folded", 0) == int(folded)
    assert stats["expert matmuls fused"] == 2 * E + 3 * folded
    dispatch = [op for op in g2.main.ops if op.name == "sc.moe_dispatch"][0]
    assert dispatch.attrs["num_experts"] == E + (shared // F if folded else 0)
    if folded:   # the shared expert's dense linears are gone
        linear_weights = [op.operands[1].name_hint or "" for op in g2.main.ops if op.name == "sc.linear"]
        assert not [w for w in linear_weights if w.startswith("shared_expert") and not w.startswith("shared_expert_gate")], \
            linear_weights
    assert_matches(g, g2, tokens(np.random.default_rng(1), (0, 1, 2, 9)))


@pytest.mark.parametrize("family", ["qwen2_moe", "deepseek_v3"])
def test_compiled_families_with_shared_experts(family):
    """Through the default pipeline (stacks folded into weights) and the CPU kernels."""
    _, g = dense_moe(8, 2, family, 3 * F, seed=3)
    cm = assert_compiled(g, tokens(np.random.default_rng(4), (1, 5, 33)))
    ops = [op.name for op in cm.graph.walk()]
    assert ops.count("sc.moe_gated_grouped_matmul") == 1 and "sc.stack" not in ops
    # the stacked expert weights (rank 3) are folded into weights; the routing ids/weights concat stays
    assert not [op for op in cm.graph.walk() if op.name == "sc.concat" and len(op.result.type.shape) == 3]
    assert sum(n.endswith(".with_shared") for n in cm.graph.weights) == 3


def test_default_pipeline_has_both_moe_passes():
    passes = PIPELINES["default"].split(",")
    assert passes.index("sparse-activation") < passes.index("expert-fusion") < passes.index("fuse-elementwise")


# ---------------------------------------------------------------------------------------------
# untouched

def test_dense_model_is_untouched_by_both_passes():
    lm = sc.nn.CausalLM(vocab=32, hidden=16, layers=2, heads=2, ffn=24, seed=0)
    g = sc.trace(lm, sc.TensorSpec(("batch", "seq"), "int64"))
    for p in ("sparse-activation", "expert-fusion", MOE_PASSES):
        g2, stats = sparsify(g, p)
        assert str(g2) == str(g) and not any(stats.values()), p


def test_gate_or_up_used_elsewhere_is_not_fused():
    """When the up projection is also returned, fusing would not save its kernel: left alone."""
    def f(x, ids, w, wg, wu):
        order, offsets = sc.ops.moe_dispatch(ids, 2)
        xp = sc.ops.moe_permute(x, order, 1)
        up = sc.ops.grouped_matmul(xp, wu, offsets)
        return sc.ops.silu(sc.ops.grouped_matmul(xp, wg, offsets)) * up, up
    g = sc.trace(f, sc.TensorSpec((3, 4), "float32"), sc.TensorSpec((3, 1), "int64"),
                 sc.TensorSpec((3, 1), "float32"), sc.TensorSpec((2, 5, 4), "float32"),
                 sc.TensorSpec((2, 5, 4), "float32"))
    g2, stats = sparsify(g, "expert-fusion")
    assert str(g2) == str(g) and not any(stats.values())


def test_shared_mlp_over_other_tokens_is_not_folded():
    """A "shared expert" reading other rows than the routed experts is not a shared expert."""
    moe = sc.nn.MoE(hidden=H, ffn=F, num_experts=4, top_k=2, seed=0, formulation="sparse")
    other = sc.nn.MLP(H, 2 * F, seed=5)
    g = sc.trace(lambda x, y: moe(x) + other(y), sc.TensorSpec(("tokens", H), "float32"),
                 sc.TensorSpec(("tokens", H), "float32"))
    g2, stats = sparsify(g, "expert-fusion")
    assert stats["gate/up matmuls fused"] == 1 and not stats.get("shared experts folded")
    assert names(g2).count("sc.linear") == 4   # the router and the three of the MLP


# ---------------------------------------------------------------------------------------------
# the CLI shows both passes at work

def test_compile_print_ir_after_all_shows_the_moe_passes(tmp_path):
    _, g = dense_moe(4, 2, "qwen2_moe", 2 * F)
    (tmp_path / "moe.mlir").write_text(str(g))
    write_weights(str(tmp_path / "moe.safetensors"), g.weights)
    r = CliRunner().invoke(main, ["compile", str(tmp_path / "moe.mlir"), "-o", str(tmp_path / "m.spc"),
                                  "--print-ir-after-all"])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "sparse-activation: 1 moe blocks rewritten" in out
    assert "expert-fusion: 1 gate/up matmuls fused" in out and "expert-fusion: 1 shared experts folded" in out
    after = out.index("IR after expert-fusion") if "IR after expert-fusion" in out else out.index("expert-fusion")
    assert "sc.moe_gated_grouped_matmul" in out[after:]


# ---------------------------------------------------------------------------------------------
# property tests: random MoE blocks of every family, the interpreter and the compiled result

@st.composite
def moe_cases(draw):
    E = draw(st.integers(1, 8), label="experts")
    k = draw(st.integers(1, min(E, 3)), label="top k")
    hidden = draw(st.sampled_from([4, 8, 16]), label="hidden")
    ffn = draw(st.sampled_from([3, 8]), label="ffn")
    family = draw(st.sampled_from(FAMILY_NAMES), label="family")
    shared = draw(st.sampled_from([0, 1, 2, 3, "other"]), label="shared experts (x ffn)")
    shared_ffn = ffn + 1 if shared == "other" else shared * ffn
    seed = draw(st.integers(0, 2**16), label="seed")
    zero_router = draw(st.booleans(), label="all router scores tie")
    counts = draw(st.lists(st.integers(0, 9), min_size=1, max_size=3), label="token counts")
    if family == "deepseek_v3" and E < 2:
        family = "qwen3_moe"
    _, g = dense_moe(E, k, family, shared_ffn, hidden=hidden, ffn=ffn, seed=seed, zero_router=zero_router)
    return g, hidden, counts, seed


def check_case(case, compiled):
    g, hidden, counts, seed = case
    g2, stats = sparsify(g, MOE_PASSES)
    assert stats["gate/up matmuls fused"] == 1, names(g2)
    inputs = tokens(np.random.default_rng(seed), counts, hidden)
    assert_matches(g, g2, inputs)
    if compiled:
        assert_compiled(g, inputs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moe_cases(), st.booleans())
def test_property_matches_dense_interpreted_and_compiled(case, compiled):
    check_case(case, compiled)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moe_cases())
def test_property_matches_dense_thorough(case):
    check_case(case, compiled=True)


def test_check_pass_random_graphs():
    check_pass("expert-fusion", examples=150)


def test_check_pass_graphs_of_moe_ops():
    ops = MOE_OPS + ["sc.moe_dispatch", "sc.moe_permute", "sc.grouped_matmul", "sc.moe_combine", "sc.gelu",
                     "sc.relu"]
    check_pass(MOE_PASSES, examples=150, max_ops=12, ops=ops)


@pytest.mark.slow
def test_check_pass_thorough():
    check_pass("expert-fusion", examples=1000, max_ops=14,
               ops=MOE_OPS + ["sc.moe_dispatch", "sc.moe_permute", "sc.grouped_matmul", "sc.moe_combine"])


def test_passmanager_report_names_the_statistics():
    _, g = dense_moe(4, 2, "deepseek_v3", 2 * F)
    pm = PassManager.parse(MOE_PASSES)
    pm.run(g)
    text = pm.format_report()
    assert "expert-fusion: 11 expert matmuls fused" in text and "sparse-activation: 4 experts sparsified" in text
