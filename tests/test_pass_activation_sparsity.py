"""activation-sparsity: the pass on MLPs and a causal LM (calibrated sparsity on fresh inputs,
output error, target=0 == dense), the rewrite against a NumPy model of the thresholded MLP,
no-ops on graphs without MLPs, the sc.sparse_input_linear kernel against its reference, the
CLI / pipeline entry points and the calibration errors."""
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsec as sc
from sparsec.cli import main as cli
from sparsec.fileio import write_weights
from sparsec.passes import PASSES, PassFailure, PassManager, PipelineError, Statistics, parse_pipeline
from sparsec.passes.activation_sparsity import ActivationSparsity, find_mlps, measure_sparsity
from sparsec.lower.cpu import LoweringError, lower_op
from sparsec.ops.sparsity import sparsify_input
from sparsec.runtime.cpu import sparse_linear as S
from sparsec.testing import check_pass, graphs

F32 = "float32"
_settings = dict(deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_pass(g, text="activation-sparsity{target=0.5}"):
    pm = PassManager.parse(text, verify_each=True)
    out = pm.run(g)
    stats = Statistics()
    for r in pm.report:
        stats.update(r.stats)
    return out, stats


def sparse_ops(g, fn="main"):
    return [op for op in g.functions[fn].ops if op.name == "sc.sparse_input_linear"]


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def mlp_graph(hidden=64, ffn=176, activation="silu", gated=True, seed=1):
    m = sc.nn.MLP(hidden, ffn, activation, gated=gated, seed=seed)
    return m, sc.trace(m, sc.TensorSpec(("tokens", hidden), F32))


# ---------------------------------------------------------------------------------------------
# the pass on models

def test_swiglu_mlp_sparsity_error_and_weights():
    m, g = mlp_graph()
    g2, stats = run_pass(g)
    ops = sparse_ops(g2)
    assert [op.operands[1].owner.attrs["name"] for op in ops] == \
        ["gate_proj.weight.t", "up_proj.weight.t", "down_proj.weight.t"]
    assert not any(op.name == "sc.linear" for op in g2.main.ops)
    # transposed weights replace the old ones; the input graph keeps its own
    assert sorted(g2.weights) == ["down_proj.weight.t", "gate_proj.weight.t", "up_proj.weight.t"]
    np.testing.assert_array_equal(g2.weights["down_proj.weight.t"], g.weights["down_proj.weight"].T)
    assert "gate_proj.weight" in g.weights
    # gate and up share the threshold of x; down has its own
    tx, tu, th = (op.attrs["threshold"] for op in ops)
    assert tx == tu and tx > 0 and th > 0 and tx != th
    assert stats["mlps sparsified"] == 1 and stats["linears sparsified"] == 3 and stats["weights transposed"] == 3
    label = "mlp(gate_proj,up_proj,down_proj)"
    assert stats[f"threshold ({label} x)"] == pytest.approx(tx, rel=1e-5)
    assert abs(stats[f"calibrated sparsity % ({label} h)"] - 50) < 1
    # fresh inputs (not the calibration batches): sparsity near the target, a bounded error
    x = np.random.default_rng(99).standard_normal((64, 64)).astype(np.float32)
    s = measure_sparsity(g2, x)
    assert abs(s["all"] - 0.5) < 0.06, s
    assert all(abs(v - 0.5) < 0.1 for v in s.values()), s
    (dense,) = sc.interpret(g, x)
    (sparse,) = sc.interpret(g2, x)
    err = rel_err(dense, sparse)
    # N(0,1) inputs and uniform weights are a worst case (real activations are heavier-tailed):
    # zeroing the smaller half of x removes ~10% of its energy, so the error is tens of percent
    assert 0.05 < err < 0.6, err
    # a lower target, a smaller error
    g3, _ = run_pass(g, "activation-sparsity{target=0.2}")
    (sparse20,) = sc.interpret(g3, x)
    assert rel_err(dense, sparse20) < err
    assert abs(measure_sparsity(g3, x)["all"] - 0.2) < 0.06


def test_target_zero_is_the_dense_mlp():
    m, g = mlp_graph(48, 100)
    g2, _ = run_pass(g, "activation-sparsity{target=0}")
    assert [op.attrs["threshold"] for op in sparse_ops(g2)] == [0.0, 0.0, 0.0]
    x = np.random.default_rng(1).standard_normal((5, 48)).astype(np.float32)
    (want,) = sc.interpret(g, x)
    (got,) = sc.interpret(g2, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert measure_sparsity(g2, x)["all"] == 0.0
    cm = sc.compile(g2, pipeline="", progress=False)
    for rows in (1, 3, 40):
        np.testing.assert_allclose(cm(x[:rows] if rows <= 5 else np.tile(x, (8, 1))),
                                   sc.interpret(g, x[:rows] if rows <= 5 else np.tile(x, (8, 1)))[0],
                                   rtol=1e-5, atol=1e-6)


def test_causal_lm_main_and_decode():
    lm = sc.nn.CausalLM(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, ffn=88, seed=3)
    spec = sc.TensorSpec(("batch", "seq"), "int64", name="input_ids")
    dense = sc.compile(lm, spec, progress=False)
    cm = sc.compile(lm, spec, pipeline="default,activation-sparsity{target=0.5}", progress=False)
    rec = [r for r in cm.report["pass_records"] if r.name == "activation-sparsity"][0]
    # 2 layers in main + 2 in decode, sharing their thresholds (decode reuses main's calibration)
    assert rec.stats["mlps sparsified"] == 4 and rec.stats["weights transposed"] == 6
    assert len(sparse_ops(cm.graph, "main")) == 6 and len(sparse_ops(cm.graph, "decode")) == 6
    th = lambda fn: [op.attrs["threshold"] for op in sparse_ops(cm.graph, fn)]  # noqa: E731
    assert th("main") == th("decode")
    for fn in ("main", "decode"):
        assert cm.report["kernels"][fn]["sparse_input_linear_f32 (numba)"] == 6
    assert not any(k.startswith("model.layers.0.mlp.") and not k.endswith(".t") for k in cm.graph.weights)
    ids = np.random.default_rng(7).integers(0, 64, (2, 12))
    s = measure_sparsity(cm.graph, ids)
    assert abs(s["all"] - 0.5) < 0.1, s
    want, got = dense(ids), cm(ids)
    np.testing.assert_allclose(got, sc.interpret(cm.graph, ids)[0], rtol=2e-4, atol=2e-4)
    err = rel_err(want, got)
    assert 0 < err < 0.5, err
    out = cm.generate(ids[:1], 3)
    assert out.shape == (1, 15)


def test_saved_and_loaded(tmp_path):
    m, g = mlp_graph(32, 80)
    cm = sc.compile(g, pipeline="default,activation-sparsity{target=0.5}", progress=False)
    path = str(tmp_path / "m.spc")
    cm.save(path)
    cm2 = sc.load(path)
    x = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
    np.testing.assert_array_equal(cm2(x), cm(x))
    assert len(sparse_ops(cm2.graph)) == 3


def test_decoder_model_and_sites_down():
    layers = [sc.nn.DecoderLayer(32, sc.nn.Attention(32, 4, 2, 8, seed=i), sc.nn.MLP(32, 64, "gelu_tanh", seed=i))
              for i in range(2)]
    model = sc.nn.DecoderModel(50, 32, layers, seed=0)
    g = sc.trace(model, sc.TensorSpec(("batch", "seq"), "int64", name="input_ids"))
    g2, stats = run_pass(g, "activation-sparsity{target=0.4,sites=down,samples=4,tokens=8}")
    assert stats["mlps sparsified"] == 2 and stats["linears sparsified"] == 2
    ops = sparse_ops(g2)
    assert [op.operands[1].owner.attrs["name"] for op in ops] == \
        [f"model.layers.{i}.mlp.down_proj.weight.t" if False else f"layers.{i}.mlp.down_proj.weight.t"
         for i in range(2)]
    assert sum(op.name == "sc.linear" and "mlp" in op.operands[1].owner.attrs["name"] for op in g2.main.ops) == 4
    assert not any("threshold" in k and " x)" in k for k in stats)
    ids = np.random.default_rng(3).integers(0, 50, (1, 16))
    assert abs(measure_sparsity(g2, ids)["all"] - 0.4) < 0.1


class _Plain(sc.nn.Module):
    """fc2(act(fc1(x))) and, beside it, a SwiGLU written up * act(gate) (the other mul order)."""

    def __init__(self, act):
        super().__init__()
        self.act = act
        self.fc1, self.fc2 = sc.nn.Linear(12, 20, seed=1), sc.nn.Linear(20, 12, seed=2)
        self.gate, self.up, self.down = sc.nn.Linear(12, 24, seed=3), sc.nn.Linear(12, 24, seed=4), \
            sc.nn.Linear(24, 12, seed=5)

    def forward(self, x):
        a = sc.nn.layers.ACTIVATIONS[self.act]
        y = self.fc2(a(self.fc1(x)))
        return self.down(self.up(y) * a(self.gate(y)))


def _numpy_model(g2, w, x, act):
    """The thresholded model in NumPy, from the thresholds the pass chose."""
    t = [op.attrs["threshold"] for op in sparse_ops(g2)]
    f = {"silu": lambda v: v / (1 + np.exp(-v)), "relu": lambda v: np.maximum(v, 0),
         "gelu": lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / np.sqrt(2))),
         "gelu_tanh": lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)))}[act]
    sp = lambda v, th: np.where(np.abs(v) < np.float32(th), 0, v)  # noqa: E731
    y = sp(f(sp(x, t[0]) @ w["fc1.weight"].T), t[1]) @ w["fc2.weight"].T
    h = f(sp(y, t[2]) @ w["gate.weight"].T) * (sp(y, t[3]) @ w["up.weight"].T)
    assert t[2] == t[3]
    return sp(h, t[4]) @ w["down.weight"].T


