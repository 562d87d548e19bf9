"""For pass authors: write a pass as a frozen dataclass (its fields are its options), register
it, run it in a pipeline, and prove it with sc.testing.check_pass on random graphs.

    python examples/write_a_pass.py
"""
from dataclasses import dataclass

import sparsec as sc
from sparsec.passes import Pass, PassManager, Pattern, apply_patterns, option, register_pass


def square_to_mul(op, rw) -> bool:
    """sc.square(x) -> sc.mul(x, x)."""
    x = op.operands[0]
    rw.replace(op, rw.create(op, "sc.mul", [x, x]).results)
    return True


@register_pass
@dataclass(frozen=True)
class ExpandSquare(Pass):
    """rewrite sc.square into sc.mul (an example pass with one option)"""
    name = "expand-square"
    max_rank: int = option(8, doc="only rewrite squares of at most this rank")

    def run(self, graph, stats):
        pattern = Pattern("sc.square", lambda op, rw: op.result.type.rank <= self.max_rank and square_to_mul(op, rw),
                          name="square-to-mul")
        apply_patterns(graph, [pattern], stats)


# use it in a textual pipeline, with an option, like the built-in passes
g = sc.trace(lambda x: sc.ops.square(x) + 1.0, sc.TensorSpec(("tokens", 4), "float32"))
pm = PassManager.parse("expand-square{max-rank=4},cse,dce")
g2 = pm.run(g)
print(pm.format_report())
assert any(op.name == "sc.mul" for op in g2.walk()) and not any(op.name == "sc.square" for op in g2.walk())

# prove it: random well-typed graphs (aimed at squares), interpreter equivalence, shrinking
sc.testing.check_pass(ExpandSquare(), examples=100, ops=["sc.square", "sc.add", "sc.mul", "sc.exp"])
sc.testing.check_pass("expand-square,cse,dce", examples=50)
print("expand-square: 150 random graphs checked against the interpreter")


@dataclass(frozen=True)
class WrongSquare(Pass):
    """a wrong rewrite: square(x) -> x + x"""
    name = "wrong-square"

    def run(self, graph, stats):
        def wrong(op, rw):
            x = op.operands[0]
            rw.replace(op, rw.create(op, "sc.add", [x, x]).results)
            return True
        apply_patterns(graph, [Pattern("sc.square", wrong)], stats)


try:
    sc.testing.check_pass(WrongSquare(), examples=200, ops=["sc.square", "sc.add"])
except AssertionError as e:
    print("wrong-square is caught; the shrunk counterexample starts:")
    print("\n".join(str(e).splitlines()[:3]))
else:
    raise SystemExit("check_pass missed a wrong pass")
