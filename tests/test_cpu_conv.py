"""CPU kernel of sc.conv2d against the reference interpreter: random graphs, hypothesis-drawn
shapes/strides/paddings/dilations/groups/batches, the patch-embedding fast path, the GEMM paths
(tiles, panels, BLAS, grouped), half types, and sc.compile end to end (symbolic batch, quantize)."""
import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cpu_elementwise import T, check_graph, check_op_on_random_graph, graph_of
from test_ops_conv import conv_cases  # also registers the sc.conv2d random-graph generator

import sparsec as sc
from sparsec.lower.cpu import lower_op
from sparsec.runtime.cpu.linalg import BLAS_MIN_ROWS

OWNED = {"sc.conv2d"}
DTYPES = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "bf16": ml_dtypes.bfloat16}


def conv_graph(case, dt, batch=None):
    """A one-op graph for a ``conv_cases`` case (``batch``: a symbolic batch dim name)."""
    xs = list(case["x"])
    if batch is not None:
        xs[0] = batch
    types = [T(tuple(xs), dt), T(case["w"], dt)] + ([T((case["w"][0],), dt)] if case["bias"] else [])
    attrs = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    return graph_of("sc.conv2d", types, attrs)


def conv_inputs(case, dt, seed=0):
    rng = np.random.default_rng(seed)
    npdt = DTYPES[dt]
    ins = [rng.uniform(-2, 2, case["x"]).astype(npdt), rng.uniform(-1, 1, case["w"]).astype(npdt)]
    if case["bias"]:
        ins.append(rng.uniform(-1, 1, case["w"][0]).astype(npdt))
    return ins


def kernel_of(g):
    return lower_op(next(op for op in g.main.ops if op.name == "sc.conv2d"))


# ---------------------------------------------------------------------------------------------
# property tests

@settings(max_examples=10)
@given(data=st.data())
def test_op_matches_reference_on_random_graphs(data):
    check_op_on_random_graph(data, "sc.conv2d", OWNED, ("f32", "bf16"), max_ops=3)


@given(case=conv_cases(), dt=st.sampled_from(["f32", "bf16"]), symbolic=st.booleans())
def test_kernel_matches_reference(case, dt, symbolic):
    g = conv_graph(case, dt, "batch" if symbolic else None)
    check_graph(g, conv_inputs(case, dt), "sc.conv2d", OWNED)


@pytest.mark.slow
@settings(max_examples=max(60, settings.default.max_examples))
@given(data=st.data())
def test_op_matches_reference_all_dtypes(data):
    check_op_on_random_graph(data, "sc.conv2d", OWNED, ("f32", "f64", "f16", "bf16"), max_ops=4, max_size=6)


@pytest.mark.slow
@settings(max_examples=max(100, settings.default.max_examples))
@given(case=conv_cases(max_hw=24), dt=st.sampled_from(sorted(DTYPES)), symbolic=st.booleans())
def test_kernel_matches_reference_all_dtypes(case, dt, symbolic):
    g = conv_graph(case, dt, "batch" if symbolic else None)
    check_graph(g, conv_inputs(case, dt), "sc.conv2d", OWNED)


# ---------------------------------------------------------------------------------------------
# the forms and paths

