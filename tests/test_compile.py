"""sc.compile end to end: every op lowers, compiled graphs match the interpreter, the MoE
families and a decoder LM compile, generate uses the KV cache correctly, artifacts round trip,
and bad inputs get clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsec as sc
import sparsec.lower.cpu  # noqa: F401  (registers the CPU rules)
from sparsec.ir.opdef import REGISTRY
from sparsec.runtime.executable import RuntimeInputError
from sparsec.testing import compare_outputs


def test_every_op_has_a_reference_and_a_cpu_lowering():
    from sparsec.lower.cpu import NOT_LOWERED
    no_ref = sorted(n for n, d in REGISTRY.items() if d.reference is None and n != "sc.param")
    no_cpu = sorted(n for n, d in REGISTRY.items() if "cpu" not in d.lowerings
                    and n not in ("sc.param", "sc.constant") and n not in NOT_LOWERED)
    assert not no_ref, f"ops without a NumPy reference: {no_ref}"
    assert not no_cpu, f"ops without a CPU lowering: {no_cpu}"
    # the ops declared not lowerable exist, really have no rule, and say why
    for n, reason in NOT_LOWERED.items():
        assert n in REGISTRY and "cpu" not in REGISTRY[n].lowerings and len(reason) > 40, n


@settings(max_examples=60, deadline=None)
@given(sc.testing.graphs(max_ops=6), st.data(), st.sampled_from(["", "default"]))
def test_compiled_random_graphs_match_the_interpreter(g, data, pipeline):
    cm = sc.compile(g, pipeline=pipeline, warmup=False, progress=False)
    for _ in range(2):  # different sizes of the symbolic dims
        arrays = data.draw(sc.testing.inputs_for(g))
        expected = sc.testing.run(g, arrays)
        with np.errstate(all="ignore"):
            got = cm.run(*arrays)
        msg = compare_outputs(expected, got, rtol=1e-5, atol=1e-4)
        assert msg is None, f"{msg}\n{g}"


MOE_FAMILIES = {
    "mixtral": dict(router="softmax", norm_topk_prob=True, naming="mixtral"),
    "qwen2_moe": dict(router="softmax", norm_topk_prob=False, shared_ffn=24, shared_expert_gate=True),
    "qwen3_moe": dict(router="softmax", norm_topk_prob=True),
    "deepseek_v3": dict(router="sigmoid", n_group=4, topk_group=2, score_bias=True, routed_scaling_factor=2.5,
                        shared_ffn=16, naming="deepseek"),
}


@pytest.mark.parametrize("family", sorted(MOE_FAMILIES))
@pytest.mark.parametrize("formulation", ["dense", "sparse"])
def test_moe_families_compile_and_match(family, formulation):
    moe = sc.nn.MoE(hidden=32, ffn=48, num_experts=8, top_k=2, seed=1, formulation=formulation,
                    **MOE_FAMILIES[family])
    g = sc.trace(moe, sc.TensorSpec(("tokens", 32), "float32"))
    cm = sc.compile(g, progress=False)
    rng = np.random.default_rng(0)
    for t in (1, 5, 33):
        x = rng.standard_normal((t, 32)).astype(np.float32)
        (ref,) = sc.interpret(g, x)
        got = cm(x)
        assert compare_outputs((ref,), (got,), rtol=0, atol=1e-4) is None


@pytest.fixture(scope="module")
def tiny_lm():
    lm = sc.nn.CausalLM(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, ffn=48, seed=3,
                        mlp=lambda i: sc.nn.MoE(hidden=32, ffn=32, num_experts=4, top_k=2, seed=i))
    return lm, sc.compile(lm, sc.TensorSpec(("batch", "seq"), "int64"), progress=False)


def test_decoder_lm_matches_and_generate_equals_recomputation(tiny_lm):
    lm, cm = tiny_lm
    g = sc.trace(lm, sc.TensorSpec(("batch", "seq"), "int64"))
    ids = np.array([[1, 5, 9, 2, 7], [3, 3, 8, 0, 1]], np.int64)
    (ref,) = sc.interpret(g, ids)
    assert compare_outputs((ref,), (cm(ids),), rtol=0, atol=1e-4) is None
    out = cm.generate(ids, 7)
    expect = ids
    for _ in range(7):  # no cache: the whole sequence through the interpreter each time
        (lg,) = sc.interpret(g, expect)
        expect = np.concatenate([expect, np.argmax(lg[:, -1], -1)[:, None]], axis=1)
    np.testing.assert_array_equal(out, expect)
    assert "decode" in cm.executables and cm.executables["decode"].plan.inplace_inputs


def test_save_load_round_trip(tiny_lm, tmp_path):
    _, cm = tiny_lm
    p = str(tmp_path / "lm.spc")
    cm.save(p)
    cm2 = sc.load(p)
    ids = np.array([[4, 2, 6]], np.int64)
    np.testing.assert_array_equal(cm(ids), cm2(ids))
    np.testing.assert_array_equal(cm.generate(ids, 4), cm2.generate(ids, 4))


def test_bad_inputs_are_clear_errors(tiny_lm):
    _, cm = tiny_lm
    with pytest.raises(RuntimeInputError, match="takes 1 inputs"):
        cm()
    with pytest.raises(RuntimeInputError, match="expected dtype i64"):
        cm(np.zeros((1, 3), np.float32))
    with pytest.raises(RuntimeInputError, match="expected rank 2"):
        cm(np.zeros(3, np.int64))
    with pytest.raises(sc.SparsecError, match="input_ids must be integers"):
        cm.generate(np.zeros((1, 2), np.float32), 2)


def test_compile_option_errors():
    g = sc.trace(lambda x: x + 1.0, sc.TensorSpec((4,), "float32"))
    with pytest.raises(sc.SparsecError, match="unknown target"):
        sc.compile(g, target="tpu")
    with pytest.raises(sc.SparsecError, match="unknown quantize mode"):
        sc.compile(g, quantize="q3")
    with pytest.raises(sc.SparsecError, match="threads=0"):
        sc.compile(g, threads=0)
    with pytest.raises(sc.SparsecError, match="give one sc.TensorSpec"):
        sc.compile(lambda x: x)
    with pytest.raises(sc.SparsecError, match="unknown pass"):
        sc.compile(g, pipeline="nosuch")


def test_zero_tokens_through_view_kernels():
    """A reshape of an empty array is a view of nothing: zero tokens through a graph of views
    (DeepSeek-V3 group routing reshapes [T, E] -> [T, G, E/G]) run instead of failing the view check."""
    moe = sc.nn.MoE(hidden=4, ffn=3, num_experts=4, top_k=2, seed=0, router="sigmoid", n_group=2, topk_group=1,
                    score_bias=True)
    cm = sc.compile(moe, sc.TensorSpec(("tokens", 4), "float32"), pipeline="classic", progress=False)
    assert cm(np.zeros((0, 4), np.float32)).shape == (0, 4)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(cm(x), sc.interpret(cm.graph, x)[0], atol=1e-5)
