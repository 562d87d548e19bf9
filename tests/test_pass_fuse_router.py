"""fuse-router: softmax -> topk (-> divide by the sum) becomes one sc.softmax_topk. Property tests
over random routers (every float dtype, k, with and without the renormalization) and over the
near misses the pass must leave alone, the default pipeline on the sc.nn.MoE routers, and the
compiled layer."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsec as sc
from sparsec.passes import PassManager
from sparsec.testing import check_pass, compare_outputs

#: variant -> whether the pass fuses it (and with normalize)
VARIANTS = {
    "plain": "fused", "normalized": "normalized", "keepdims_false": "fused", "other_numerator": "fused",
    "softmax_reused": None, "smallest": None, "softmax_axis0": None, "topk_middle_axis": None,
    "sum_reused": "fused",
}


@st.composite
def routers(draw, variant=None):
    """``logits [tokens, E]`` through a softmax router written one of the ``VARIANTS`` ways."""
    variant = variant or draw(st.sampled_from(sorted(VARIANTS)))
    dtype = draw(st.sampled_from(["float32", "float64", "float16", "bfloat16"]))
    E = draw(st.integers(1, 16))
    k = draw(st.integers(1, E))

    def f(x):
        p = sc.ops.softmax(x, 0 if variant == "softmax_axis0" else -1)
        if variant == "topk_middle_axis":
            w, i = sc.ops.topk(p, 2, axis=1)
        else:
            w, i = sc.ops.topk(p, k, largest=variant != "smallest")
        outs = [i]
        if variant in ("normalized", "sum_reused", "other_numerator", "keepdims_false"):
            s = sc.ops.sum(w, -1, variant != "keepdims_false")
            if variant == "keepdims_false":
                s = sc.ops.reshape(s, ("tokens", 1))
            num = w * 2.0 if variant == "other_numerator" else w
            w = num / s
            if variant == "sum_reused":
                outs.append(s)
        if variant == "softmax_reused":
            outs.append(p)
        return (w, *outs)
    shape = ("tokens", 3, E) if variant == "topk_middle_axis" else ("tokens", E)
    return sc.trace(f, sc.TensorSpec(shape, dtype))


def test_fuse_router_property():
    check_pass("fuse-router", examples=80, graph_strategy=routers(), seed=3)


def test_fuse_router_property_inside_random_graphs():
    """Random graphs that may hold softmax / topk / sum / div chains, and sc.softmax_topk itself."""
    check_pass("fuse-router", examples=40, ops=["sc.softmax", "sc.topk", "sc.sum", "sc.div", "sc.softmax_topk",
                                                   "sc.moe_dispatch"], seed=4)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_what_is_fused(variant, data):
    g = data.draw(routers(variant))
    pm = PassManager.parse("fuse-router")
    out = pm.run(g)
    names = [o.name for o in out.main.ops]
    expect = VARIANTS[variant]
    if expect is None:
        assert "sc.softmax_topk" not in names and pm.report[-1].stats["routers fused"] == 0
        return
    fused = [o for o in out.main.ops if o.name == "sc.softmax_topk"]
    assert len(fused) == 1 and "sc.softmax" not in names and "sc.topk" not in names
    assert fused[0].attrs["normalize"] == (expect == "normalized")
    if expect == "normalized":
        assert "sc.sum" not in names and "sc.div" not in names


@pytest.mark.parametrize("norm", [True, False])
def test_default_pipeline_fuses_the_nn_moe_router(norm):
    moe = sc.nn.MoE(32, 48, 8, 2, router="softmax", norm_topk_prob=norm, naming="mixtral", seed=1)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 32), "float32"))
    m = sc.compile(g, progress=False)
    kernels = [s.kernel for s in m.executables["main"].plan.steps]
    assert kernels[:3] == ["linear_f32", "softmax_topk_f32", "moe_dispatch"], kernels
    assert not any(k.startswith(("softmax_f32", "topk", "sum", "div")) for k in kernels), kernels
    for tokens in (1, 7):
        x = np.random.default_rng(tokens).standard_normal((tokens, 32)).astype(np.float32)
        assert compare_outputs(sc.interpret(g, x), m.run(x), ["y"]) is None


def test_sigmoid_router_is_left_alone():
    moe = sc.nn.MoE(32, 48, 8, 3, router="sigmoid", n_group=4, topk_group=2, score_bias=True,
                    naming="deepseek", seed=3)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 32), "float32"))
    out = PassManager.parse("default").run(g)
    assert "sc.softmax_topk" not in {o.name for o in out.main.ops}
