"""sc.load_onnx: models built with onnx.helper (and one exported from torch) imported, interpreted
and compiled, checked against onnx.reference.ReferenceEvaluator (ONNX's own NumPy semantics)."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.onnx.importer import DataDependentError, OnnxImportError  # noqa: E402

RNG = np.random.default_rng(0)


def _w(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = oh.make_graph(nodes, "m", inputs, outputs, initializer=[nh.from_array(v, k) for k, v in inits])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)])
    m.ir_version = 10
    return m


def _vi(name, shape, t=TP.FLOAT):
    return oh.make_tensor_value_info(name, t, shape)


def _check(m, *feeds, compiled=True, rtol=1e-4, atol=1e-5):
    """Interpreter and compiled model against ReferenceEvaluator on each feed (a list of arrays)."""
    g = sc.load_onnx(m)
    names = [vi.name for vi in m.graph.input]
    ref = ReferenceEvaluator(m)
    cm = sc.compile(g, progress=False) if compiled else None
    for arrays in feeds:
        want = ref.run(None, dict(zip(names, arrays)))
        got = sc.interpret(g, *arrays)
        for w, o in zip(want, got):
            assert o.dtype == w.dtype and o.shape == w.shape
            np.testing.assert_allclose(o, w, rtol=rtol, atol=atol)
        if cm is not None:
            for w, o in zip(want, cm.run(*arrays)):
                assert o.dtype == w.dtype and o.shape == w.shape
                np.testing.assert_allclose(o, w, rtol=rtol, atol=atol)
    return g


def _ops(g):
    return [op.name for op in g.main.body.ops]


# ---------------------------------------------------------------------------------------------
# models

def test_mlp_gemm_matmul_gelu():
    """Gemm (transB) + Relu, MatMul + Add + erf-GELU (Div, Erf, Add, Mul, Mul) with a dynamic batch."""
    inits = [("W1", _w(32, 16)), ("b1", _w(32)), ("W2", _w(32, 24)), ("b2", _w(24)),
             ("sqrt2", np.array(np.sqrt(2), np.float32)), ("one", np.array(1, np.float32)),
             ("half", np.array(0.5, np.float32))]
    nodes = [
        oh.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
        oh.make_node("Relu", ["h"], ["r"]),
        oh.make_node("MatMul", ["r", "W2"], ["m"]), oh.make_node("Add", ["m", "b2"], ["a"]),
        oh.make_node("Div", ["a", "sqrt2"], ["d"]), oh.make_node("Erf", ["d"], ["e"]),
        oh.make_node("Add", ["e", "one"], ["e1"]), oh.make_node("Mul", ["a", "e1"], ["p"]),
        oh.make_node("Mul", ["p", "half"], ["y"]),
    ]
    m = _model(nodes, [_vi("x", ["batch", 16])], [_vi("y", ["batch", 24])], inits)
    g = _check(m, [_w(3, 16, scale=1)], [_w(7, 16, scale=1)])
    # weights are params named after the initializers
    assert {"W1", "b1", "W2.T", "b2"} <= set(g.params())
    # Gemm's bias and the Add after the MatMul both became the bias of an sc.linear
    linears = [op for op in g.main.body.ops if op.name == "sc.linear"]
    assert len(linears) == 2 and all(len(op.operands) == 3 for op in linears)
    assert g.main.args[0].type.shape == ("batch", 16)


def test_cumsum_along_a_symbolic_axis():
    """CumSum (exclusive, reverse) along the dynamic sequence axis becomes one sc.cumsum."""
    nodes = [oh.make_node("CumSum", ["x", "axis"], ["y"], exclusive=1, reverse=1)]
    m = _model(nodes, [_vi("x", [2, "seq"])], [_vi("y", [2, "seq"])],
               [("axis", np.array(1, np.int64))])
    g = _check(m, [_w(2, 5, scale=1)], [_w(2, 9, scale=1)])
    assert [op.name for op in g.main.body.ops if op.name != "func.return"] == ["sc.cumsum"]


def test_matmul_add_fuses_into_linear_only_when_nothing_else_reads_it():
    W, b = _w(8, 20), _w(20)
    inits = [("W", W), ("b", b)]
    fused = _model([oh.make_node("MatMul", ["x", "W"], ["m"]), oh.make_node("Add", ["m", "b"], ["y"])],
                   [_vi("x", ["n", 8])], [_vi("y", ["n", 20])], inits)
    g = _check(fused, [_w(3, 8)], compiled=False)
    assert _ops(g) == ["sc.param", "sc.param", "sc.linear", "func.return"]
    # the MatMul result is also an output: both the plain and the biased product remain
    both = _model([oh.make_node("MatMul", ["x", "W"], ["m"]), oh.make_node("Add", ["b", "m"], ["y"])],
                  [_vi("x", ["n", 8])], [_vi("y", ["n", 20]), _vi("m", ["n", 20])], inits)
    g = _check(both, [_w(3, 8)], compiled=False)
    assert _ops(g).count("sc.linear") == 2
    assert "MatMul" in sc.onnx.supported_ops()


def _transformer_block(opset=17):
    """LayerNorm -> QKV MatMuls -> Shape-driven Reshape [B, S, H, D] -> Transpose -> QK^T / sqrt(D)
    -> causal Where -> Softmax -> AV -> Transpose/Reshape back -> out projection + residual."""
    H, D, E = 2, 4, 8
    tri = np.tril(np.ones((16, 16), bool))
    inits = [("ln_w", 1 + _w(E)), ("ln_b", _w(E)), ("Wq", _w(E, E)), ("Wk", _w(E, E)), ("Wv", _w(E, E)),
             ("Wo", _w(E, E)), ("scale", np.array(np.sqrt(D), np.float32)), ("tri", tri),
             ("neg", np.array(-1e9, np.float32)), ("heads", np.array([H, D], np.int64)),
             ("i0", np.array([0], np.int64)), ("i1", np.array([1], np.int64)), ("i2", np.array([2], np.int64)),
             ("zero", np.array([0], np.int64)), ("minus1", np.array([-1], np.int64)), ("ax0", np.array([0], np.int64))]
    nodes = [
        oh.make_node("LayerNormalization", ["x", "ln_w", "ln_b"], ["n"], axis=-1, epsilon=1e-5),
        oh.make_node("Shape", ["x"], ["xs"]),
        oh.make_node("Gather", ["xs", "i0"], ["B"], axis=0), oh.make_node("Gather", ["xs", "i1"], ["S"], axis=0),
        oh.make_node("Concat", ["B", "S", "heads"], ["bshd"], axis=0),
        oh.make_node("Concat", ["B", "S", "minus1"], ["bse"], axis=0),
    ]
    for name, w in (("q", "Wq"), ("k", "Wk"), ("v", "Wv")):
        nodes += [oh.make_node("MatMul", ["n", w], [f"{name}0"]),
                  oh.make_node("Reshape", [f"{name}0", "bshd"], [f"{name}1"]),
                  oh.make_node("Transpose", [f"{name}1"], [name], perm=[0, 2, 1, 3])]
    nodes += [
        oh.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        oh.make_node("MatMul", ["q", "kt"], ["s0"]), oh.make_node("Div", ["s0", "scale"], ["s1"]),
        # causal mask: tri[:S, :S] sliced with the symbolic sequence length
        oh.make_node("Slice", ["tri", "zero", "S", "ax0"], ["tri_r"]),
        oh.make_node("Slice", ["tri_r", "zero", "S", "i1"], ["mask"]),
        oh.make_node("Where", ["mask", "s1", "neg"], ["s2"]),
        oh.make_node("Softmax", ["s2"], ["p"], axis=-1),
        oh.make_node("MatMul", ["p", "v"], ["o0"]),
        oh.make_node("Transpose", ["o0"], ["o1"], perm=[0, 2, 1, 3]),
        oh.make_node("Reshape", ["o1", "bse"], ["o2"]),
        oh.make_node("MatMul", ["o2", "Wo"], ["o3"]),
        oh.make_node("Add", ["x", "o3"], ["y"]),
    ]
    return _model(nodes, [_vi("x", ["batch", "seq", E])], [_vi("y", ["batch", "seq", E])], inits, opset)


def test_transformer_block_dynamic_batch_and_seq():
    m = _transformer_block()
    g = _check(m, [_w(2, 5, 8, scale=1)], [_w(1, 9, 8, scale=1)])
    ops = _ops(g)
    # the shape computations folded away: reshapes to symbolic shapes, no runtime shape arithmetic
    assert "sc.layer_norm" in ops and "sc.softmax" in ops and "sc.where" in ops
    assert not {"sc.stack", "sc.sum"} & set(ops), ops
    # tri[:seq, :seq]: the positions 0..seq-1 gathered from the static buffer
    assert ops.count("sc.take") == 2 and ops.count("sc.iota") == 1
    reshapes = [op.attrs["shape"] for op in g.main.body.ops if op.name == "sc.reshape"]
    assert ("batch", "seq", 2, 4) in reshapes and ("batch", "seq", -1) in reshapes


def test_moe_router_topk_gather_scatter():
    """An MoE layer written the ONNX way: router Softmax -> TopK -> renormalize -> ScatterElements
    into a dense [T, E] weight matrix (ConstantOfShape from the token count) -> experts -> weighted sum;
    GatherElements reads the chosen probabilities back."""
    T_, E, F = "tokens", 4, 8
    inits = [("Wr", _w(8, E)), ("k", np.array([2], np.int64)), ("ax1", np.array([1], np.int64)),
             ("nE", np.array([E], np.int64)), ("i0", np.array([0], np.int64))]
    nodes = [
        oh.make_node("MatMul", ["x", "Wr"], ["logits"]),
        oh.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        oh.make_node("TopK", ["probs", "k"], ["topv", "topi"], axis=-1),
        oh.make_node("GatherElements", ["probs", "topi"], ["chosen"], axis=1),
        oh.make_node("ReduceSum", ["chosen", "ax1"], ["den"], keepdims=1),
        oh.make_node("Div", ["topv", "den"], ["wts"]),
        oh.make_node("Shape", ["x"], ["xs"]), oh.make_node("Gather", ["xs", "i0"], ["T"], axis=0),
        oh.make_node("Concat", ["T", "nE"], ["te"], axis=0),
        oh.make_node("ConstantOfShape", ["te"], ["zeros"],
                     value=oh.make_tensor("v", TP.FLOAT, [1], [0.0])),
        oh.make_node("ScatterElements", ["zeros", "topi", "wts"], ["dense"], axis=1),
    ]
    outs = []
    for e in range(E):
        inits += [(f"W{e}", _w(8, F)), (f"V{e}", _w(F, 8)), (f"s{e}", np.array([e], np.int64)),
                  (f"t{e}", np.array([e + 1], np.int64))]
        nodes += [oh.make_node("MatMul", ["x", f"W{e}"], [f"h{e}"]), oh.make_node("Sigmoid", [f"h{e}"], [f"g{e}"]),
                  oh.make_node("Mul", [f"h{e}", f"g{e}"], [f"a{e}"]), oh.make_node("MatMul", [f"a{e}", f"V{e}"], [f"o{e}"]),
                  oh.make_node("Slice", ["dense", f"s{e}", f"t{e}", "ax1"], [f"c{e}"]),
                  oh.make_node("Mul", [f"o{e}", f"c{e}"], [f"y{e}"])]
        outs.append(f"y{e}")
    nodes.append(oh.make_node("Sum", outs, ["y"]))
    m = _model(nodes, [_vi("x", [T_, 8])], [_vi("y", [T_, 8]), _vi("topi", [T_, 2], TP.INT64)], inits, opset=13)
    g = _check(m, [_w(6, 8, scale=1)], [_w(1, 8, scale=1)])
    ops = _ops(g)
    assert {"sc.topk", "sc.take_along_axis", "sc.scatter", "sc.broadcast_to"} <= set(ops)


def test_shape_driven_reshape_dynamic_batch_folds_to_one_reshape():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape becomes one sc.reshape to [batch, -1]."""
    nodes = [oh.make_node("Shape", ["x"], ["s"]),
             oh.make_node("Gather", ["s", "zero"], ["b"], axis=0),
             oh.make_node("Unsqueeze", ["b", "ax0"], ["bu"]),
             oh.make_node("Concat", ["bu", "m1"], ["shp"], axis=0),
             oh.make_node("Reshape", ["x", "shp"], ["flat"]),
             oh.make_node("Shape", ["flat"], ["fs"]),
             oh.make_node("Cast", ["fs"], ["fsf"], to=TP.FLOAT)]
    inits = [("zero", np.array(0, np.int64)), ("ax0", np.array([0], np.int64)), ("m1", np.array([-1], np.int64))]
    m = _model(nodes, [_vi("x", ["batch", 3, 4])], [_vi("flat", ["batch", 12]), _vi("fsf", [2])], inits, opset=13)
    g = _check(m, [_w(2, 3, 4)], [_w(5, 3, 4)])
    ops = _ops(g)
    assert ops.count("sc.reshape") == 1 and "sc.take" not in ops and "sc.concat" not in ops
    assert next(op for op in g.main.body.ops if op.name == "sc.reshape").attrs["shape"] == ("batch", -1)
    # the shape itself, a graph output, is computed from the symbolic dim at run time
    assert g.main.body.ops[-1].operands[1].type.shape == (2,)


