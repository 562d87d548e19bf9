"""Random well-typed graphs (sc.testing.graphs): text round trip, verifier, generator coverage,
and the equivalence checker itself."""
import numpy as np
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

import sparsec as sc
import sparsec.testing as sct
from sparsec.ir.opdef import REGISTRY

ALL_DTYPES = ("f32", "f16", "bf16", "f64", "i8", "i32", "i64", "ui8")


@given(sct.graphs(max_ops=8))
def test_print_parse_print_is_identical(g):
    text = str(g)
    assert str(sc.parse(text)) == text


@pytest.mark.slow
@settings(max_examples=300)
@given(sct.graphs(max_ops=20, dtypes=ALL_DTYPES))
def test_print_parse_print_is_identical_many(g):
    text = str(g)
    assert str(sc.parse(text)) == text


@given(sct.graphs(max_ops=6, dtypes=ALL_DTYPES))
def test_round_trip_with_every_dtype(g):
    text = str(g)
    assert str(sc.parse(text)) == text


@given(sct.graphs(max_ops=8, dtypes=("f32", "f16", "i32", "i64")))
def test_verifier_accepts_generated_graphs(g):
    assert sc.verify(g) is g


@given(sct.graphs(max_ops=6), st.data())
def test_parsed_graph_computes_the_same(g, data):
    """Parsing keeps attributes, constants and operand order: same outputs on the same inputs."""
    xs = data.draw(sct.inputs_for(g))
    sct.assert_equivalent(g, sct.clone(g), inputs=[xs])


@given(sct.graphs(max_ops=8), st.data())
def test_generated_graphs_run_and_keep_declared_types(g, data):
    xs = data.draw(sct.inputs_for(g))
    outs = sct.run(g, xs)
    b = sct.bindings_of(g, xs)
    for v, o in zip(g.main.outputs, outs):
        assert o.shape == v.type.concrete(b)
        assert o.dtype == v.type.dtype.np


def test_every_registered_op_has_a_generator_or_a_documented_exclusion():
    missing = sorted(set(REGISTRY) - set(sct.GENERATORS) - set(sct.EXCLUDED))
    assert not missing, f"ops without a generator in sparsec/testing/generators.py: {missing}"
    stale = sorted(n for n in sct.EXCLUDED if n not in REGISTRY)
    assert not stale, f"EXCLUDED lists ops that are not declared: {stale}"
    both = sorted(set(sct.EXCLUDED) & set(sct.GENERATORS))
    assert not both, f"ops both excluded and generated: {both}"
    assert all(reason.strip() for reason in sct.EXCLUDED.values())


@pytest.mark.parametrize("name", sct.available_ops())
def test_generator_produces_its_op(name):
    """Each generator actually emits its op (a generator that always says 'nothing fits' is a bug)."""
    g = find(sct.graphs(max_ops=3, ops=[name]), lambda g: any(op.name == name for op in g.walk()),
             settings=settings(max_examples=300, database=None, phases=[Phase.generate], derandomize=True))
    sc.verify(g)


def test_params_carry_weights_of_their_declared_type():
    g = find(sct.graphs(max_ops=4, ops=["sc.grouped_matmul"]),
             lambda g: any(op.name == "sc.param" for op in g.walk()),
             settings=settings(database=None, phases=[Phase.generate], derandomize=True))
    for name, t in g.params().items():
        w = g.weights[name]
        assert w.shape == t.shape and w.dtype == t.dtype.np


def test_graphs_rejects_unknown_ops():
    with pytest.raises(ValueError, match="sc.nope"):
        find(sct.graphs(ops=["sc.nope"]), lambda g: True, settings=settings(database=None))


def test_shrinking_gives_a_small_graph():
    """A property failing on any graph with a top-level sc.mul shrinks to very few ops. (Top level:
    with ``walk()`` an ``sc.fused`` region holding a mul also counts, and the shrinker can stop at
    a local minimum around such a region, which depends on the list of ops drawn from.)"""
    g = find(sct.graphs(max_ops=12), lambda g: any(op.name == "sc.mul" for op in g.main.ops),
             settings=settings(max_examples=500, database=None, derandomize=True))
    assert sum(1 for op in g.main.ops if op.name not in ("sc.constant", "func.return")) <= 3, str(g)


# -- the equivalence checker ---------------------------------------------------------------------

def _add_graph(op_name="sc.add"):
    f = sc.ir.Function("main", [sc.ir.TensorType(("tokens", 4), "f32")] * 2, ["x", "y"])
    b = sc.ir.Builder(f.body)
    r = b.emit(op_name, *f.args)
    b.create("func.return", [r])
    return sc.Graph([f])


def test_assert_equivalent_passes_on_equal_graphs():
    sct.assert_equivalent(_add_graph(), _add_graph(), examples=5)


def test_assert_equivalent_reports_first_difference_and_both_graphs():
    with pytest.raises(AssertionError) as e:
        sct.assert_equivalent(_add_graph("sc.add"), _add_graph("sc.sub"), examples=3)
    msg = str(e.value)
    assert "output 0" in msg and "max abs error" in msg
    assert '"sc.add"' in msg and '"sc.sub"' in msg


def test_assert_equivalent_tolerates_rounding_but_not_more():
    xs = [(np.ones((2, 4), np.float32), np.ones((2, 4), np.float32))]
    assert sct.compare_outputs((np.float32([1.0]),), (np.float32([1.0 + 1e-7]),)) is None
    assert "max abs error" in sct.compare_outputs((np.float32([1.0]),), (np.float32([1.01]),))
    assert sct.compare_outputs((np.float32([np.nan]),), (np.float32([np.nan]),)) is None
    assert sct.compare_outputs((np.int64([1, 2]),), (np.int64([1, 3]),)) is not None
    assert "shape" in sct.compare_outputs((np.zeros(2),), (np.zeros(3),))
    sct.assert_equivalent(_add_graph(), _add_graph(), inputs=xs)


@given(sct.graphs(max_ops=4), st.data())
def test_weights_for_matches_param_types(g, data):
    w = data.draw(sct.weights_for(g))
    assert set(w) == set(g.params())
    for name, t in g.params().items():
        assert w[name].shape == t.shape and w[name].dtype == t.dtype.np


@given(sct.graphs(max_ops=4, symbolic=True), st.data())
def test_inputs_bind_symbolic_dims_consistently(g, data):
    xs = data.draw(sct.inputs_for(g, max_size=3))
    b = sct.bindings_of(g, xs)
    for a, x in zip(g.main.args, xs):
        assert x.shape == a.type.concrete(b)
        assert x.dtype == a.type.dtype.np
    assert all(1 <= n <= 3 for n in b.values())


def test_testing_is_public_as_sc_testing():
    assert sc.testing is sct
    assert callable(sc.testing.graphs) and callable(sc.testing.assert_equivalent)


def test_bf16_non_finite_constants_round_trip():
    import ml_dtypes
    a = np.array([np.inf, -np.inf, np.nan, 1.5], ml_dtypes.bfloat16)
    g = sc.trace(lambda x: x + sc.ops.constant(a), sc.TensorSpec((4,), "bfloat16"))
    text = str(g)
    assert "0x7F80" in text and str(sc.parse(text)) == text
