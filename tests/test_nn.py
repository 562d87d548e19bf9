"""sc.nn models: Hugging Face parameter names, state-dict loading, traced CausalLM / BERT against
independent NumPy forward passes, symbolic-shape round trips and tracing errors."""
import inspect
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsec as sc
from sparsec.errors import SparsecError

# ---------------------------------------------------------------------------------------------
# independent NumPy forward passes (float64, written from the HF modelling code)


def np_rms(x, w, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w


def np_ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def np_rope(x, pos, theta):
    d = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    f = pos.astype(np.float64)[:, None] * inv
    emb = np.concatenate([f, f], -1)
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * np.cos(emb) + rot * np.sin(emb)


def np_attn(q, k, v, causal, add_mask=None):
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # HF repeat_kv
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if add_mask is not None:
        s = s + add_mask
    if causal:
        S, L = s.shape[-2:]
        s = np.where(np.tril(np.ones((S, L), bool), L - S), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def np_llama(sd, ids, cfg, mlp_names=("gate_proj", "up_proj", "down_proj")):
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    H, Hkv, D, eps, theta = cfg["heads"], cfg["kv_heads"], cfg["head_dim"], cfg["norm_eps"], cfg["rope_theta"]
    B, S = ids.shape
    lin = lambda x, n: x @ sd[n + ".weight"].T + sd.get(n + ".bias", 0.0)  # noqa: E731
    h = sd["model.embed_tokens.weight"][ids]
    pos = np.arange(S)
    for i in range(cfg["layers"]):
        p = f"model.layers.{i}."
        x = np_rms(h, sd[p + "input_layernorm.weight"], eps)
        q = lin(x, p + "self_attn.q_proj").reshape(B, S, H, D)
        k = lin(x, p + "self_attn.k_proj").reshape(B, S, Hkv, D)
        v = lin(x, p + "self_attn.v_proj").reshape(B, S, Hkv, D)
        if cfg["qk_norm"]:
            q = np_rms(q, sd[p + "self_attn.q_norm.weight"], eps)
            k = np_rms(k, sd[p + "self_attn.k_norm.weight"], eps)
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        q, k = np_rope(q, pos, theta), np_rope(k, pos, theta)
        a = np_attn(q, k, v, causal=True).transpose(0, 2, 1, 3).reshape(B, S, H * D)
        h = h + lin(a, p + "self_attn.o_proj")
        x = np_rms(h, sd[p + "post_attention_layernorm.weight"], eps)
        g, u, d = (p + "mlp." + n for n in mlp_names)
        gx = lin(x, g)
        h = h + lin(gx / (1 + np.exp(-gx)) * lin(x, u), d)
    h = np_rms(h, sd["model.norm.weight"], eps)
    head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    return h @ head.T


def np_gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def np_bert(sd, ids, am, tt, cfg):
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    H, eps = cfg["heads"], cfg["eps"]
    B, S = ids.shape
    D = cfg["hidden"] // H
    lin = lambda x, n: x @ sd[n + ".weight"].T + sd[n + ".bias"]  # noqa: E731
    ln = lambda x, n: np_ln(x, sd[n + ".weight"], sd[n + ".bias"], eps)  # noqa: E731
    e = "embeddings."
    h = sd[e + "word_embeddings.weight"][ids] + sd[e + "position_embeddings.weight"][np.arange(S)] \
        + sd[e + "token_type_embeddings.weight"][tt]
    h = ln(h, e + "LayerNorm")
    add = None if am is None else (1.0 - am[:, None, None, :]) * np.finfo(np.float32).min
    for i in range(cfg["layers"]):
        p = f"encoder.layer.{i}."
        heads = lambda t: t.reshape(B, S, H, D).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (heads(lin(h, p + "attention.self." + n)) for n in ("query", "key", "value"))
        a = np_attn(q, k, v, causal=False, add_mask=add).transpose(0, 2, 1, 3).reshape(B, S, H * D)
        a = ln(lin(a, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
        f = np_gelu(lin(a, p + "intermediate.dense"))
        h = ln(lin(f, p + "output.dense") + a, p + "output.LayerNorm")
    return h


def random_state(model, seed):
    """Random weights for every parameter; norm weights near 1 so every tensor matters."""
    r = np.random.default_rng(seed)
    out = {}
    for n, a in model.state_dict().items():
        x = r.standard_normal(a.shape) * (0.1 if n.endswith("norm.weight") or "LayerNorm" in n else 0.3)
        if n.endswith("norm.weight") or n.endswith("LayerNorm.weight"):
            x = x + 1.0
        out[n] = x.astype(np.float32)
    return out


def close(a, b, tol=1e-4):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


SMALL = dict(vocab=37, hidden=32, layers=2, heads=4, kv_heads=2, ffn=48, rope_theta=10000.0)

# ---------------------------------------------------------------------------------------------
# names


def llama_names(layers, bias=False, qk_norm=False, tied=False):
    names = {"model.embed_tokens.weight", "model.norm.weight"} | (set() if tied else {"lm_head.weight"})
    for i in range(layers):
        p = f"model.layers.{i}."
        names |= {p + "input_layernorm.weight", p + "post_attention_layernorm.weight"}
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            names.add(p + f"self_attn.{proj}.weight")
            if bias:
                names.add(p + f"self_attn.{proj}.bias")
        for proj in ("gate_proj", "up_proj", "down_proj"):
            names.add(p + f"mlp.{proj}.weight")
        if qk_norm:
            names |= {p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"}
    return names


@pytest.mark.parametrize("kw", [{}, {"attention_bias": True}, {"qk_norm": True}, {"tie_word_embeddings": True}])
def test_causal_lm_names_and_shapes_match_hf(kw):
    m = sc.nn.CausalLM(**SMALL, **kw)
    sd = m.state_dict()
    assert set(sd) == llama_names(2, kw.get("attention_bias", False), kw.get("qk_norm", False),
                                  kw.get("tie_word_embeddings", False))
    D = 32 // 4
    assert sd["model.embed_tokens.weight"].shape == (37, 32)
    assert sd["model.layers.1.self_attn.q_proj.weight"].shape == (4 * D, 32)
    assert sd["model.layers.1.self_attn.k_proj.weight"].shape == (2 * D, 32)
    assert sd["model.layers.0.self_attn.o_proj.weight"].shape == (32, 4 * D)
    assert sd["model.layers.0.mlp.gate_proj.weight"].shape == (48, 32)
    assert sd["model.layers.0.mlp.down_proj.weight"].shape == (32, 48)
    if kw.get("qk_norm"):
        assert sd["model.layers.0.self_attn.q_norm.weight"].shape == (D,)
    if kw.get("tie_word_embeddings"):
        assert m.lm_head.weight is m.model.embed_tokens.weight
    else:
        assert sd["lm_head.weight"].shape == (37, 32)


BERT_LAYER_NAMES = [
    "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
    "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias",
]


def test_bert_names_match_hf_in_order():
    m = sc.nn.BertModel(vocab=50, hidden=16, layers=2, heads=2, intermediate=24, max_position=20)
    expect = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
              "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(2):
        expect += [f"encoder.layer.{i}.{n}" for n in BERT_LAYER_NAMES]
    expect += ["pooler.dense.weight", "pooler.dense.bias"]
    sd = m.state_dict()
    assert list(sd) == expect  # HF BertModel.state_dict() order (position_ids is a buffer, not a weight)
    assert sd["embeddings.position_embeddings.weight"].shape == (20, 16)
    assert sd["encoder.layer.0.intermediate.dense.weight"].shape == (24, 16)
    assert sd["encoder.layer.0.output.dense.weight"].shape == (16, 24)
    nopool = sc.nn.BertModel(vocab=50, hidden=16, layers=1, heads=2, add_pooling_layer=False)
    assert not any(n.startswith("pooler") for n in nopool.state_dict())


def test_load_state_dict_errors_name_the_tensor():
    m = sc.nn.CausalLM(**SMALL)
    sd = random_state(m, 0)
    bad = dict(sd)
    bad["model.layers.1.self_attn.k_proj.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(SparsecError, match=r"model\.layers\.1\.self_attn\.k_proj\.weight.*\(3, 3\)"):
        m.load_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "model.norm.weight"}
    with pytest.raises(SparsecError, match=r"missing: model\.norm\.weight"):
        m.load_state_dict(missing)
    with pytest.raises(SparsecError, match=r"unexpected: model\.layers\.9\.mlp\.gate_proj\.weight"):
        m.load_state_dict({**sd, "model.layers.9.mlp.gate_proj.weight": sd["model.layers.0.mlp.gate_proj.weight"]})
    m.load_state_dict(sd)
    np.testing.assert_array_equal(m.state_dict()["model.norm.weight"], sd["model.norm.weight"])


# ---------------------------------------------------------------------------------------------
# CausalLM


@pytest.mark.parametrize("dtype", ["bfloat16", "f16"])
def test_module_to_casts_float_parameters_and_traces_in_that_dtype(dtype):
    """``Module.to`` rounds every float parameter once; the traced model computes in the dtype
    (the compiled CPU model within its rounding of the interpreter's)."""
    from sparsec.ir.dtypes import as_dtype
    dt = as_dtype(dtype).np
    moe = sc.nn.MoE(16, 24, 4, 2, router="softmax", norm_topk_prob=True, naming="mixtral", seed=0)
    f32 = {n: p.data.copy() for n, p in moe.named_parameters()}
    assert moe.to(dtype) is moe
    for n, p in moe.named_parameters():
        assert p.data.dtype == dt and np.array_equal(p.data, f32[n].astype(dt)), n
    g = sc.trace(moe, sc.TensorSpec(("tokens", 16), dtype))
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(dt)
    (want,) = sc.interpret(g, x)
    got = sc.compile(g, progress=False)(x)
    assert got.dtype == want.dtype == dt
    scale = max(1.0, float(np.abs(want.astype(np.float32)).max()))
    assert float(np.abs(got.astype(np.float32) - want.astype(np.float32)).max()) <= 3e-2 * scale
    moe.to("float32")
    assert all(p.data.dtype == np.float32 for p in moe.parameters())
    with pytest.raises(SparsecError, match="floating-point"):
        moe.to("int64")
    with pytest.raises(SparsecError, match="not a dtype"):
        moe.to("float7")


def test_causal_lm_symbolic_trace_round_trips_and_matches_numpy():
    m = sc.nn.CausalLM(**SMALL)
    sd = random_state(m, 1)
    m.load_state_dict(sd)
    g = sc.trace(m, sc.TensorSpec(("batch", "seq"), "int64"))
    text = str(g)
    assert 'sc.param' in text and '"model.layers.1.self_attn.q_proj.weight"' in text
    g2 = sc.parse(text)
    assert str(g2) == text
    out_t = g2.main.body.ops[-1].operands[0].type
    assert out_t.shape == ("batch", "seq", 37) and out_t.dtype.name == "f32"
    ids = np.random.default_rng(2).integers(0, 37, size=(2, 5)).astype(np.int64)
    (logits,) = sc.interpret(g2, ids, weights=sd)
    assert logits.shape == (2, 5, 37) and logits.dtype == np.float32
    cfg = {**m.config}
    close(logits, np_llama(sd, ids, cfg))
    # other concrete shapes through the same symbolic graph
    ids3 = ids[:1, :3]
    (l3,) = sc.interpret(g2, ids3, weights=sd)
    close(l3, np_llama(sd, ids3, cfg))
    # causal: the logits at a position do not depend on later tokens
    np.testing.assert_allclose(l3, logits[:1, :3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [{"qk_norm": True, "tie_word_embeddings": True},
                                {"attention_bias": True, "kv_heads": 1, "head_dim": 4}])
def test_causal_lm_variants_eager(kw):
    m = sc.nn.CausalLM(**{**SMALL, "layers": 1, **kw})
    sd = random_state(m, 3)
    m.load_state_dict(sd)
    ids = np.array([[1, 5, 7, 36]], np.int64)
    close(m(ids), np_llama(sd, ids, m.config))


def test_causal_lm_mlp_hook_plugs_custom_blocks():
    class Doubling(sc.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = sc.nn.Linear(32, 32, seed=4)

        def forward(self, x):
            return self.proj(x) * 2.0

    built = []

    def mlp(i):
        built.append(i)
        return Doubling() if i == 1 else sc.nn.MLP(32, 48, seed=i)

    m = sc.nn.CausalLM(**SMALL, mlp=mlp)
    assert built == [0, 1]
    names = set(m.state_dict())
    assert "model.layers.1.mlp.proj.weight" in names and "model.layers.1.mlp.gate_proj.weight" not in names
    assert "model.layers.0.mlp.gate_proj.weight" in names
    g = sc.trace(m, sc.TensorSpec((1, 3), "int64"))
    assert any(op.attrs.get("name") == "model.layers.1.mlp.proj.weight" for op in g.main.body.ops)


# ---------------------------------------------------------------------------------------------
# Attention module


@given(st.integers(0, 2 ** 31), st.sampled_from([(4, 4), (4, 2), (4, 1)]), st.integers(1, 4), st.booleans())
def test_attention_module_matches_numpy(seed, heads, seq, causal):
    H, Hkv = heads
    att = sc.nn.Attention(16, H, Hkv, rope_theta=100.0, causal=causal, seed=seed % 1000)
    x = np.random.default_rng(seed).standard_normal((2, seq, 16)).astype(np.float32)
    y = att(x)
    sd = {k: v.astype(np.float64) for k, v in att.state_dict().items()}
    D = 16 // H
    x64 = x.astype(np.float64)
    q, k, v = (np.transpose((x64 @ sd[f"{n}_proj.weight"].T).reshape(2, seq, -1, D), (0, 2, 1, 3)) for n in "qkv")
    pos = np.arange(seq)
    a = np_attn(np_rope(q, pos, 100.0), np_rope(k, pos, 100.0), v, causal)
    close(y, a.transpose(0, 2, 1, 3).reshape(2, seq, 16) @ sd["o_proj.weight"].T)


def test_attention_module_rejects_bad_heads():
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        sc.nn.Attention(16, 4, 3)
    with pytest.raises(ValueError, match="head_dim"):
        sc.nn.Attention(18, 4)


# ---------------------------------------------------------------------------------------------
# BERT


def test_bert_matches_numpy_with_padding_and_token_types():
    m = sc.nn.BertModel(vocab=40, hidden=16, layers=2, heads=4, intermediate=24, max_position=12)
    sd = random_state(m, 5)
    m.load_state_dict(sd)
    specs = [sc.TensorSpec(("batch", "seq"), "int64")] * 3
    g = sc.trace(m, *specs)
    assert [a for a in g.main.input_names()] == ["input_ids", "attention_mask", "token_type_ids"]
    text = str(g)
    assert str(sc.parse(text)) == text
    r = np.random.default_rng(6)
    ids = r.integers(0, 40, size=(2, 6)).astype(np.int64)
    am = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], np.int64)
    tt = np.array([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]], np.int64)
    (h,) = sc.interpret(sc.parse(text), ids, am, tt, weights=sd)
    assert h.shape == (2, 6, 16) and h.dtype == np.float32
    close(h, np_bert(sd, ids, am, tt, m.config))
    # padding keys are ignored: changing the padded tokens leaves the real tokens' states unchanged
    ids2 = ids.copy()
    ids2[1, 4:] = (ids2[1, 4:] + 1) % 40
    (h2,) = sc.interpret(g, ids2, am, tt)
    np.testing.assert_allclose(h2[1, :4], h[1, :4], rtol=1e-5, atol=1e-5)
    assert not np.allclose(h2[1, 4:], h[1, 4:])


def test_bert_without_token_types_uses_type_zero():
    m = sc.nn.BertModel(vocab=40, hidden=16, layers=1, heads=2, intermediate=24, max_position=12)
    sd = random_state(m, 7)
    m.load_state_dict(sd)
    ids = np.array([[3, 9, 27, 1]], np.int64)
    am = np.ones_like(ids)
    close(m(ids, am), np_bert(sd, ids, am, np.zeros_like(ids), m.config))
    close(m(ids), np_bert(sd, ids, None, np.zeros_like(ids), m.config))


# ---------------------------------------------------------------------------------------------
# tracing errors


def test_data_dependent_control_flow_names_the_user_line():
    def branchy(x):
        if x.sum() > 0:
            return x
        return -x

    line = inspect.getsourcelines(branchy)[1] + 1
    with pytest.raises(sc.TraceError) as e:
        sc.trace(branchy, sc.TensorSpec(("n", 3)))
    assert f"test_nn.py:{line}" in str(e.value)
    assert "if x.sum() > 0" in str(e.value)


def test_shape_error_inside_a_module_names_the_user_line():
    att = sc.nn.Attention(16, 4, 2)

    def bad(x):
        return att(x)

    with pytest.raises(sc.TraceError, match="test_nn.py"):
        sc.trace(bad, sc.TensorSpec((1, 3, 12)))


def test_model_text_parses_with_xdsl(tmp_path):
    import shutil
    import subprocess
    exe = shutil.which("xdsl-opt")
    if exe is None:
        pytest.skip("xdsl-opt is not installed")
    lm = sc.nn.CausalLM(**{**SMALL, "layers": 1, "qk_norm": True})
    bert = sc.nn.BertModel(vocab=40, hidden=16, layers=1, heads=2)
    for name, g in (("lm", sc.trace(lm, sc.TensorSpec(("batch", "seq"), "int64"))),
                    ("bert", sc.trace(bert, *[sc.TensorSpec(("batch", "seq"), "int64")] * 2))):
        p = tmp_path / f"{name}.mlir"
        p.write_text(str(g))
        r = subprocess.run([exe, "--allow-unregistered-dialect", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "sc.attention" in r.stdout
        if name == "lm":
            assert "sc.rope" in r.stdout and "sc.rms_norm" in r.stdout
