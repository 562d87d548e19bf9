"""Ops with regions (sc.fused): build, print, parse, verify and interpret."""
import numpy as np
import pytest

import sparsec as sc
from sparsec.ir import Block, Builder, Region


def _fused_graph():
    def f(x, y):
        return sc.ops.exp(x) + y
    g = sc.trace(f, sc.TensorSpec(("tokens", 4), "float32"), sc.TensorSpec((1, 4), "float32"))
    fn = g.main
    exp_op, add_op, _ = fn.ops
    body = Block([a.type for a in fn.args])
    b = Builder(body)
    s = b.emit("sc.add", b.emit("sc.exp", body.args[0]), body.args[1])
    b.create("sc.yield", [s])
    fused = Builder.before_op(exp_op).create("sc.fused", list(fn.args), {}, regions=[Region([body])])
    add_op.result.replace_all_uses_with(fused.result)
    add_op.erase()
    exp_op.erase()
    return g.verify()


def test_fused_round_trip_and_semantics():
    g = _fused_graph()
    text = str(g)
    assert '"sc.fused"(%x, %y) ({' in text and '"sc.yield"' in text
    g2 = sc.parse(text)
    assert str(g2) == text
    assert g2.main.ops[0].result.type.shape == ("tokens", 4)  # symbolic dim re-derived through the region
    x = np.random.rand(3, 4).astype("float32")
    y = np.random.rand(1, 4).astype("float32")
    (out,) = sc.interpret(g2, x, y)
    np.testing.assert_allclose(out, np.exp(x) + y, rtol=1e-6)


def test_region_argument_types_must_match_operands():
    text = str(_fused_graph()).replace("^bb0(%arg0: tensor<?x4xf32>, %arg1: tensor<1x4xf32>)",
                                       "^bb0(%arg0: tensor<?x4xf32>, %arg1: tensor<2x4xf32>)")
    with pytest.raises(sc.ParseError, match=r"block argument %arg1 has type tensor<2x4xf32>"):
        sc.parse(text)


def test_region_must_end_with_yield():
    text = str(_fused_graph())
    lines = [ln for ln in text.splitlines() if '"sc.yield"' not in ln]
    with pytest.raises(sc.ParseError, match="must end with sc.yield"):
        sc.parse("\n".join(lines))


def test_verifier_rejects_erasing_a_used_value():
    g = _fused_graph()
    fused = g.main.ops[0]
    with pytest.raises(sc.VerifyError, match="still has 1 uses"):
        fused.erase()
