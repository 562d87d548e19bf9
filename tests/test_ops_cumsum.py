"""sc.cumsum: shape rule, the reference against ONNX's own CumSum reference and torch, the CPU
kernel against the interpreter (random graphs and drawn shapes/axes/dtypes, bit-exact), and the
LLaVA use (image-token positions from cumsum(mask) - 1)."""
import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from opcheck import trace_run
from test_cpu_elementwise import T, check_graph, check_op_on_random_graph, graph_of

import sparsec as sc
import sparsec.testing as sct
from sparsec.ir.opdef import REGISTRY
from sparsec.lower.cpu import run_naive

CUMSUM = REGISTRY["sc.cumsum"]
OWNED = {"sc.cumsum"}
DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "bf16": ml_dtypes.bfloat16, "i64": np.int64,
          "i32": np.int32, "i8": np.int8}




def test_generator_produces_cumsum():
    g = find(sct.graphs(max_ops=3, ops=["sc.cumsum"]), lambda g: any(op.name == "sc.cumsum" for op in g.walk()),
             settings=settings(max_examples=300, database=None, phases=[Phase.generate], derandomize=True))
    sc.verify(g)
    assert str(sc.parse(str(g))) == str(g)


# ---------------------------------------------------------------------------------------------
# shape rule and API

def test_shape_rule_and_round_trip_with_symbolic_dims():
    x = np.arange(12, dtype=np.int64).reshape(3, 4)
    g, (out,) = trace_run(lambda x: sc.ops.cumsum(x, 1, exclusive=True, reverse=True), x, dims=[("batch", "seq")])
    assert g.main.body.terminator.operands[0].type.shape == ("batch", "seq")
    np.testing.assert_array_equal(out, np.flip(np.cumsum(np.flip(x, 1), 1), 1) - x)  # reverse, minus itself


@pytest.mark.parametrize("spec,axis,match", [
    (((), "float32"), 0, "cumsum needs a tensor of rank >= 1"),
    (((3, 4), "float32"), 2, "axis 2 is out of range for rank 2"),
    (((3, 4), "float32"), -3, "axis -3 is out of range for rank 2"),
])
def test_shape_rule_errors(spec, axis, match):
    with pytest.raises(sc.SparsecError, match=match) as e:
        sc.trace(lambda x: sc.ops.cumsum(x, axis), sc.TensorSpec(*spec))
    assert "sc.cumsum" in str(e.value) and "test_ops_cumsum.py" in str(e.value)


def test_op_refuses_booleans_and_the_api_casts_them_like_torch():
    g = sc.trace(lambda x: sc.ops.cumsum(x, 0), sc.TensorSpec((3,), "int64"))
    text = str(g).replace("xi64", "xi1")
    with pytest.raises(sc.SparsecError, match="sc.cumsum does not take booleans"):
        sc.parse(text)
    mask = np.array([[False, True, True, False, True]])
    g, (out,) = trace_run(lambda m: sc.ops.cumsum(m, -1), mask)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, torch.cumsum(torch.from_numpy(mask), -1).numpy())


def test_llava_image_token_positions():
    """index = cumsum(mask) - 1 places the k-th image feature at the k-th image token."""
    ids = np.array([[5, 9, 9, 9, 7, 9, 2]], np.int64)
    feats = np.arange(4 * 3, dtype=np.float32).reshape(4, 3)

    def merge(ids, feats):
        mask = sc.ops.equal(ids, 9)
        idx = sc.ops.maximum(sc.ops.cumsum(mask, -1) - 1, 0)
        gathered = sc.ops.take(feats, sc.ops.reshape(idx, (-1,)), axis=0)
        return sc.ops.where(sc.ops.reshape(mask, (-1, 1)), gathered, 0.0)

    _, (out,) = trace_run(merge, ids, feats)
    exp = np.zeros((7, 3), np.float32)
    exp[ids[0] == 9] = feats
    np.testing.assert_array_equal(out, exp)


# ---------------------------------------------------------------------------------------------
# reference against ONNX's reference implementation and torch

