"""sc.conv2d: shape rule and its errors, the NumPy reference against torch, the traced API's
padding forms, sc.nn.Conv2d (torch names and layout), the IR round trip, and its generator."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st
from opcheck import trace_run

import sparsec as sc
import sparsec.testing as sct
from sparsec.ir.opdef import REGISTRY

CONV = REGISTRY["sc.conv2d"]


def test_generator_produces_conv2d():
    g = find(sct.graphs(max_ops=3, ops=["sc.conv2d"], dtypes=("f32",)),
             lambda g: any(op.name == "sc.conv2d" for op in g.walk()),
             settings=settings(max_examples=300, database=None, phases=[Phase.generate], derandomize=True))
    sc.verify(g)


@settings(max_examples=15)
@given(sct.graphs(max_ops=4, ops=["sc.conv2d"], dtypes=("f32", "bf16")), st.data())
def test_generated_conv_graphs_round_trip_and_run(g, data):
    assert str(sc.parse(str(g))) == str(g)
    xs = data.draw(sct.inputs_for(g))
    sct.assert_equivalent(g, sct.clone(g), inputs=[xs])


# ---------------------------------------------------------------------------------------------
# shape rule

def _trace(x_shape, w_shape, b_shape=None, dtype="float32", wdtype=None, **kw):
    args = [sc.TensorSpec(x_shape, dtype), sc.TensorSpec(w_shape, wdtype or dtype)]
    if b_shape is not None:
        args.append(sc.TensorSpec(b_shape, wdtype or dtype))
        return sc.trace(lambda x, w, b: sc.ops.conv2d(x, w, b, **kw), *args)
    return sc.trace(lambda x, w: sc.ops.conv2d(x, w, **kw), *args)


def _out(g):
    return g.main.body.terminator.operands[0].type


@pytest.mark.parametrize("kw,torch_kw", [
    ({}, {}),
    ({"stride": 2}, {"stride": 2}),
    ({"padding": 1}, {"padding": 1}),
    ({"padding": (1, 0)}, {"padding": (1, 0)}),
    ({"padding": (0, 1, 2, 3)}, {"pad": (1, 3, 0, 2)}),
    ({"padding": "same"}, {"padding": "same"}),
    ({"padding": "valid"}, {"padding": "valid"}),
    ({"dilation": 2}, {"dilation": 2}),
    ({"stride": (3, 1), "dilation": (1, 2), "padding": 2}, {"stride": (3, 1), "dilation": (1, 2), "padding": 2}),
])
def test_output_shapes_match_torch(kw, torch_kw):
    g = _trace((2, 4, 32, 31), (8, 4, 3, 3), **kw)
    torch_kw = dict(torch_kw)
    x = F.pad(torch.zeros(2, 4, 32, 31), torch_kw.pop("pad", (0, 0, 0, 0)))
    assert _out(g).shape == tuple(F.conv2d(x, torch.zeros(8, 4, 3, 3), **torch_kw).shape)


def test_symbolic_batch_is_kept():
    g = _trace(("batch", 3, 224, 224), (768, 3, 16, 16), (768,), stride=16)
    assert _out(g).shape == ("batch", 768, 14, 14)
    assert str(sc.parse(str(g))) == str(g)


def test_groups_shape():
    g = _trace((1, 6, 8, 8), (9, 2, 3, 3), groups=3)
    assert _out(g).shape == (1, 9, 6, 6)


@pytest.mark.parametrize("args,kw,match", [
    (((1, 4, 8, 8), (8, 3, 3, 3)), {}, r"channel mismatch: input .* has C=4 .* expects C/groups=3"),
    (((1, 6, 8, 8), (8, 2, 3, 3)), {"groups": 4}, r"groups=4 does not divide the input channels C=6"),
    (((1, 6, 8, 8), (8, 2, 3, 3)), {"groups": 3}, r"groups=3 does not divide the output channels O=8"),
    (((1, 3, 4, 4), (8, 3, 5, 5)), {}, r"kernel 5x5 .* larger than the padded input 4x4"),
    (((1, 3, 4, 4), (8, 3, 3, 3)), {"dilation": 2}, r"spans 5x5\) is larger than the padded input 4x4"),
    (((1, 3, "h", 8), (8, 3, 3, 3)), {}, r"input height H must be static, got symbolic 'h'"),
    (((1, "c", 8, 8), (8, 3, 3, 3)), {}, r"input channels C must be static"),
    (((3, 8, 8), (8, 3, 3, 3)), {}, r"input must be \[N, C, H, W\] \(rank 4\)"),
    (((1, 3, 8, 8), (8, 3, 3)), {}, r"weight must be \[O, C/groups, kh, kw\] \(rank 4\)"),
    (((1, 3, 8, 8), (8, 3, 3, 3), (7,)), {}, r"bias must be \[8\]"),
    (((1, 3, 8, 8), (8, 3, 3, 3)), {"stride": 0}, r"stride must be 2 positive ints"),
    (((1, 3, 8, 8), (8, 3, 3, 3)), {"padding": -1}, r"padding must be 4 non-negative ints"),
    (((1, 3, 8, 8), (8, 3, 3, 3)), {"groups": 0}, r"groups must be >= 1"),
])
def test_shape_rule_errors(args, kw, match):
    with pytest.raises(sc.SparsecError, match=match) as e:
        _trace(*args, **kw)
    assert "sc.conv2d" in str(e.value) and "test_ops_conv.py" in str(e.value)  # the op and the user's line


def test_dtype_errors():
    with pytest.raises(sc.SparsecError, match="weight dtype f16 differs from input dtype f32"):
        _trace((1, 3, 8, 8), (8, 3, 3, 3), dtype="float32", wdtype="float16")
    with pytest.raises(sc.SparsecError, match="sc.conv2d input must be a float tensor"):
        _trace((1, 3, 8, 8), (8, 3, 3, 3), dtype="int32")


def test_api_errors():
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        _trace((1, 3, 8, 8), (8, 3, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be an int, 2 ints .* or 4 ints"):
        _trace((1, 3, 8, 8), (8, 3, 3, 3), padding=(1, 2, 3))
    with pytest.raises(ValueError, match="stride must be an int or 2 ints"):
        _trace((1, 3, 8, 8), (8, 3, 3, 3), stride=(1, 2, 3))


def test_verifier_names_attribute_errors_on_parse():
    g = _trace((1, 3, 8, 8), (8, 3, 3, 3))
    text = str(g).replace("padding = array<i64: 0, 0, 0, 0>", "padding = array<i64: 0, 0, 0>")
    with pytest.raises(sc.SparsecError, match="padding must be 4 non-negative ints"):
        sc.parse(text)


# ---------------------------------------------------------------------------------------------
# reference against torch

def torch_conv(x, w, b, stride, padding, dilation, groups):
    t, l, bt, r = padding
    xt = F.pad(torch.from_numpy(x), (l, r, t, bt))
    return F.conv2d(xt, torch.from_numpy(w), None if b is None else torch.from_numpy(b), stride=stride,
                    dilation=dilation, groups=groups).numpy()


@st.composite
def conv_cases(draw, max_hw=9):
    groups = draw(st.integers(1, 3))
    C = groups * draw(st.integers(1, 3))
    O = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, 3)) for _ in range(4))
    H = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - padding[0] - padding[2]), max_hw + 4))
    W = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - padding[1] - padding[3]), max_hw + 4))
    N = draw(st.integers(0, 3))
    return dict(x=(N, C, H, W), w=(O, C // groups, kh, kw), bias=draw(st.booleans()), stride=stride,
                padding=padding, dilation=dilation, groups=groups)


def _arrays(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case["x"]).astype(dtype)
    w = rng.standard_normal(case["w"]).astype(dtype)
    b = rng.standard_normal(case["w"][0]).astype(dtype) if case["bias"] else None
    return x, w, b


@given(conv_cases())
def test_reference_matches_torch_f64(case):
    x, w, b = _arrays(case, np.float64)
    attrs = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    got = CONV.run_reference([x, w, b], attrs)[0]
    exp = torch_conv(x, w, b, **attrs)
    assert got.dtype == np.float64 and got.shape == exp.shape
    np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)


@given(conv_cases())
def test_reference_matches_torch_f32(case):
    x, w, b = _arrays(case, np.float32)
    attrs = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    got = CONV.run_reference([x, w, b], attrs)[0]
    exp = torch_conv(x, w, b, **attrs)
    assert got.dtype == np.float32 and got.shape == exp.shape
    np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(exp).max(initial=0))))


def test_reference_half_accumulates_in_f32_and_rounds_once():
    import ml_dtypes
    case = dict(x=(1, 8, 6, 6), w=(4, 8, 3, 3), bias=True)
    for dt in (np.float16, ml_dtypes.bfloat16):
        x, w, b = _arrays(case, dt, seed=3)
        attrs = {"stride": (1, 1), "padding": (1, 1, 1, 1), "dilation": (1, 1), "groups": 1}
        got = CONV.run_reference([x, w, b], attrs)[0]
        assert got.dtype == np.dtype(dt)
        exp = torch_conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **attrs)
        # one rounding of an f32-accurate result: within half an ulp of the half type (plus f32 noise)
        eps = float(ml_dtypes.finfo(dt).eps)
        assert np.all(np.abs(got.astype(np.float64) - exp) <= np.abs(exp) * eps * 0.51 + 1e-5)


def test_reference_zero_batch():
    x = np.zeros((0, 3, 5, 5), np.float32)
    w = np.ones((2, 3, 3, 3), np.float32)
    out = CONV.run_reference([x, w, None], {"stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1),
                                            "groups": 1})[0]
    assert out.shape == (0, 2, 3, 3)


# ---------------------------------------------------------------------------------------------
# traced API and sc.nn.Conv2d

@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("padding,torch_padding", [(1, 1), ((2, 0), (2, 0)), ("same", "same"), ("valid", "valid"),
                                                   ((1, 2, 1, 2), (1, 2))])
def test_api_padding_forms_match_torch(padding, torch_padding):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 4)).astype(np.float32)
    _, (out,) = trace_run(lambda x, w: sc.ops.conv2d(x, w, padding=padding), x, w)
    exp = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=torch_padding).numpy()
    np.testing.assert_allclose(out, exp, rtol=1e-5, atol=1e-5)


def test_api_casts_integer_input_to_the_weight_dtype():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.int64).reshape(2, 1, 4, 4)
    w = np.ones((1, 1, 2, 2), np.float32)
    g, (out,) = trace_run(lambda x, w: sc.ops.conv2d(x, w, stride=2), x, w)
    assert any(op.name == "sc.cast" for op in g.main.ops)
    exp = F.conv2d(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(w), stride=2).numpy()
    np.testing.assert_array_equal(out, exp)


def test_nn_conv2d_has_torch_names_and_loads_a_torch_state_dict():
    torch.manual_seed(0)
    tm = torch.nn.Conv2d(6, 8, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    m = sc.nn.Conv2d(6, 8, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    sd = m.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((3, 6, 11, 7)).astype(np.float32)
    g = sc.trace(m, sc.TensorSpec(("batch", 6, 11, 7), "float32"))
    assert set(g.weights) == {"weight", "bias"}
    assert str(sc.parse(str(g))) == str(g)
    out = sc.interpret(g, x)[0]
    exp = tm(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(out, exp, rtol=1e-5, atol=1e-5)


def test_nn_conv2d_without_bias_and_bad_groups():
    m = sc.nn.Conv2d(3, 4, 16, stride=16, bias=False)
    assert list(m.state_dict()) == ["weight"] and m.weight.shape == (4, 3, 16, 16)
    with pytest.raises(ValueError, match="groups=2 must divide in_channels=3"):
        sc.nn.Conv2d(3, 4, 3, groups=2)


def test_wrong_image_size_names_the_expected_shape():
    m = sc.nn.Conv2d(3, 4, 4, stride=4)
    g = sc.trace(m, sc.TensorSpec((1, 3, 16, 16), "float32"))
    with pytest.raises(sc.SparsecError, match=r"input 'x': dim 2 must be 16 \(tensor<1 x 3 x 16 x 16 x f32>\)"):
        sc.interpret(g, np.zeros((1, 3, 32, 32), np.float32))
