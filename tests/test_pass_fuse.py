"""fuse-elementwise: semantics on random graphs (check_pass), the kernel contract of every
sc.fused it forms (see passes/fuse_elementwise.py), and the groups it forms on real models."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import sparsec as sc
from sparsec.ir.types import broadcast_shapes
from sparsec.passes import PassManager, PipelineError
from sparsec.passes.fuse_elementwise import MAX_INLINED_CONSTANT_ELEMENTS

EW_OPS = ["sc.add", "sc.mul", "sc.exp", "sc.tanh", "sc.broadcast_to", "sc.cast", "sc.where", "sc.constant",
          "sc.greater"]
# elementwise chains interleaved with ops that break them (paths leaving a group, smaller shapes)
MIXED_OPS = EW_OPS + ["sc.sub", "sc.div", "sc.maximum", "sc.silu", "sc.neg", "sc.logical_and", "sc.softmax",
                      "sc.sum", "sc.expand_dims", "sc.reshape", "sc.matmul"]


def fused_ops(g):
    return [op for op in g.main.ops if op.name == "sc.fused"]


def region_ops(fused):
    return [op for op in fused.regions[0].block.ops if op.name != "sc.yield"]


def check_contract(g, min_ops=2, max_ops=64):
    """Assert the kernel generator's contract for every sc.fused {kind = "elementwise"} of ``g``."""
    for f in fused_ops(g):
        assert f.attrs["kind"] == "elementwise"
        block = f.regions[0].block
        defined = {id(a) for a in block.args}
        members = 0
        for op in region_ops(f):
            traits = op.opdef.traits
            if op.name == "sc.constant":
                assert op.attrs["value"].size <= MAX_INLINED_CONSTANT_ELEMENTS
            else:
                assert "elementwise" in traits or op.name == "sc.broadcast_to", op.name
                members += 1
            for v in op.operands:
                assert id(v) in defined, f"{op.name} captures a value from outside the region"
            defined.update(id(r) for r in op.results)
        assert min_ops <= members <= max_ops
        assert any("elementwise" in op.opdef.traits for op in region_ops(f))
        yields = block.terminator.operands
        assert yields and all(id(v) in defined and v.owner is not block for v in yields)
        space = yields[0].type.shape
        assert all(v.type.shape == space for v in yields), [str(v.type) for v in yields]
        for v in [*block.args, *(r for op in region_ops(f) for r in op.results)]:
            assert broadcast_shapes(v.type.shape, space) == space, f"{v.type} does not broadcast to {space}"


def run_fuse(g, pipeline="fuse-elementwise"):
    pm = PassManager.parse(pipeline)
    out = pm.run(g)
    stats = {}
    for r in pm.report:
        for k, n in r.stats.items():
            stats[k] = stats.get(k, 0) + n
    return out, stats


# ---------------------------------------------------------------------------------------------
# random graphs

def test_check_pass_random_graphs():
    sc.testing.check_pass("fuse-elementwise", examples=200, seed=1)


def test_check_pass_elementwise_chains():
    sc.testing.check_pass("fuse-elementwise", examples=200, max_ops=12, ops=EW_OPS, seed=2)


def test_check_pass_chains_broken_by_other_ops():
    sc.testing.check_pass("fuse-elementwise", examples=150, max_ops=14, ops=MIXED_OPS, seed=3)


def test_check_pass_options_and_rerun():
    sc.testing.check_pass("fuse-elementwise{min-ops=1,max-ops=3}", examples=100, max_ops=12, ops=MIXED_OPS, seed=4)
    sc.testing.check_pass("fuse-elementwise,fuse-elementwise", examples=100, max_ops=12, ops=EW_OPS, seed=5)


def test_check_pass_low_precision_dtypes():
    sc.testing.check_pass("fuse-elementwise", examples=100, max_ops=10, ops=EW_OPS,
                          dtypes=("f16", "bf16", "f32", "i32"), seed=6)


_contract_settings = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_contract_settings
@given(sc.testing.graphs(max_ops=14, ops=MIXED_OPS))
def test_every_group_meets_the_kernel_contract(g):
    g2, _ = run_fuse(g)
    check_contract(g2)
    g3, _ = run_fuse(g, "fuse-elementwise{min-ops=1,max-ops=3}")
    check_contract(g3, min_ops=1, max_ops=3)


@pytest.mark.slow
def test_check_pass_slow():
    sc.testing.check_pass("fuse-elementwise", examples=1500, max_ops=16)
    sc.testing.check_pass("fuse-elementwise", examples=1500, max_ops=16, ops=MIXED_OPS)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sc.testing.graphs(max_ops=20, ops=MIXED_OPS))
def test_contract_slow(g):
    g2, _ = run_fuse(g)
    check_contract(g2)