def test_unnamed_dynamic_dims_get_fresh_names():
    m = _model([oh.make_node("Relu", ["x"], ["y"])], [_vi("x", [None, "n", None])], [_vi("y", [None, "n", None])])
    g = sc.load_onnx(m)
    shape = g.main.args[0].type.shape
    assert shape[1] == "n" and isinstance(shape[0], str) and isinstance(shape[2], str) and shape[0] != shape[2]


def test_opset13_and_18_forms_of_axes():
    """Squeeze/Unsqueeze/ReduceSum take axes as inputs from opset 13, ReduceMean/Max from 18."""
    x = _w(2, 1, 3)
    a13 = _model([oh.make_node("Squeeze", ["x", "ax"], ["s"]), oh.make_node("ReduceMean", ["s"], ["y"], axes=[1])],
                 [_vi("x", [2, 1, 3])], [_vi("y", [2, 1])], [("ax", np.array([1], np.int64))], opset=13)
    a18 = _model([oh.make_node("Squeeze", ["x", "ax"], ["s"]), oh.make_node("ReduceMean", ["s", "ax"], ["y"])],
                 [_vi("x", [2, 1, 3])], [_vi("y", [2, 1])], [("ax", np.array([1], np.int64))], opset=18)
    for m in (a13, a18):
        _check(m, [x], compiled=False)