def _case(x, w, bias=True, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    return dict(x=x, w=w, bias=bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("n", [1, 3])
def test_patch_embedding_fast_path_against_torch(n):
    case = _case((n, 3, 64, 48), (96, 3, 16, 16), stride=(16, 16))
    g = conv_graph(case, "f32")
    k = kernel_of(g)
    assert k.name == "conv2d_patch_f32" and k.info["form"] == "patch"
    ins = conv_inputs(case, "f32")
    got = check_graph(g, ins, "sc.conv2d", OWNED)[0]
    exp = F.conv2d(*(torch.from_numpy(a) for a in ins), stride=16).numpy()
    np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hw", [(17, 33), (30, 30)])
def test_patch_embedding_ignores_the_partial_last_patch(hw):
    case = _case((2, 4) + hw, (8, 4, 4, 8), bias=False, stride=(4, 8))
    g = conv_graph(case, "f32")
    assert kernel_of(g).info["form"] == "patch"
    check_graph(g, conv_inputs(case, "f32"), "sc.conv2d", OWNED)


def test_patch_embedding_many_rows_goes_to_blas_and_matches():
    # N * P >= BLAS_MIN_ROWS rows: sc.linear's BLAS path
    case = _case((1, 3, 96, 96), (32, 3, 4, 4), stride=(4, 4))
    assert (96 // 4) ** 2 >= BLAS_MIN_ROWS
    check_graph(conv_graph(case, "f32"), conv_inputs(case, "f32"), "sc.conv2d", OWNED)


@pytest.mark.parametrize("case,form", [
    (_case((2, 16, 20, 20), (32, 16, 3, 3), padding=(1, 1, 1, 1)), "im2col"),            # a conv stem: panels
    (_case((1, 3, 33, 33), (8, 3, 7, 7), stride=(2, 2), padding=(3, 3, 3, 3)), "im2col"),  # ResNet-style 7x7/2
    (_case((2, 12, 9, 9), (12, 1, 3, 3), padding=(1, 1, 1, 1), groups=12), "depthwise"),
    (_case((1, 4, 15, 16), (8, 1, 3, 2), stride=(2, 3), padding=(2, 0, 1, 1), dilation=(1, 2), groups=4),
     "depthwise"),  # depthwise with a channel multiplier, strides, dilation
    (_case((1, 8, 10, 11), (6, 4, 2, 3), stride=(2, 3), padding=(0, 2, 1, 0), dilation=(2, 1), groups=2), "im2col"),
    (_case((3, 6, 5, 5), (4, 6, 1, 1), bias=False), "patch"),                            # 1x1: 1-pixel patches
    (_case((1, 4, 40, 40), (64, 2, 3, 3), padding=(1, 1, 1, 1), groups=2), "im2col"),  # groups of >= 512 rows: BLAS
])
def test_general_forms_against_torch(case, form):
    g = conv_graph(case, "f32")
    assert kernel_of(g).info["form"] == form
    ins = conv_inputs(case, "f32", seed=5)
    got = check_graph(g, ins, "sc.conv2d", OWNED)[0]
    t, l, b, r = case["padding"]
    xt = F.pad(torch.from_numpy(ins[0]), (l, r, t, b))
    exp = F.conv2d(xt, *(torch.from_numpy(a) for a in ins[1:]), stride=case["stride"], dilation=case["dilation"],
                   groups=case["groups"]).numpy()
    np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(exp).max())))


@pytest.mark.parametrize("path", ["whole", "blocked"])
@pytest.mark.parametrize("nhwc", [False, True])
@settings(max_examples=15)
@given(case=conv_cases(max_hw=20), symbolic=st.booleans())
def test_each_path_and_layout_matches_reference(path, nhwc, case, symbolic):
    """Force the whole-GEMM or the blocked path and the NCHW or NHWC gather of the blocked path."""
    from sparsec.lower.cpu import conv as rule
    from sparsec.runtime.cpu import conv as rt
    with pytest.MonkeyPatch.context() as m:
        m.setattr(rule, "BLOCKED_MIN_BLOCKS_PER_THREAD", 0 if path == "blocked" else 10 ** 9)
        m.setattr(rt, "NHWC_MIN_CHANNELS", 1 if nhwc else 10 ** 9)
        g = conv_graph(case, "f32", "batch" if symbolic else None)
        k = kernel_of(g)
        ins = conv_inputs(case, "f32")
        out = np.empty(sc.interpret(g, *ins)[0].shape, np.float32)
        k.fn(*ins, out)
    exp = sc.interpret(g, *ins)[0]
    np.testing.assert_allclose(out, exp, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(exp).max(initial=0))))
    if out.size and case["w"][1] * case["w"][2] * case["w"][3] and k.info["form"] != "depthwise":
        assert k.fn.last_path == path