@settings(max_examples=12, **_settings)
@given(act=st.sampled_from(["silu", "gelu", "gelu_tanh", "relu"]), target=st.sampled_from([0.0, 0.3, 0.5, 0.8]),
       rows=st.integers(1, 9), seed=st.integers(0, 2**16), fuse=st.booleans())
def test_rewrite_is_the_thresholded_model(act, target, rows, seed, fuse):
    m = _Plain(act)
    g = sc.trace(m, sc.TensorSpec(("tokens", 12), F32))
    pipeline = f"activation-sparsity{{target={target}}}"
    g2, stats = run_pass(g, ("fuse-elementwise," if fuse else "") + pipeline)
    assert stats["mlps sparsified"] == 2 and len(sparse_ops(g2)) == 5
    x = np.random.default_rng(seed).standard_normal((rows, 12)).astype(np.float32)
    want = _numpy_model(g2, {k: v.astype(np.float64) for k, v in m.state_dict().items()}, x.astype(np.float64), act)
    (got,) = sc.interpret(g2, x)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    cm = sc.compile(g2, pipeline="", progress=False)
    np.testing.assert_allclose(cm(x), got, rtol=1e-4, atol=1e-5)


def test_left_alone():
    # MoE experts (dense form: masked by routing weights; dispatch form: grouped matmuls), a
    # linear with a bias, a hidden value used twice
    moe = sc.nn.MoE(16, 32, 4, 2, seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 16), F32))
    for text in ("activation-sparsity", "default,activation-sparsity"):
        g2, stats = run_pass(g, text)
        assert not sparse_ops(g2) and not stats["mlps sparsified"]

    class Odd(sc.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = sc.nn.MLP(8, 16, bias=True, seed=1)
            self.gate, self.down = sc.nn.Linear(8, 16, seed=2), sc.nn.Linear(16, 8, seed=3)

        def forward(self, x):
            g = self.gate(x)
            return self.a(x) + self.down(sc.ops.silu(g)) + sc.ops.sum(g, axis=-1, keepdims=True)
    g = sc.trace(Odd(), sc.TensorSpec(("tokens", 8), F32))
    assert find_mlps(g.main) == []
    g2, stats = run_pass(g)
    assert str(g2) == str(g) and not stats


def test_chain_of_plain_mlps_rewrites_each_linear_once():
    class Chain(sc.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.l3 = (sc.nn.Linear(8, 8, seed=i) for i in range(3))

        def forward(self, x):
            return self.l3(sc.ops.relu(self.l2(sc.ops.relu(self.l1(x)))))
    g = sc.trace(Chain(), sc.TensorSpec(("tokens", 8), F32))
    assert len(find_mlps(g.main)) == 1
    g2, stats = run_pass(g)
    assert stats["mlps sparsified"] == 1 and len(sparse_ops(g2)) == 2
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    cm = sc.compile(g2, pipeline="", progress=False)
    np.testing.assert_allclose(cm(x), sc.interpret(g2, x)[0], rtol=1e-5, atol=1e-6)


def test_shared_expert_is_a_dense_mlp():
    moe = sc.nn.MoE(16, 32, 4, 2, shared_ffn=24, seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 16), F32))
    g2, stats = run_pass(g, "activation-sparsity{samples=2}")
    assert stats["mlps sparsified"] == 1
    assert len(sparse_ops(g2)) == 3 and all("shared" in op.operands[1].owner.attrs["name"] for op in sparse_ops(g2))
    routed = lambda g: sum(op.name == "sc.linear" and "experts." in op.operands[1].owner.attrs["name"]  # noqa: E731
                           for op in g.main.ops)
    assert routed(g2) == routed(g) == 12  # 4 experts x 3 projections, left to sparse-activation
    g3, stats3 = run_pass(g2, "sparse-activation")
    assert stats3["moe blocks rewritten"] == 1