# ---------------------------------------------------------------------------------------------
# unit tests

F32 = "float32"


def _spec(*shape, dtype=F32):
    return sc.TensorSpec(shape, dtype)


def test_swiglu_chain_becomes_one_fused_op():
    def f(a, b, c):
        return sc.ops.silu(a) * b + c
    g = sc.trace(f, _spec("tokens", 8), _spec("tokens", 8), _spec(8))
    g2, stats = run_fuse(g)
    (fused,) = fused_ops(g2)
    assert [op.name for op in region_ops(fused)] == ["sc.silu", "sc.mul", "sc.add"]
    assert [a.name_hint for a in fused.operands] == ["a", "b", "c"]
    yielded = fused.regions[0].block.terminator.operands
    assert len(yielded) == 1 and yielded[0].owner.name == "sc.add"
    assert g2.main.outputs == (fused.result,)
    assert [op.name for op in g2.main.ops] == ["sc.fused", "func.return"]
    assert stats == {"groups formed": 1, "ops fused": 3}
    check_contract(g2)
    sc.testing.assert_equivalent(g, g2)


def test_value_used_outside_the_group_is_yielded():
    def f(x, y):
        t = sc.ops.exp(x) * y
        return t + 1.0, sc.ops.softmax(t, axis=-1)
    g = sc.trace(f, _spec("tokens", 8), _spec("tokens", 8))
    g2, _ = run_fuse(g)
    (fused,) = fused_ops(g2)
    assert [op.name for op in region_ops(fused)] == ["sc.constant", "sc.exp", "sc.mul", "sc.add"]
    yielded = fused.regions[0].block.terminator.operands
    assert [v.owner.name for v in yielded] == ["sc.mul", "sc.add"]
    softmax = next(op for op in g2.main.ops if op.name == "sc.softmax")
    assert softmax.operands[0] is fused.results[0]
    assert g2.main.outputs == (fused.results[1], softmax.result)
    check_contract(g2)
    sc.testing.assert_equivalent(g, g2)


def test_no_cycle_through_a_non_elementwise_op():
    # a -> softmax -> b and a -> b: a and b in one group would need softmax inside and outside it
    def f(x, y):
        a = sc.ops.exp(x) * y
        s = sc.ops.softmax(a, axis=-1)
        return sc.ops.tanh(a + s) * 2.0
    g = sc.trace(f, _spec("tokens", 8), _spec("tokens", 8))
    g2, stats = run_fuse(g)
    first, second = fused_ops(g2)
    assert [op.name for op in region_ops(first)] == ["sc.exp", "sc.mul"]
    assert [op.name for op in region_ops(second)] == ["sc.constant", "sc.add", "sc.tanh", "sc.mul"]
    names = [op.name for op in g2.main.ops]
    assert names == ["sc.fused", "sc.softmax", "sc.fused", "func.return"]
    assert stats["groups formed"] == 2
    check_contract(g2)
    sc.testing.assert_equivalent(g, g2)


def test_diamond_through_softmax_keeps_the_ends_apart():
    # the only elementwise pair is exp -> add, and softmax sits on the other path between them
    def f(x):
        e = sc.ops.exp(x)
        return e + sc.ops.softmax(e, axis=-1)
    g = sc.trace(f, _spec(4, 8))
    g2, stats = run_fuse(g)
    assert fused_ops(g2) == [] and not stats
    assert str(g2) == str(g)


def test_no_cycle_through_a_group_that_spans_the_block():
    # {e1, late} is one group reaching from the first op to the fifth; u -> r -> late and
    # e1 -> s -> v make u and v unmergeable even though s comes before u in the block
    def f(x, y):
        e1 = sc.ops.exp(x)
        s = sc.ops.softmax(e1, axis=-1)
        u = sc.ops.tanh(y)
        r = sc.ops.softmax(u, axis=-1)
        late = e1 * r
        return late, u + s
    g = sc.trace(f, _spec(4, 8), _spec(4, 8))
    g2, stats = run_fuse(g)
    (fused,) = fused_ops(g2)
    assert [op.name for op in region_ops(fused)] == ["sc.exp", "sc.mul"]
    assert stats["groups formed"] == 1
    check_contract(g2)
    sc.testing.assert_equivalent(g, g2)


def test_smaller_value_needed_outside_stays_outside():
    # t is [tokens, 1] but the group iterates over [tokens, 8]: t is not yielded, its op stays out
    def f(v, x):
        t = sc.ops.exp(v)
        return sc.ops.tanh(t * x + 1.0), sc.ops.softmax(t, axis=0)
    g = sc.trace(f, _spec("tokens", 1), _spec("tokens", 8))
    g2, _ = run_fuse(g)
    (fused,) = fused_ops(g2)
    assert "sc.exp" not in [op.name for op in region_ops(fused)]
    exp = next(op for op in g2.main.ops if op.name == "sc.exp")
    assert exp.result in fused.operands
    check_contract(g2)
    sc.testing.assert_equivalent(g, g2)