def test_nhwc_weight_cache_follows_the_weight_array():
    """A weight passed as an input may change between calls: its reordered copy is not reused."""
    from sparsec.runtime.cpu import conv as rt
    case = _case((2, 32, 20, 20), (16, 32, 3, 3), padding=(1, 1, 1, 1))
    g = conv_graph(case, "f32")
    k = kernel_of(g)
    assert k.info["layout"] == rt.LAYOUT_NHWC
    x, w, b = conv_inputs(case, "f32")
    out = np.empty((2, 16, 20, 20), np.float32)
    for scale in (1.0, -2.0):
        w *= scale  # same array, new contents
        k.fn(x, w, b, out)
        np.testing.assert_allclose(out, sc.interpret(g, x, w, b)[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dt", ["f64", "f16", "bf16"])
@pytest.mark.parametrize("patch", [True, False])
def test_other_float_dtypes(dt, patch):
    case = _case((2, 3, 16, 16), (8, 3, 4, 4), stride=(4, 4)) if patch else \
        _case((2, 4, 9, 8), (6, 2, 3, 3), padding=(1, 1, 1, 1), groups=2)
    g = conv_graph(case, dt)
    assert kernel_of(g).name.endswith(dt)
    got = check_graph(g, conv_inputs(case, dt), "sc.conv2d", OWNED)[0]
    assert got.dtype == DTYPES[dt]


def test_zero_batch_and_read_only_inputs():
    case = _case((0, 3, 8, 8), (4, 3, 2, 2), stride=(2, 2))
    g = conv_graph(case, "f32", "batch")
    check_graph(g, conv_inputs(case, "f32"), "sc.conv2d", OWNED)
    case = _case((2, 3, 8, 8), (4, 3, 3, 3), padding=(1, 1, 1, 1))
    ins = conv_inputs(case, "f32")
    for a in ins:
        a.setflags(write=False)  # weights mapped from safetensors are read-only
    check_graph(conv_graph(case, "f32"), ins, "sc.conv2d", OWNED)


# ---------------------------------------------------------------------------------------------
# sc.compile end to end

class PatchEmbed(sc.nn.Module):
    """ViT-style: conv patches -> [batch, patches, hidden] -> a linear layer."""

    def __init__(self):
        super().__init__()
        self.patch_embedding = sc.nn.Conv2d(3, 32, 8, stride=8, seed=0)
        self.proj = sc.nn.Linear(32, 16, seed=1)

    def forward(self, x):
        y = self.patch_embedding(x)
        y = sc.ops.transpose(sc.ops.reshape(y, (-1, 32, 16)), (0, 2, 1))
        return self.proj(y)


def test_compiled_model_with_symbolic_batch():
    m = PatchEmbed()
    cm = sc.compile(m, sc.TensorSpec(("batch", 3, 32, 32), "float32"))
    rng = np.random.default_rng(7)
    for n in (1, 3):
        x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
        exp = sc.interpret(sc.trace(m, sc.TensorSpec(("batch", 3, 32, 32), "float32")), x)[0]
        got = cm(x)
        got = got[0] if isinstance(got, tuple) else got
        np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-4)
    with pytest.raises(sc.SparsecError, match="dim 2 must be 32"):
        cm(np.zeros((1, 3, 64, 64), np.float32))


def test_quantize_leaves_conv_weights_in_f32():
    m = PatchEmbed()
    cm = sc.compile(m, sc.TensorSpec((2, 3, 32, 32), "float32"), quantize="int8")
    x = np.random.default_rng(8).standard_normal((2, 3, 32, 32)).astype(np.float32)
    conv = next(op for op in cm.graph.main.ops if op.name == "sc.conv2d")
    assert str(conv.operands[1].type) == "tensor<32x3x8x8xf32>"
    linear = next(op for op in cm.graph.main.ops if op.name == "sc.linear")
    assert str(linear.operands[1].type).startswith("!sc.i8c<")  # the pass ran on the linear layer
    got = cm(x)
    got = got[0] if isinstance(got, tuple) else got
    exp = sc.interpret(sc.trace(m, sc.TensorSpec((2, 3, 32, 32), "float32")), x)[0]
    # the linear layer is int8 (activation rounding), the convolution exact f32
    assert np.abs(got - exp).max() < 0.05 * np.abs(exp).max()


# ---------------------------------------------------------------------------------------------
# ONNX Conv (ONNX's own node tests run in tests/test_onnx_backend.py; these add 1-D, groups,
# dilations and SAME_LOWER against onnx.reference)

@pytest.mark.parametrize("x_shape,w_shape,attrs", [
    ((2, 4, 9, 7), (6, 2, 3, 2), {"group": 2, "dilations": [2, 1], "strides": [1, 2], "pads": [1, 0, 2, 1]}),
    ((1, 3, 8, 9), (4, 3, 3, 3), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    ((1, 3, 8, 9), (4, 3, 2, 2), {"auto_pad": "SAME_UPPER"}),
    ((1, 3, 8, 9), (4, 3, 3, 3), {"auto_pad": "VALID", "kernel_shape": [3, 3]}),
    ((2, 4, 11), (8, 2, 3), {"group": 2, "pads": [2, 1], "strides": [2]}),   # 1-D
])
@pytest.mark.parametrize("bias", [False, True])
def test_onnx_conv_against_onnx_reference(x_shape, w_shape, attrs, bias):
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    rng = np.random.default_rng(9)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    exp = ReferenceEvaluator(model).run(None, {"x": x})[0]
    g = sc.load_onnx(model)
    assert any(op.name == "sc.conv2d" for op in g.main.ops)
    got = sc.compile(g)(x)
    assert got.shape == exp.shape
    np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-4)


def test_onnx_conv_3d_is_refused_with_a_clear_error():
    from onnx import TensorProto, helper, numpy_helper
    w = np.zeros((2, 1, 1, 1, 1), np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 1, 2, 2, 2))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    with pytest.raises(sc.SparsecError, match="Conv over 3 spatial dims .* only 1-D and 2-D"):
        sc.load_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