# ---------------------------------------------------------------------------------------------
# random graphs

@settings(max_examples=25, **_settings)
@given(g=graphs(max_ops=6, ops=["sc.linear", "sc.silu", "sc.relu", "sc.mul", "sc.add", "sc.exp", "sc.sum"]))
def test_graphs_without_mlps_are_unchanged(g):
    if not any(find_mlps(fn) for fn in g.functions.values()):
        g2, stats = run_pass(g)
        assert str(g2) == str(g) and not stats
    else:  # (random inputs of a drawn graph may not be calibratable: target=0 needs no data)
        g2, stats = run_pass(g, "activation-sparsity{target=0}")
        assert stats["mlps sparsified"] >= 1 and sparse_ops(g2)


def test_check_pass_random_graphs():
    # target=0 makes any MLP a random graph happens to hold an exact rewrite, so the pass must
    # keep the meaning of every graph (and verify)
    check_pass(ActivationSparsity(target=0.0), examples=25, max_ops=6,
               ops=["sc.linear", "sc.silu", "sc.gelu", "sc.relu", "sc.mul", "sc.add", "sc.sparse_input_linear"])


@pytest.mark.slow
def test_check_pass_random_graphs_many():
    check_pass(ActivationSparsity(target=0.0), examples=300, max_ops=10)