def test_opset23_rmsnorm_rotary_attention_gqa():
    """RMSNormalization, RotaryEmbedding (3-D input, position ids) and Attention (3-D, grouped-query,
    causal) of opset 23, with a dynamic sequence length."""
    Hq, Hkv, D = 4, 2, 4
    max_pos = 32
    inv = 1.0 / (10000 ** (np.arange(0, D, 2) / D))
    ang = np.arange(max_pos)[:, None] * inv[None, :]
    inits = [("g", 1 + _w(16)), ("Wq", _w(16, Hq * D)), ("Wk", _w(16, Hkv * D)), ("Wv", _w(16, Hkv * D)),
             ("cos", np.cos(ang).astype(np.float32)), ("sin", np.sin(ang).astype(np.float32))]
    nodes = [
        oh.make_node("RMSNormalization", ["x", "g"], ["n"], epsilon=1e-6),
        oh.make_node("MatMul", ["n", "Wq"], ["q0"]), oh.make_node("MatMul", ["n", "Wk"], ["k0"]),
        oh.make_node("MatMul", ["n", "Wv"], ["v"]),
        oh.make_node("RotaryEmbedding", ["q0", "cos", "sin", "pos"], ["q"], num_heads=Hq),
        oh.make_node("RotaryEmbedding", ["k0", "cos", "sin", "pos"], ["k"], num_heads=Hkv),
        oh.make_node("Attention", ["q", "k", "v"], ["y"], q_num_heads=Hq, kv_num_heads=Hkv, is_causal=1),
    ]
    m = _model(nodes, [_vi("x", [1, "seq", 16]), _vi("pos", [1, "seq"], TP.INT64)], [_vi("y", [1, "seq", Hq * D])],
               inits, opset=23)
    feeds = [[_w(1, s, 16, scale=1), np.arange(s, dtype=np.int64)[None] + 2] for s in (5, 3)]
    g = _check(m, *feeds)
    assert {"sc.rms_norm", "sc.attention"} <= set(_ops(g))


