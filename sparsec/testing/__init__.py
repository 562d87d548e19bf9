"""sc.testing: hypothesis strategies for random well-typed graphs, inputs and weights that fit
them, and an equivalence checker built on the reference interpreter.

    from hypothesis import given
    import sparsec as sc

    @given(sc.testing.graphs(max_ops=6))
    def test_roundtrip(g):
        assert str(sc.parse(str(g))) == str(g)

    sc.testing.assert_equivalent(g, rewritten, examples=10)
"""
from .context import GeneratorBug, GraphContext
from .equivalence import TOLERANCES, assert_equivalent, clone, compare_outputs, run
from .generators import EXCLUDED, GENERATORS, generator
from .passcheck import check_pass
from .strategies import (SYMBOLS, available_ops, bindings_of, graph_symbols, graphs, inputs_for, random_array,
                         random_inputs, random_weights, weights_for)

__all__ = [
    "EXCLUDED", "GENERATORS", "GeneratorBug", "GraphContext", "SYMBOLS", "TOLERANCES", "assert_equivalent",
    "available_ops", "bindings_of", "check_pass", "clone", "compare_outputs", "generator", "graph_symbols", "graphs",
    "inputs_for", "random_array", "random_inputs", "random_weights", "run", "weights_for",
]