def test_broadcasts_and_small_constants_join_the_group():
    def f(x, bias):
        b = sc.ops.broadcast_to(bias, (4, 8))
        return sc.ops.relu(x * 0.5 + b)
    g = sc.trace(f, _spec(4, 8), _spec(8))
    g2, stats = run_fuse(g)
    (fused,) = fused_ops(g2)
    assert sorted(op.name for op in region_ops(fused)) == sorted(
        ["sc.constant", "sc.mul", "sc.broadcast_to", "sc.add", "sc.relu"])
    assert not [op for op in g2.main.ops if op.name == "sc.constant"]  # the original was erased
    assert stats == {"groups formed": 1, "ops fused": 4, "constants inlined": 1}
    check_contract(g2)
    sc.testing.assert_equivalent(g, g2)


def test_large_constant_is_an_input_not_inlined():
    table = np.arange(80, dtype=np.float32).reshape(10, 8)
    g = sc.trace(lambda x: sc.ops.exp(x) + sc.ops.constant(table), _spec(10, 8))
    g2, _ = run_fuse(g)
    (fused,) = fused_ops(g2)
    assert [op.name for op in region_ops(fused)] == ["sc.exp", "sc.add"]
    assert fused.operands[1].owner.name == "sc.constant"
    sc.testing.assert_equivalent(g, g2)


def test_min_and_max_ops():
    def f(x):
        return sc.ops.tanh(sc.ops.exp(sc.ops.neg(sc.ops.abs(x))))
    g = sc.trace(f, _spec(3, 4))
    g2, _ = run_fuse(g, "fuse-elementwise{max-ops=2}")
    assert [len(region_ops(op)) for op in fused_ops(g2)] == [2, 2]
    check_contract(g2, max_ops=2)
    sc.testing.assert_equivalent(g, g2)
    g3, _ = run_fuse(sc.trace(lambda x: sc.ops.exp(x), _spec(3)), "fuse-elementwise{min-ops=1}")
    assert len(fused_ops(g3)) == 1
    g4, stats = run_fuse(g, "fuse-elementwise{min-ops=5}")
    assert not fused_ops(g4) and not stats
    for bad in ["fuse-elementwise{min-ops=0}", "fuse-elementwise{min-ops=4,max-ops=3}"]:
        with pytest.raises(PipelineError, match="min-ops"):
            PassManager.parse(bad)


def test_fused_graph_round_trips():
    def f(a, b):
        return sc.ops.where(a > 0.0, sc.ops.cast(b, "float16"), sc.ops.cast(a, "float16"))
    g2, _ = run_fuse(sc.trace(f, _spec("tokens", 4), _spec(1, 4)))
    text = str(g2)
    assert '"sc.fused"' in text and str(sc.parse(text)) == text


# ---------------------------------------------------------------------------------------------
# pipelines on real models

PIPELINES = ["canonicalize,cse,dce,fuse-elementwise", "cse,dce,fuse-elementwise"]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_tiny_moe_pipeline_keeps_outputs(pipeline):
    moe = sc.nn.MoE(hidden=64, ffn=128, num_experts=8, top_k=2, seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 64), F32))
    g2, stats = run_fuse(g, pipeline)
    check_contract(g2)
    groups = fused_ops(g2)
    swiglu = [f for f in groups if [op.name for op in region_ops(f)] == ["sc.silu", "sc.mul"]]
    assert len(swiglu) == 8  # one per expert
    assert stats["groups formed"] == len(groups) >= 9
    sc.testing.assert_equivalent(g, g2, examples=4, max_size=6)
    _, again = run_fuse(g2, "fuse-elementwise")
    assert not again.get("groups formed")  # nothing left to group


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_causal_lm_pipeline_keeps_outputs(pipeline):
    lm = sc.nn.CausalLM(vocab=50, hidden=32, layers=2, heads=4, kv_heads=2, ffn=64, seed=0)
    g = sc.trace(lm, sc.TensorSpec(("batch", "seq"), "int64"))
    g2, stats = run_fuse(g, pipeline)
    check_contract(g2)
    assert stats["groups formed"] >= 2  # each layer's SwiGLU at least
    rng = np.random.default_rng(0)
    inputs = [(rng.integers(0, 50, size=(b, s)).astype(np.int64),) for b, s in [(1, 1), (2, 5), (1, 7)]]
    sc.testing.assert_equivalent(g, g2, inputs=inputs)