# ---------------------------------------------------------------------------------------------
# the kernel

def _kernel_case(x, w, t):
    out = np.full((x.shape[0], w.shape[1]), np.nan, np.float32)
    S.sparse_input_linear_f32(x, w, t, out)
    want = sparsify_input(x, t).astype(np.float64) @ w.astype(np.float64)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.sqrt(max(x.shape[1], 1)))
    return out


@settings(max_examples=40, **_settings)
@given(rows=st.sampled_from([0, 1, 2, 3, 7, 8, 9, 17, S.SPARSE_MAX_ROWS - 1, S.SPARSE_MAX_ROWS, 70]),
       k=st.integers(1, 70), n=st.sampled_from([1, 5, 16, 17, 63, 130]),
       t=st.sampled_from([0.0, 0.3, 0.9, 1e30]), seed=st.integers(0, 2**16))
def test_kernel_matches_reference(rows, k, n, t, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    x[rng.random(x.shape) < 0.1] = 0.0
    w = rng.standard_normal((k, n)).astype(np.float32)
    out = _kernel_case(x, w, t)
    if t == 1e30:
        assert not np.any(out)  # every input skipped: zeros


def test_kernel_wide_and_threaded():
    rng = np.random.default_rng(0)
    for rows in (1, 2, 5, 33):
        x = rng.standard_normal((rows, 1024)).astype(np.float32)
        w = rng.standard_normal((1024, 2816)).astype(np.float32) / 32
        _kernel_case(x, w, 0.67)
        _kernel_case(x, w, 0.0)


def test_kernel_nan_and_inf_inputs_are_kept():
    x = np.array([[np.nan, 0.1, -np.inf, 2.0]], np.float32)
    w = np.ones((4, 3), np.float32)
    out = np.empty((1, 3), np.float32)
    S.sparse_input_linear_f32(x, w, 0.5, out)
    assert np.all(np.isnan(out))
    x[0, 0] = 1.0
    S.sparse_input_linear_f32(x, w, 0.5, out)
    assert np.all(out == -np.inf)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_compiled_op_matches_interpreter(dtype):
    class One(sc.nn.Module):
        def __init__(self):
            super().__init__()
            w = np.random.default_rng(0).standard_normal((40, 24)).astype(np.float32) / 6
            self.w = sc.frontend.tracer.Parameter(w.astype(dtype) if dtype != "bfloat16" else
                                                  w.astype(__import__("ml_dtypes").bfloat16))

        def forward(self, x):
            return sc.ops.sparse_input_linear(x, self.w, 0.5)
    np_dtype = np.dtype(dtype) if dtype != "bfloat16" else np.dtype(__import__("ml_dtypes").bfloat16)
    g = sc.trace(One(), sc.TensorSpec(("batch", "tokens", 40), dtype))
    cm = sc.compile(g, pipeline="", progress=False)
    for shape in [(1, 1, 40), (2, 3, 40), (1, 0, 40), (2, 40, 40)]:
        x = np.random.default_rng(1).standard_normal(shape).astype(np_dtype)
        (want,) = sc.interpret(g, x)
        got = cm(x)
        assert got.dtype == want.dtype and got.shape == want.shape
        tol = 1e-5 if dtype in ("float32", "float64") else 2e-2
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)


