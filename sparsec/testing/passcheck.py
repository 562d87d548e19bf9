"""``check_pass``: property-test a pass (or pipeline) against the reference interpreter.

    sc.testing.check_pass(MyPass(), examples=300)
    sc.testing.check_pass("cse,dce", examples=200)

For random well-typed graphs drawn by ``graphs()``, the pass output must verify, keep the
function's signature, and compute the same outputs under ``sc.interpret`` on random inputs
(symbolic dims bound to random sizes). Hypothesis shrinks a failure to a small graph; the
AssertionError shows it as IR text before and after the pass.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..errors import SparsecError
from .equivalence import compare_outputs, run
from .strategies import graphs, inputs_for


def _as_manager(p):
    from ..passes import Pass, PassManager
    if isinstance(p, PassManager):
        return p
    if isinstance(p, str):
        return PassManager.parse(p, verify_each=True)
    if isinstance(p, Pass):
        return PassManager([p], verify_each=True)
    if isinstance(p, (list, tuple)):
        return PassManager(list(p), verify_each=True)
    raise TypeError(f"check_pass: expected a Pass, a PassManager or pipeline text, got {type(p).__name__}")


def check_pass(p, examples: int = 200, max_ops: int = 8, ops=None, dtypes=("f32", "i64"), rtol=None, atol=None,
               seed: int | None = None, graph_strategy=None) -> None:
    """Assert that ``p`` preserves the meaning of random graphs (see the module docstring).

    ``ops`` restricts the drawn ops (to aim at what the pass rewrites); ``graph_strategy``
    replaces ``graphs(...)`` altogether. ``seed`` makes the run reproducible.
    """
    pm = _as_manager(p)
    strategy = graph_strategy if graph_strategy is not None else graphs(max_ops=max_ops, ops=ops, dtypes=dtypes)
    cfg = settings(max_examples=examples, deadline=None, database=None, derandomize=seed is not None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                          HealthCheck.filter_too_much])

    @cfg
    @given(strategy, st.data())
    def prop(g, data):
        before = str(g)
        try:
            g2 = pm.run(g)
        except SparsecError as e:
            raise AssertionError(f"pipeline '{pm.pipeline}' failed: {e}\n--- input IR:\n{before}") from None
        if str(g) != before:
            raise AssertionError(f"pipeline '{pm.pipeline}' changed its input graph (PassManager.run must copy)")
        sig1 = ([str(t) for t in g.main.input_types], [str(t) for t in g.main.output_types])
        sig2 = ([str(t) for t in g2.main.input_types], [str(t) for t in g2.main.output_types])
        if sig1 != sig2:
            raise AssertionError(f"pipeline '{pm.pipeline}' changed the signature {sig1} -> {sig2}\n"
                                 f"--- input IR:\n{before}--- output IR:\n{g2}")
        arrays = data.draw(inputs_for(g), label="inputs")
        expected = run(g, arrays)
        try:
            actual = run(g2, arrays)
        except SparsecError as e:
            raise AssertionError(f"the graph after '{pm.pipeline}' fails to run: {e}\n"
                                 f"--- input IR:\n{before}--- output IR:\n{g2}") from None
        msg = compare_outputs(expected, actual, g.main.output_names(), rtol, atol)
        if msg is not None:
            shapes = ", ".join(f"{tuple(a.shape)}:{a.dtype}" for a in arrays)
            raise AssertionError(f"pipeline '{pm.pipeline}' changed the result on inputs ({shapes}): {msg}\n"
                                 f"--- input IR:\n{before}--- output IR:\n{g2}")

    if seed is not None:
        prop = __import__("hypothesis").seed(seed)(prop)
    prop()
