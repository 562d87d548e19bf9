"""For pass authors: check your own graph rewrite against the reference interpreter on random
well-typed graphs (hypothesis), and see a wrong rewrite caught with a shrunk counterexample.

    python examples/check_a_rewrite.py
"""
from hypothesis import given, settings

import sparsec as sc
from sparsec.ir import Builder


def square_to_mul(g: sc.Graph) -> sc.Graph:
    """Rewrite sc.square(x) into sc.mul(x, x): a correct rewrite."""
    for op in list(g.walk()):
        if op.name == "sc.square":
            x = op.operands[0]
            new = Builder.before_op(op).create("sc.mul", [x, x])
            op.result.replace_all_uses_with(new.result)
            op.erase()
    return g.verify()


def exp_to_square(g: sc.Graph) -> sc.Graph:
    """A wrong rewrite (exp(x) -> x*x): the checker must find a counterexample."""
    for op in list(g.walk()):
        if op.name == "sc.exp":
            x = op.operands[0]
            new = Builder.before_op(op).create("sc.mul", [x, x])
            op.result.replace_all_uses_with(new.result)
            op.erase()
    return g.verify()


@settings(max_examples=40, deadline=None)
@given(sc.testing.graphs(max_ops=6, ops=["sc.square", "sc.add", "sc.tanh", "sc.sum"]))
def check_square_to_mul(g):
    sc.testing.assert_equivalent(g, square_to_mul(sc.testing.clone(g)))


@settings(max_examples=40, deadline=None, print_blob=False)
@given(sc.testing.graphs(max_ops=6, ops=["sc.exp", "sc.add", "sc.tanh"]))
def check_exp_to_square(g):
    sc.testing.assert_equivalent(g, exp_to_square(sc.testing.clone(g)))


check_square_to_mul()
print("square -> mul: equivalent on 40 random graphs")
try:
    check_exp_to_square()
except AssertionError as e:
    print("exp -> square: counterexample found, as expected:")
    print(str(e).splitlines()[0])
else:
    raise SystemExit("the wrong rewrite was not caught")