def test_op_shape_rule_errors():
    with pytest.raises(Exception, match="threshold must be a finite number >= 0"):
        sc.trace(lambda x, w: sc.ops.sparse_input_linear(x, w, -1.0), sc.TensorSpec((2, 4), F32),
                 sc.TensorSpec((4, 3), F32))
    with pytest.raises(Exception, match=r"differ from weight \[in, out\]"):
        sc.trace(lambda x, w: sc.ops.sparse_input_linear(x, w, 0.1), sc.TensorSpec((2, 4), F32),
                 sc.TensorSpec((3, 4), F32))


def test_lowering_refuses_quantized_or_int():
    g = sc.trace(lambda x, w: sc.ops.sparse_input_linear(x, w, 0.1), sc.TensorSpec((2, 4), F32),
                 sc.TensorSpec((4, 3), F32))
    op = sparse_ops(g)[0]
    assert lower_op(op).name == "sparse_input_linear_f32"
    with pytest.raises(Exception):
        sc.trace(lambda x, w: sc.ops.sparse_input_linear(x, w, 0.1), sc.TensorSpec((2, 4), "int32"),
                 sc.TensorSpec((4, 3), "int32"))
    assert issubclass(LoweringError, Exception)


# ---------------------------------------------------------------------------------------------
# entry points, options and errors