def test_torch_export_matches_torch():
    """A small torch model (Linear, GELU, LayerNorm, head reshapes, softmax) exported with the
    TorchScript exporter (dynamo=False, no onnxscript needed) with dynamic batch and sequence."""
    torch = pytest.importorskip("torch")

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.ln, self.l2 = torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.Linear(32, 8)

        def forward(self, x):
            h = self.ln(torch.nn.functional.gelu(self.l1(x)))
            b, t, _ = x.shape
            h = h.reshape(b, t, 4, 8).transpose(1, 2).softmax(-1).transpose(1, 2).reshape(b, t, 32)
            return self.l2(h)

    torch.manual_seed(0)
    model = M().eval()
    with torch.no_grad():
        model.ln.weight.uniform_(0.5, 1.5)
        model.ln.bias.uniform_(-0.5, 0.5)
    f = io.BytesIO()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 5, 16),), f, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 1: "seq"}}, opset_version=17)
    g = sc.load_onnx(f.getvalue())
    assert g.main.args[0].type.shape == ("batch", "seq", 16)
    assert {"ln.weight", "ln.bias", "l1.bias"} <= set(g.params())
    cm = sc.compile(g, progress=False)
    for shape in ((3, 7, 16), (1, 2, 16)):
        x = torch.randn(*shape)
        with torch.no_grad():
            want = model(x).numpy()
        np.testing.assert_allclose(sc.interpret(g, x.numpy())[0], want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cm(x.numpy()), want, rtol=1e-4, atol=1e-5)