def onnx_cumsum(x, axis, exclusive, reverse):
    node = helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=int(exclusive), reverse=int(reverse))
    et = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", et, x.shape),
                                            helper.make_tensor_value_info("axis", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", et, x.shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return ReferenceEvaluator(model).run(None, {"x": x, "axis": np.array(axis, np.int64)})[0]


@given(x=hnp.arrays(st.sampled_from([np.float64, np.int64, np.int32]), hnp.array_shapes(min_dims=1, max_dims=4),
                    elements=st.integers(-100, 100)),
       data=st.data(), exclusive=st.booleans(), reverse=st.booleans())
def test_reference_matches_onnx(x, data, exclusive, reverse):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    got = CUMSUM.run_reference([x], {"axis": axis, "exclusive": exclusive, "reverse": reverse})[0]
    assert got.dtype == x.dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, onnx_cumsum(x, axis, exclusive, reverse))


def test_reference_floats_accumulate_in_f64_and_integers_wrap():
    x = np.full(3000, 0.1, np.float32)
    got = CUMSUM.run_reference([x], {"axis": 0, "exclusive": False, "reverse": False})[0]
    exact = np.cumsum(np.full(3000, np.float64(np.float32(0.1))))
    np.testing.assert_array_equal(got, exact.astype(np.float32))  # one rounding per element
    i8 = np.full(5, 100, np.int8)
    got = CUMSUM.run_reference([i8], {"axis": 0, "exclusive": False, "reverse": False})[0]
    np.testing.assert_array_equal(got, (np.arange(1, 6) * 100).astype(np.int64).astype(np.int8))
    bf = np.array([1, 2 ** -9, 2 ** -9, 2 ** -9], ml_dtypes.bfloat16)
    got = CUMSUM.run_reference([bf], {"axis": 0, "exclusive": False, "reverse": False})[0]
    np.testing.assert_array_equal(got.astype(np.float64),
                                  np.cumsum(bf.astype(np.float64)).astype(ml_dtypes.bfloat16).astype(np.float64))


# ---------------------------------------------------------------------------------------------
# CPU kernel

@settings(max_examples=12)
@given(data=st.data())
def test_kernel_matches_reference_on_random_graphs(data):
    check_op_on_random_graph(data, "sc.cumsum", OWNED, ("f32", "i64", "bf16"), max_ops=3)


@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=7), dt=st.sampled_from(sorted(DTYPES)),
       data=st.data(), exclusive=st.booleans(), reverse=st.booleans(), symbolic=st.booleans())
def test_kernel_is_bit_exact(shape, dt, data, exclusive, reverse, symbolic):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x = (rng.standard_normal(shape) * 40).astype(DTYPES[dt])
    in_shape = ("batch",) + shape[1:] if symbolic else shape
    g = graph_of("sc.cumsum", [T(in_shape, dt)], {"axis": axis, "exclusive": exclusive, "reverse": reverse})
    exp = sc.interpret(g, x)[0]
    got = run_naive(g, x)[0]
    assert "sc.cumsum" in run_naive.last_kernels
    assert got.dtype == exp.dtype and got.shape == exp.shape
    assert np.array_equal(got.view(np.uint8), exp.view(np.uint8)), (got, exp)  # sequential sums, same order


@pytest.mark.parametrize("shape,axis", [((64, 4096), -1), ((4096, 64), 0), ((8, 300, 40), 1)])
def test_kernel_parallel_sizes(shape, axis):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    for ex in (False, True):
        g = graph_of("sc.cumsum", [T(shape, "f32")], {"axis": axis, "exclusive": ex, "reverse": not ex})
        check_graph(g, [x], "sc.cumsum", OWNED)


def test_compiled_cumsum_with_symbolic_seq():
    cm = sc.compile(lambda ids: sc.ops.cumsum(sc.ops.equal(ids, 3), -1) - 1, sc.TensorSpec((1, "seq"), "int64"))
    for n in (1, 6, 40):
        ids = np.random.default_rng(n).integers(0, 5, (1, n)).astype(np.int64)
        out = cm(ids)
        np.testing.assert_array_equal(out, np.cumsum(ids == 3, -1) - 1)
