"""fold-constants and infer-shapes: semantics on random graphs (check_pass and explicit inputs for
bound dims), folded weights and their names, and the errors for bad bindings."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsec as sc
from sparsec.passes import PassFailure, PassManager, PipelineError, Statistics
from sparsec.passes.infer_shapes import InferShapes
from sparsec.testing import compare_outputs, graph_symbols, random_inputs, run

F32 = "float32"
FOLD_OPS = ["sc.constant", "sc.add", "sc.mul", "sc.exp", "sc.transpose", "sc.cast", "sc.reshape", "sc.sum",
            "sc.matmul", "sc.linear", "sc.broadcast_to", "sc.where", "sc.greater", "sc.div", "sc.take",
            "sc.softmax", "sc.concat", "sc.topk", "sc.iota"]
_settings = dict(deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_pipeline(g, pipeline):
    pm = PassManager.parse(pipeline)
    out = pm.run(g)
    stats = Statistics()
    for r in pm.report:
        stats.update(r.stats)
    return out, stats


def names(g):
    return [op.name for op in g.main.ops]


class WithWeight(sc.nn.Module):
    """x @ f(w) for a weight w [out, in] and a traced function f of it."""

    def __init__(self, f, w):
        super().__init__()
        self.w = sc.nn.Parameter(w)
        self.f = f

    def forward(self, x):
        return x @ self.f(self.w)


W = (np.arange(96, dtype=np.float32).reshape(12, 8) - 40) / 16


def _traced(f, w=W):
    return sc.trace(WithWeight(f, w), sc.TensorSpec(("tokens", w.shape[1]), F32))


# ---------------------------------------------------------------------------------------------
# fold-constants: random graphs

def test_fold_check_pass_random_graphs():
    sc.testing.check_pass("fold-constants", examples=200, seed=1)
    sc.testing.check_pass("fold-constants{fold-params=true}", examples=200, seed=2)


def test_fold_check_pass_constant_subgraphs():
    sc.testing.check_pass("fold-constants", examples=150, max_ops=10, ops=FOLD_OPS, seed=3)
    sc.testing.check_pass("fold-constants{fold-params=true}", examples=150, max_ops=10, ops=FOLD_OPS, seed=4)
    # everything folded becomes a weight
    sc.testing.check_pass("fold-constants{fold-params=true,max-constant-elements=0}", examples=100, max_ops=10,
                          ops=FOLD_OPS, seed=5)


@pytest.mark.slow
def test_fold_check_pass_slow():
    sc.testing.check_pass("fold-constants", examples=1000, max_ops=14, ops=FOLD_OPS)
    sc.testing.check_pass("fold-constants{fold-params=true}", examples=1000, max_ops=14)
    sc.testing.check_pass("fold-constants{fold-params=true,max-constant-elements=2},fuse-elementwise",
                          examples=500, max_ops=14, ops=FOLD_OPS)


# ---------------------------------------------------------------------------------------------
# fold-constants: unit tests

def test_transposed_weight_becomes_a_new_weight():
    g = _traced(lambda w: sc.ops.transpose(w))
    assert "sc.transpose" in names(g)
    g2, stats = run_pipeline(g, "fold-constants{fold-params=true}")
    assert names(g2) == ["sc.param", "sc.matmul", "func.return"]
    assert g2.main.ops[0].attrs["name"] == "w.T"
    np.testing.assert_array_equal(g2.weights["w.T"], W.T)
    assert "w" not in g2.weights and "w" in g.weights  # replaced in the copy only
    assert stats == {"ops folded": 1, "weights created": 1, "weights replaced": 1}
    sc.testing.assert_equivalent(g, g2)
    text = str(g2)
    assert '"sc.param"() {name = "w.T"} : () -> tensor<8x12xf32>' in text


def test_cast_chain_names_and_values():
    g = _traced(lambda w: sc.ops.cast(sc.ops.cast(sc.ops.transpose(w), "float16"), "float32"))
    g2, _ = run_pipeline(g, "fold-constants{fold-params=true}")
    (name,) = g2.params()
    assert name == "w.T.f16.f32"
    np.testing.assert_array_equal(g2.weights[name], W.T.astype(np.float16).astype(np.float32))
    sc.testing.assert_equivalent(g, g2)


def test_weight_used_elsewhere_is_kept_and_names_are_unique():
    class TwoUses(sc.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = sc.nn.Parameter(W)

        def forward(self, x):
            a = x @ sc.ops.transpose(self.w)
            b = x @ sc.ops.transpose(sc.ops.neg(self.w))
            c = sc.ops.linear(x, self.w)
            return a + b + c
    g = sc.trace(TwoUses(), sc.TensorSpec(("tokens", 8), F32))
    g2, stats = run_pipeline(g, "fold-constants{fold-params=true}")
    assert sorted(g2.params()) == ["w", "w.T", "w.neg.T"]
    assert "w" in g2.weights and stats.get("weights replaced", 0) == 0
    np.testing.assert_array_equal(g2.weights["w.neg.T"], -W.T)
    sc.testing.assert_equivalent(g, g2)
    # a second folding of the same weight gets a fresh name instead of overwriting
    g3 = _traced(lambda w: sc.ops.transpose(w))
    g3.weights["w.T"] = np.zeros((8, 12), np.float32)
    g4, _ = run_pipeline(g3, "fold-constants{fold-params=true}")
    assert sorted(g4.params()) == ["w.T.1"]
    np.testing.assert_array_equal(g4.weights["w.T"], 0)


def test_params_untouched_without_fold_params():
    g = _traced(lambda w: sc.ops.transpose(w) * 2.0)
    g2, stats = run_pipeline(g, "fold-constants")
    assert str(g2) == str(g) and not stats
    assert sorted(g2.weights) == ["w"]


def test_small_constant_expression_becomes_a_constant():
    c = np.array([1, 2, 3], dtype=np.float32)
    g = sc.trace(lambda x: x + sc.ops.exp(sc.ops.constant(c)) * 2.0, sc.TensorSpec(("tokens", 3), F32))
    g2, stats = run_pipeline(g, "fold-constants")
    assert names(g2) == ["sc.constant", "sc.add", "func.return"]
    np.testing.assert_array_equal(g2.main.ops[0].attrs["value"],
                                  (np.exp(c.astype(np.float32)) * np.float32(2)).astype(np.float32))
    assert stats == {"ops folded": 2, "constants created": 1}
    sc.testing.assert_equivalent(g, g2)


def test_large_constant_result_becomes_a_weight():
    t = np.arange(128, dtype=np.float32).reshape(16, 8)
    g = sc.trace(lambda x: x @ sc.ops.transpose(sc.ops.constant(t)), sc.TensorSpec(("tokens", 8), F32))
    g2, stats = run_pipeline(g, "fold-constants")
    assert names(g2) == ["sc.param", "sc.matmul", "func.return"]
    np.testing.assert_array_equal(g2.weights["constant.T"], t.T)
    assert stats == {"ops folded": 1, "weights created": 1}
    sc.testing.assert_equivalent(g, g2)


def test_what_is_not_folded():
    one = np.float32(1)
    g = sc.trace(lambda x: (x + sc.ops.broadcast_to(sc.ops.constant(one), ("tokens", 8)),   # symbolic result
                            sc.ops.broadcast_to(sc.ops.constant(one), (16, 16)),           # would expand
                            sc.ops.constant(np.array([7], np.int64)) / sc.ops.constant(np.array([0], np.int64))),
                 sc.TensorSpec(("tokens", 8), F32))
    g2, stats = run_pipeline(g, "fold-constants")
    assert str(g2) == str(g) and not stats
    with pytest.raises(sc.InterpretError, match="division by zero"):  # still raised, at run time
        sc.interpret(g2, np.zeros((2, 8), np.float32))


def test_folding_silences_floating_point_warnings():
    g = sc.trace(lambda x: x + sc.ops.log(sc.ops.constant(np.array([-1.0, 0.0], np.float32))),
                 sc.TensorSpec((2,), F32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g2, _ = run_pipeline(g, "fold-constants")
    value = g2.main.ops[0].attrs["value"]
    assert np.isnan(value[0]) and value[1] == -np.inf
    assert str(sc.parse(str(g2))) == str(g2)


# ---------------------------------------------------------------------------------------------
# infer-shapes

def test_infer_check_pass_without_binding():
    sc.testing.check_pass("infer-shapes", examples=200, seed=6)


@settings(max_examples=200, derandomize=True, **_settings)
@given(sc.testing.graphs(max_ops=10))
def test_infer_without_binding_changes_nothing_on_valid_ir(g):
    stats = Statistics()
    before = str(g)
    InferShapes().run(g, stats)
    assert str(g) == before and stats["types changed"] == 0


@settings(max_examples=250, derandomize=True, **_settings)
@given(sc.testing.graphs(max_ops=10), st.data())
def test_bound_graph_computes_the_same(g, data):
    symbols = graph_symbols(g)
    bound = data.draw(st.lists(st.sampled_from(symbols), unique=True) if symbols else st.just([]), label="bound")
    sizes = {s: data.draw(st.integers(1, 4), label=f"size {s}") for s in symbols}
    text = ",".join(f"{s}={sizes[s]}" for s in bound)
    g2, _ = run_pipeline(g, f'infer-shapes{{bind="{text}"}}')
    assert str(sc.parse(str(g2))) == str(g2)
    if set(bound) == set(symbols):
        assert "?" not in str(g2)
    arrays = random_inputs(g, np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))), sizes)
    msg = compare_outputs(run(g, arrays), run(g2, arrays), g.main.output_names())
    assert msg is None, f"{msg}\n--- bind {text}\n{g}--- after:\n{g2}"


@pytest.mark.slow
@settings(max_examples=1500, **_settings)
@given(sc.testing.graphs(max_ops=14), st.data())
def test_bound_graph_computes_the_same_slow(g, data):
    test_bound_graph_computes_the_same.hypothesis.inner_test(g, data)


def test_bind_tiny_moe_after_fusion():
    moe = sc.nn.MoE(hidden=64, ffn=128, num_experts=8, top_k=2, seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 64), F32))
    g2, stats = run_pipeline(g, 'fuse-elementwise,infer-shapes{bind="tokens=5"}')
    text = str(g2)
    assert "?" not in text and "tokens" not in text
    assert 'shape = [5 : i64, 8 : i64]' in text  # the broadcast_to attribute is specialized
    fused = next(op for op in g2.main.ops if op.name == "sc.fused")
    assert [a.type for a in fused.regions[0].block.args] == [v.type for v in fused.operands]
    assert fused.result.type.shape == (5, 128)
    assert stats["symbols bound"] == 1 and stats["attributes specialized"] == 1 and stats["types changed"] > 100
    x = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    sc.testing.assert_equivalent(g, g2, inputs=[(x,)])
    with pytest.raises(sc.InterpretError, match="dim 0 must be 5"):
        sc.interpret(g2, x[:4])


def test_partial_binding_keeps_other_symbols():
    def f(x):
        return sc.ops.reshape(x, (-1, 4)) * 2.0
    g = sc.trace(f, sc.TensorSpec(("batch", "seq", 4), F32))
    assert g.main.outputs[0].type.shape == ("batch*seq", 4)
    g2, _ = run_pipeline(g, 'infer-shapes{bind="batch=2"}')
    assert g2.main.args[0].type.shape == (2, "seq", 4)
    assert g2.main.outputs[0].type.shape == ("2*seq", 4)
    x = np.ones((2, 3, 4), np.float32)
    sc.testing.assert_equivalent(g, g2, inputs=[(x,)])


def test_no_binding_repairs_and_counts_wrong_types():
    g = sc.trace(lambda x: sc.ops.exp(x) + 1.0, sc.TensorSpec(("tokens", 4), F32))
    exp = g.main.ops[0]
    right = exp.result.type
    exp.result.type = right.with_shape((3, 4))  # corrupt it (the verifier would refuse this)
    stats = Statistics()
    InferShapes().run(g, stats)
    assert exp.result.type == right and stats["types changed"] == 1
    g.verify()


@pytest.mark.parametrize("bind, message", [
    ("tokens", "expected symbol=size"),
    ("tokens=", "expected symbol=size"),
    ("=3", "expected symbol=size"),
    ("tokens=0", "must be a positive integer, got 0"),
    ("tokens=-2", "must be a positive integer"),
    ("tokens=2.5", "must be a positive integer, got '2.5'"),
    ("tokens=x", "must be a positive integer"),
    ("tokens=1,tokens=2", "'tokens' is bound twice"),
    ("2tok=3", "not a symbol name"),
    ("tokens=1,,batch=2", "expected symbol=size"),
])
def test_malformed_binding_is_a_pipeline_error(bind, message):
    with pytest.raises(PipelineError, match=message):
        PassManager.parse(f'infer-shapes{{bind="{bind}"}}')


def test_unknown_symbol_names_it():
    g = sc.trace(lambda x: x * 2.0, sc.TensorSpec(("tokens", 4), F32))
    with pytest.raises(PipelineError, match=r"'seq', which is not a symbolic dim of the inputs \(symbols: tokens\)"):
        InferShapes(bind="tokens=2,seq=3").run(g, Statistics())
    with pytest.raises(PassFailure, match="'seq', which is not a symbolic dim"):
        PassManager.parse('infer-shapes{bind="seq=3"}').run(g)


def test_functions_folding_the_same_stack_share_one_weight():
    """main and decode of a causal MoE LM fold the same expert stacks: stored once, both read it."""
    lm = sc.nn.CausalLM(vocab=32, hidden=16, layers=1, heads=2, ffn=24, seed=0,
                        mlp=lambda i: sc.nn.MoE(hidden=16, ffn=16, num_experts=4, top_k=2, seed=i))
    cm = sc.compile(lm, sc.TensorSpec((1, "seq"), "int64"), progress=False)
    stacks = [n for n in cm.graph.weights if "experts" in n]
    assert sorted(stacks) == [f"model.layers.0.mlp.experts.{p}.weight" for p in ("down_proj", "gate_proj", "up_proj")]
    for fn in cm.graph.functions.values():
        read = {op.attrs["name"] for op in fn.walk() if op.name == "sc.param"}
        assert set(stacks) <= read, fn.name
    ids = np.array([[1, 2, 3]])
    (logits,) = sc.interpret(sc.trace(lm, sc.TensorSpec((1, "seq"), "int64")), ids)
    np.testing.assert_allclose(cm(ids), logits, atol=1e-4)