def test_torch_export_gpt_block_matches_torch():
    """A GPT-style block exported from torch: token and position embeddings (Gather over weights,
    Range over the symbolic sequence length), a causal mask sliced from a registered buffer
    (`mask[:T, :T]`), scaled_dot_product_attention(is_causal=True), head reshapes from Shape."""
    torch = pytest.importorskip("torch")

    class Block(torch.nn.Module):
        def __init__(self, E=32, H=4):
            super().__init__()
            self.H, self.ln, self.qkv, self.o = H, torch.nn.LayerNorm(E), torch.nn.Linear(E, 3 * E), torch.nn.Linear(E, E)
            self.emb, self.pos = torch.nn.Embedding(50, E), torch.nn.Embedding(64, E)
            self.register_buffer("mask", torch.tril(torch.ones(64, 64, dtype=torch.bool)))

        def forward(self, ids):
            B, T = ids.shape
            x = self.emb(ids) + self.pos(torch.arange(T))[None]
            q, k, v = self.qkv(self.ln(x)).split(x.shape[-1], -1)
            q, k, v = (t.view(B, T, self.H, -1).transpose(1, 2) for t in (q, k, v))
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            att = (q @ k.transpose(-1, -2)) / (q.shape[-1] ** 0.5)
            att = att.masked_fill(~self.mask[:T, :T], float("-inf")).softmax(-1)
            return x + self.o((att @ v + a).transpose(1, 2).reshape(B, T, -1))

    torch.manual_seed(0)
    model = Block().eval()
    f = io.BytesIO()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randint(0, 50, (2, 7)),), f, dynamo=False, input_names=["ids"],
                          output_names=["y"], dynamic_axes={"ids": {0: "batch", 1: "seq"}}, opset_version=17)
    g = sc.load_onnx(f.getvalue())
    assert g.main.args[0].type.shape == ("batch", "seq")
    assert {"sc.embedding", "sc.layer_norm", "sc.softmax", "sc.linear"} <= set(_ops(g))
    cm = sc.compile(g, progress=False)
    for shape in ((3, 11), (1, 1)):
        ids = torch.randint(0, 50, shape)
        with torch.no_grad():
            want = model(ids).numpy()
        np.testing.assert_allclose(sc.interpret(g, ids.numpy())[0], want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cm(ids.numpy()), want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# the command line

def test_cli_compile_and_run_onnx(tmp_path):
    m = _model([oh.make_node("Gemm", ["x", "W", "b"], ["h"], transB=1), oh.make_node("Tanh", ["h"], ["y"])],
               [_vi("x", ["batch", 8])], [_vi("y", ["batch", 4])], [("W", _w(4, 8)), ("b", _w(4))])
    onnx.save(m, str(tmp_path / "model.onnx"))
    x = _w(3, 8, scale=1)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "sparsec"]
    r = subprocess.run(cmd + ["compile", "model.onnx", "-o", "m.spc"], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cmd + ["run", "m.spc", "--input", "x=x.npy", "--output", "out.npz"], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    want = ReferenceEvaluator(m).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["y"], want, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# errors

def test_unsupported_ops_are_listed_all_at_once():
    nodes = [oh.make_node("ConvTranspose", ["x", "w"], ["c1"], name="conv1"),
             oh.make_node("ConvTranspose", ["c1", "w"], ["c2"], name="conv2"),
             oh.make_node("Relu", ["c2"], ["r"]),
             oh.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], name="pool"),
             oh.make_node("FusedMatMul", ["p", "p"], ["y"], domain="com.microsoft", name="fused")]
    m = _model(nodes, [_vi("x", [1, 1, 8, 8]), _vi("w", [1, 1, 3, 3])], [_vi("y", None)])
    m.opset_import.append(oh.make_opsetid("com.microsoft", 1))
    with pytest.raises(OnnxImportError) as e:
        sc.load_onnx(m)
    msg = str(e.value)
    assert "4 node(s) of 3 unsupported ONNX op type(s)" in msg
    assert "ConvTranspose x2: 'conv1', 'conv2'" in msg and "MaxPool x1: 'pool'" in msg
    assert "com.microsoft::FusedMatMul x1: 'fused'" in msg
    assert "Relu" not in msg.split("(supported:")[0]


