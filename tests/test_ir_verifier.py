"""Verifier unit tests: graphs built with the Builder, then corrupted, raise VerifyError naming the op."""
import numpy as np
import pytest

import sparsec as sc
from sparsec.ir import Builder, Function, Graph, Operation, TensorType


def _graph():
    f = Function("main", [TensorType(("tokens", 4), "f32"), TensorType((4,), "f32")], ["x", "w"])
    b = Builder(f.body)
    a = b.emit("sc.add", f.args[0], f.args[1])
    e = b.emit("sc.exp", a)
    b.create("func.return", [e])
    return Graph([f]), f


def test_sound_graph_verifies():
    g, _ = _graph()
    assert sc.verify(g) is g


def test_wrong_result_type():
    g, f = _graph()
    f.ops[1].results[0].type = TensorType(("tokens", 5), "f32")
    with pytest.raises(sc.VerifyError, match=r"sc\.exp.*result types"):
        sc.verify(g)


def test_wrong_result_dtype():
    g, f = _graph()
    f.ops[0].results[0].type = TensorType(("tokens", 4), "f16")
    with pytest.raises(sc.VerifyError, match=r"sc\.add"):
        sc.verify(g)


def test_use_before_def():
    g, f = _graph()
    exp = f.ops[1]
    f.body.remove(exp)
    f.body.insert(0, exp)
    with pytest.raises(sc.VerifyError, match=r"sc\.exp.*before it is defined"):
        sc.verify(g)


def test_stale_use_list():
    g, f = _graph()
    f.ops[0].results[0].uses.clear()
    with pytest.raises(sc.VerifyError, match=r"sc\.exp.*use list"):
        sc.verify(g)


def test_stale_use_of_a_result():
    g, f = _graph()
    add = f.ops[0]
    add.results[0].uses.append((f.ops[1], 5))
    with pytest.raises(sc.VerifyError, match=r"sc\.add.*stale use"):
        sc.verify(g)


def test_wrong_operand_count():
    g, f = _graph()
    exp = f.ops[1]
    exp._add_operand(f.args[0])
    with pytest.raises(sc.VerifyError, match=r"sc\.exp.*2 operands"):
        sc.verify(g)


def test_unknown_op():
    g, f = _graph()
    op = Operation("sc.frobnicate", [f.args[0]], [f.args[0].type])
    f.body.insert(0, op)
    with pytest.raises(sc.VerifyError, match=r"sc\.frobnicate.*unknown op"):
        sc.verify(g)


def test_bad_attribute():
    g, f = _graph()
    f.ops[1].attrs["axis"] = 3
    with pytest.raises(sc.VerifyError, match=r"sc\.exp.*'axis'"):
        sc.verify(g)


def test_missing_terminator():
    g, f = _graph()
    f.body.ops.pop()
    with pytest.raises(sc.VerifyError, match="func.return"):
        sc.verify(g)


def test_terminator_not_last():
    g, f = _graph()
    ret = f.ops[-1]
    f.body.remove(ret)
    f.body.insert(0, Operation("func.return", [f.args[0]], []))
    f.body.append(ret)
    with pytest.raises(sc.VerifyError, match="terminator"):
        sc.verify(g)


def test_param_type_differs_from_weight_store():
    f = Function("main", [TensorType((2, 4), "f32")], ["x"])
    b = Builder(f.body)
    w = b.create("sc.param", [], {"name": "w"}, result_types=[TensorType((4, 3), "f32")]).result
    b.create("func.return", [b.emit("sc.matmul", f.args[0], w)])
    g = Graph([f], weights={"w": np.zeros((3, 4), np.float32)})
    with pytest.raises(sc.VerifyError, match="param 'w'"):
        sc.verify(g)
    g.weights["w"] = np.zeros((4, 3), np.float32)
    sc.verify(g)


def test_param_with_symbolic_type():
    f = Function("main", [TensorType((2, 4), "f32")], ["x"])
    b = Builder(f.body)
    w = b.create("sc.param", [], {"name": "w"}, result_types=[TensorType(("n", 4), "f32")]).result
    b.create("func.return", [w])
    with pytest.raises(sc.VerifyError, match=r"sc\.param.*static"):
        sc.verify(Graph([f]))


def test_builder_rejects_ill_typed_ops_naming_the_op():
    f = Function("main", [TensorType((2, 4), "f32"), TensorType((3,), "f32")], ["x", "y"])
    with pytest.raises(sc.VerifyError, match=r"sc\.add.*broadcast"):
        Builder(f.body).emit("sc.add", *f.args)
    with pytest.raises(sc.VerifyError, match=r"sc\.add: got 1 operands"):
        Builder(f.body).emit("sc.add", f.args[0])
