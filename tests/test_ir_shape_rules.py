"""Every op's shape rule agrees with its NumPy reference: on random graphs, each op's raw
reference output has exactly the shape (symbolic dims evaluated) and dtype its rule declares."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsec.testing as sct
from sparsec.ir import TensorType
from sparsec.ir.opdef import REGISTRY
from sparsec.ir.types import bound_dims


def _check_block(block, env, weights, bindings, seen):
    for op in block.ops:
        if op.name in ("func.return", "sc.yield"):
            return
        if op.name == "sc.param":
            outs = (weights[op.attrs["name"]],)
        else:
            args = [env[id(v)] for v in op.operands]
            attrs = dict(op.attrs)
            if op.regions:
                attrs.update(regions=op.regions, weights=weights)
            with np.errstate(all="ignore"):
                outs = op.opdef.run_reference(args, attrs)  # raw: the interpreter would cast
        assert len(outs) == len(op.results), f"{op.name}: {len(outs)} reference outputs for {len(op.results)}"
        for r, o in zip(op.results, outs):
            o = np.asarray(o)
            t = r.type
            if isinstance(t, TensorType):
                want = t.concrete(bindings)
                assert o.shape == want, f"{op.name}: reference shape {o.shape}, rule says {t.pretty()} = {want}"
                assert o.dtype == t.dtype.np, f"{op.name}: reference dtype {o.dtype}, rule says {t.dtype}"
            env[id(r)] = o
        seen.add(op.name)


def _check(g, xs):
    bindings = sct.bindings_of(g, xs)
    env = {id(a): x for a, x in zip(g.main.args, xs)}
    seen = set()
    with bound_dims(bindings):
        _check_block(g.main.body, env, g.weights, bindings, seen)
    return seen


@given(sct.graphs(max_ops=8), st.data())
def test_shape_rules_match_references(g, data):
    _check(g, data.draw(sct.inputs_for(g)))


@given(sct.graphs(max_ops=5, dtypes=("f32", "f16", "bf16", "f64", "i8", "i32", "i64", "ui8")), st.data())
def test_shape_rules_match_references_every_dtype(g, data):
    _check(g, data.draw(sct.inputs_for(g)))


@pytest.mark.parametrize("name", [n for n in sct.available_ops()])
def test_shape_rule_of_each_op(name):
    """Per op, so a mismatch names the op: graphs drawn with only ``name`` (plus helpers)."""
    @settings(max_examples=10)
    @given(sct.graphs(max_ops=3, ops=[name]), st.data())
    def check(g, data):
        _check(g, data.draw(sct.inputs_for(g)))
    check()


@pytest.mark.slow
@settings(max_examples=300)
@given(sct.graphs(max_ops=16, dtypes=("f32", "f16", "i32", "i64")), st.data())
def test_shape_rules_match_references_many(g, data):
    _check(g, data.draw(sct.inputs_for(g)))


def test_every_op_has_a_reference_and_a_rule():
    for name, d in REGISTRY.items():
        assert d.reference is not None, f"{name} has no NumPy reference"
        assert d.infer is not None or d.declared_result, f"{name} has no shape rule"