def test_registered_opt_in_and_options_round_trip():
    assert "activation-sparsity" in PASSES
    from sparsec.passes import PIPELINES
    assert "activation-sparsity" not in PIPELINES["default"]
    (p,) = parse_pipeline("activation-sparsity{target=0.3,sites=down,samples=2,tokens=4,seed=5}")
    assert p == ActivationSparsity(target=0.3, sites="down", samples=2, tokens=4, seed=5)
    assert parse_pipeline(str(p)) == [p]
    for bad in ("activation-sparsity{target=1.0}", "activation-sparsity{sites=up}",
                "activation-sparsity{samples=0}", "activation-sparsity{target=x}"):
        with pytest.raises(PipelineError):
            parse_pipeline(bad)


def test_cli_opt(tmp_path):
    m, g = mlp_graph(16, 40)
    path = tmp_path / "model.mlir"
    path.write_text(str(g))
    write_weights(str(tmp_path / "model.safetensors"), dict(g.weights))
    out = tmp_path / "out.mlir"
    r = CliRunner().invoke(cli, ["opt", str(path), "-p", "activation-sparsity{target=0.5}", "-o", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.count('"sc.sparse_input_linear"') == 3 and '"sc.linear"' not in text
    g2 = sc.compile(str(out), progress=False).graph
    assert sorted(g2.weights) == ["down_proj.weight.t", "gate_proj.weight.t", "up_proj.weight.t"]
    # without the weights beside the IR: a clear error
    (tmp_path / "model.safetensors").unlink()
    r = CliRunner().invoke(cli, ["opt", str(path), "-p", "activation-sparsity"])
    assert r.exit_code != 0 and "weight store" in r.output


def test_calibration_errors_and_npz(tmp_path):
    class WithInts(sc.nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = sc.nn.MLP(8, 16, seed=0)

        def forward(self, x, pos):
            return self.mlp(x) + sc.ops.cast(pos, F32)
    g = sc.trace(WithInts(), sc.TensorSpec(("tokens", 8), F32, name="x"), sc.TensorSpec(("tokens", 1), "int64",
                                                                                     name="pos"))
    with pytest.raises(PassFailure, match="input 'pos' of @main.*calibration=<file.npz>"):
        run_pass(g)
    rng = np.random.default_rng(0)
    path = tmp_path / "calib.npz"
    np.savez(path, x=rng.standard_normal((64, 8)).astype(np.float32), pos=np.zeros((64, 1), np.int64))
    g2, stats = run_pass(g, f"activation-sparsity{{calibration={path}}}")
    assert stats["mlps sparsified"] == 1
    # a stack of batches (one more leading axis) calibrates the same way
    stack = tmp_path / "stack.npz"
    np.savez(stack, x=rng.standard_normal((4, 16, 8)).astype(np.float32), pos=np.zeros((4, 16, 1), np.int64))
    g3, stats3 = run_pass(g, f"activation-sparsity{{calibration={stack}}}")
    assert abs(stats3["calibrated sparsity % (mlp x)"] - 50) < 2
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 8), np.float32))
    with pytest.raises(PassFailure, match="no array for input.*pos"):
        run_pass(g, f"activation-sparsity{{calibration={bad}}}")
    with pytest.raises(PassFailure, match="cannot read calibration data"):
        run_pass(g, f"activation-sparsity{{calibration={tmp_path / 'missing.npz'}}}")
    # target=0 needs no calibration data at all
    g4, stats4 = run_pass(g, "activation-sparsity{target=0}")
    assert stats4["mlps sparsified"] == 1