def test_clear_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\0not a model")
    with pytest.raises(OnnxImportError, match="not a readable ONNX model"):
        sc.load_onnx(str(bad))
    with pytest.raises(OnnxImportError, match="no such file"):
        sc.load_onnx(str(tmp_path / "missing.onnx"))
    old = _model([oh.make_node("Relu", ["x"], ["y"])], [_vi("x", [2])], [_vi("y", [2])], opset=11)
    with pytest.raises(OnnxImportError, match="opset 11; sparsec imports opset 13 and later"):
        sc.load_onnx(old)
    i16 = _model([oh.make_node("Relu", ["x"], ["y"])], [_vi("x", [2], TP.INT16)], [_vi("y", [2], TP.INT16)])
    with pytest.raises(OnnxImportError, match="graph input 'x': element type INT16 is not supported"):
        sc.load_onnx(i16)
    # a reshape target computed from tensor data: named node and value
    dyn = _model([oh.make_node("Reshape", ["x", "shape"], ["y"], name="the_reshape")],
                 [_vi("x", [6]), _vi("shape", [2], TP.INT64)], [_vi("y", None)])
    with pytest.raises(DataDependentError, match="node 'the_reshape' \\(Reshape\\): the target shape of Reshape must "
                                                 "be known at import") as e:
        sc.load_onnx(dyn)
    assert e.value.value == "shape"
    # ... which binding the input specializes
    g = sc.load_onnx(dyn, bind_inputs={"shape": np.array([2, 3])})
    assert sc.interpret(g, np.arange(6, dtype=np.float32))[0].shape == (2, 3)
    # a shape rule failing inside a converter names the node
    mm = _model([oh.make_node("MatMul", ["a", "b"], ["y"], name="mm")], [_vi("a", [2, 3]), _vi("b", [4, 5])],
                [_vi("y", None)])
    with pytest.raises(OnnxImportError, match="node 'mm' \\(MatMul\\): .*contracted dims differ"):
        sc.load_onnx(mm)


def test_imported_ops_carry_the_node_name():
    m = _model([oh.make_node("Softmax", ["x"], ["y"], name="router_softmax")], [_vi("x", [2, 4])], [_vi("y", [2, 4])])
    g = sc.load_onnx(m)
    assert [op.loc for op in g.main.body.ops if op.name == "sc.softmax"] == ["onnx:router_softmax"]
