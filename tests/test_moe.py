"""sc.nn.MoE: router families against NumPy formulas written from the published definitions
(Mixtral, Qwen2-MoE, Qwen3-MoE/OLMoE, DeepSeek-V3), checkpoint names, and the dense and sparse
formulations agreeing."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsec as sc

# ---------------------------------------------------------------------------------------------
# NumPy formulas, from the papers / Hugging Face modelling code, reading the state_dict only


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def softmax(v):
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def topk_ids(v, k):
    """Indices of the k largest entries per row, largest first (ties: lower index first)."""
    return np.argsort(-v, axis=-1, kind="stable")[..., :k]


def swiglu(x, sd, prefix, names):
    g, u, d = (sd[f"{prefix}.{n}.weight"].astype(np.float64) for n in names)
    a = x @ g.T
    return (a * sigmoid(a) * (x @ u.T)) @ d.T


def routed_sum(x, sd, ids, weights, names):
    """HF's loop: each selected expert applied to its tokens, weighted, accumulated."""
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            out[t] += weights[t, j] * swiglu(x[t:t + 1], sd, f"experts.{ids[t, j]}", names)[0]
    return out


def mixtral_ref(x, sd, k):
    """MixtralSparseMoeBlock: softmax over all router logits, top-k, renormalise."""
    x = x.astype(np.float64)
    probs = softmax(x @ sd["gate.weight"].T)
    ids = topk_ids(probs, k)
    w = np.take_along_axis(probs, ids, -1)
    w = w / w.sum(-1, keepdims=True)
    return routed_sum(x, sd, ids, w, ("w1", "w3", "w2"))


def qwen_ref(x, sd, k, norm_topk_prob, shared, shared_gate):
    """Qwen2-MoE / Qwen3-MoE / OLMoE: softmax, top-k, optional renormalisation; Qwen2-MoE adds
    ``sigmoid(shared_expert_gate(x)) * shared_expert(x)``."""
    x = x.astype(np.float64)
    names = ("gate_proj", "up_proj", "down_proj")
    probs = softmax(x @ sd["gate.weight"].T)
    ids = topk_ids(probs, k)
    w = np.take_along_axis(probs, ids, -1)
    if norm_topk_prob:
        w = w / w.sum(-1, keepdims=True)
    out = routed_sum(x, sd, ids, w, names)
    if shared:
        s = swiglu(x, sd, "shared_expert", names)
        if shared_gate:
            s = s * sigmoid(x @ sd["shared_expert_gate.weight"].T)
        out = out + s
    return out


def deepseek_v3_ref(x, sd, k, n_group, topk_group, norm_topk_prob, scale, shared):
    """DeepseekV3MoE (HF): sigmoid scores; selection on scores + e_score_correction_bias within the
    topk_group best groups (group score: sum of its top-2 biased scores; other groups masked to
    -inf); weights are the unbiased scores, renormalised (+1e-20), times routed_scaling_factor;
    shared experts added."""
    x = x.astype(np.float64)
    names = ("gate_proj", "up_proj", "down_proj")
    n_exp = sd["gate.weight"].shape[0]
    scores = sigmoid(x @ sd["gate.weight"].T.astype(np.float64))
    choice = scores + sd.get("gate.e_score_correction_bias", np.zeros(n_exp))
    t = x.shape[0]
    if n_group > 1:
        grouped = choice.reshape(t, n_group, n_exp // n_group)
        group_scores = np.sort(grouped, -1)[..., -2:].sum(-1)
        keep = np.zeros((t, n_group), bool)
        np.put_along_axis(keep, topk_ids(group_scores, topk_group), True, -1)
        choice = np.where(np.repeat(keep, n_exp // n_group, -1), choice, -np.inf)
    ids = topk_ids(choice, k)
    w = np.take_along_axis(scores, ids, -1)
    if norm_topk_prob:
        w = w / (w.sum(-1, keepdims=True) + 1e-20)
    w = w * scale
    out = routed_sum(x, sd, ids, w, names)
    if shared:
        out = out + swiglu(x, sd, "shared_experts", names)
    return out


def run(moe, x, spec=None):
    g = sc.trace(moe, spec or sc.TensorSpec(("tokens", x.shape[-1]), "float32"))
    (y,) = sc.interpret(g, x)
    return y


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def tokens(t, h, seed=0):
    return np.random.default_rng(seed).standard_normal((t, h)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the contract snippet

def test_contract_snippet():
    moe = sc.nn.MoE(hidden=64, ffn=128, num_experts=8, top_k=2, router="softmax", norm_topk_prob=True)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 64), "float32"))
    assert str(sc.parse(str(g))) == str(g)
    x = np.random.rand(5, 64).astype("float32")
    (y,) = sc.interpret(g, x)
    assert y.shape == (5, 64) and y.dtype == np.float32
    # default naming is Qwen's; the formula is Qwen3-MoE's with renormalisation
    close(y, qwen_ref(x, moe.state_dict(), 2, True, False, False))


# ---------------------------------------------------------------------------------------------
# checkpoint names

def test_mixtral_names():
    moe = sc.nn.MoE(16, 24, 4, 2, naming="mixtral", seed=0)
    sd = moe.state_dict()
    exp = {"gate.weight": (4, 16)}
    for e in range(4):
        exp.update({f"experts.{e}.w1.weight": (24, 16), f"experts.{e}.w3.weight": (24, 16),
                    f"experts.{e}.w2.weight": (16, 24)})
    assert {k: v.shape for k, v in sd.items()} == exp


def test_qwen2_moe_names():
    moe = sc.nn.MoE(16, 24, 4, 2, norm_topk_prob=False, shared_ffn=40, shared_expert_gate=True, seed=0)
    shapes = {k: v.shape for k, v in moe.state_dict().items()}
    assert shapes["gate.weight"] == (4, 16)
    assert shapes["experts.3.gate_proj.weight"] == (24, 16)
    assert shapes["experts.3.down_proj.weight"] == (16, 24)
    assert shapes["shared_expert.gate_proj.weight"] == (40, 16)
    assert shapes["shared_expert.up_proj.weight"] == (40, 16)
    assert shapes["shared_expert.down_proj.weight"] == (16, 40)
    assert shapes["shared_expert_gate.weight"] == (1, 16)
    assert len(shapes) == 1 + 4 * 3 + 3 + 1


def test_deepseek_v3_names():
    moe = sc.nn.MoE(16, 24, 8, 2, router="sigmoid", shared_ffn=48, n_group=4, topk_group=2,
                    score_bias=True, naming="deepseek", seed=0)
    shapes = {k: v.shape for k, v in moe.state_dict().items()}
    assert shapes["gate.weight"] == (8, 16)
    assert shapes["gate.e_score_correction_bias"] == (8,)
    assert shapes["shared_experts.down_proj.weight"] == (16, 48)
    assert "experts.7.up_proj.weight" in shapes
    assert len(shapes) == 2 + 8 * 3 + 3


def test_explicit_names_and_seed():
    a = sc.nn.MoE(8, 12, 3, 1, expert_names=("wg", "wu", "wd"), shared_ffn=8, shared_name="common", seed=5)
    b = sc.nn.MoE(8, 12, 3, 1, expert_names=("wg", "wu", "wd"), shared_ffn=8, shared_name="common", seed=5)
    c = sc.nn.MoE(8, 12, 3, 1, expert_names=("wg", "wu", "wd"), shared_ffn=8, shared_name="common", seed=6)
    sa, sb, sc_ = a.state_dict(), b.state_dict(), c.state_dict()
    assert "experts.2.wd.weight" in sa and "common.wu.weight" in sa
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert not np.array_equal(sa["experts.0.wg.weight"], sc_["experts.0.wg.weight"])
    # experts are initialised independently of one another
    assert not np.array_equal(sa["experts.0.wg.weight"], sa["experts.1.wg.weight"])


def test_graph_param_names_are_checkpoint_names():
    moe = sc.nn.MoE(8, 12, 3, 2, naming="mixtral", seed=1)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 8), "float32"))
    assert set(g.weights) == set(moe.state_dict())


# ---------------------------------------------------------------------------------------------
# router families against their formulas

def test_mixtral_router():
    moe = sc.nn.MoE(16, 24, 8, 2, router="softmax", norm_topk_prob=True, naming="mixtral", seed=1)
    x = tokens(7, 16)
    close(run(moe, x), mixtral_ref(x, moe.state_dict(), 2))


def test_qwen2_moe_router_with_gated_shared_expert():
    moe = sc.nn.MoE(16, 24, 6, 3, norm_topk_prob=False, shared_ffn=32, shared_expert_gate=True, seed=2)
    x = tokens(9, 16, 1)
    sd = moe.state_dict()
    y = run(moe, x)
    close(y, qwen_ref(x, sd, 3, False, True, True))
    # the formula is not blind to the pieces: without the gate or the shared expert it differs
    assert not np.allclose(y, qwen_ref(x, sd, 3, False, True, False), atol=1e-4)
    assert not np.allclose(y, qwen_ref(x, sd, 3, True, True, True), atol=1e-4)


@pytest.mark.parametrize("norm", [True, False])
def test_qwen3_olmoe_router(norm):
    moe = sc.nn.MoE(16, 20, 8, 4, norm_topk_prob=norm, seed=3)
    x = tokens(6, 16, 2)
    close(run(moe, x), qwen_ref(x, moe.state_dict(), 4, norm, False, False))


def set_bias(moe, seed, spread=0.5):
    sd = moe.state_dict()
    sd["gate.e_score_correction_bias"] = np.random.default_rng(seed).uniform(
        -spread, spread, sd["gate.e_score_correction_bias"].shape).astype(np.float32)
    moe.load_state_dict(sd)
    return sd


@pytest.mark.parametrize("n_group,topk_group,norm,scale", [(4, 2, True, 2.5), (1, 1, True, 1.0),
                                                            (8, 3, False, 1.0), (2, 1, True, 0.5)])
def test_deepseek_v3_router(n_group, topk_group, norm, scale):
    moe = sc.nn.MoE(16, 12, 16, 4, router="sigmoid", norm_topk_prob=norm, shared_ffn=24, n_group=n_group,
                    topk_group=topk_group, routed_scaling_factor=scale, score_bias=True, naming="deepseek", seed=4)
    sd = set_bias(moe, 7)
    x = tokens(11, 16, 3)
    y = run(moe, x)
    close(y, deepseek_v3_ref(x, sd, 4, n_group, topk_group, norm, scale, True))


def test_deepseek_dropped_groups_lose_to_negative_kept_scores():
    """Biased scores all negative: experts of dropped groups are masked to -inf (transformers
    5.x), so they never win over a kept group's negative scores (with 0.0 masking they would)."""
    moe = sc.nn.MoE(16, 12, 16, 4, router="sigmoid", n_group=4, topk_group=2, score_bias=True, naming="deepseek",
                    seed=4)
    sd = moe.state_dict()
    sd["gate.e_score_correction_bias"] = np.full(16, -5.0, np.float32)
    moe.load_state_dict(sd)
    x = tokens(9, 16, 3)
    close(run(moe, x), deepseek_v3_ref(x, sd, 4, 4, 2, True, 1.0, False))


def test_deepseek_bias_steers_selection_but_not_weights():
    """A large bias on expert 0 forces its selection while its weight stays sigmoid(logit)."""
    moe = sc.nn.MoE(8, 8, 4, 1, router="sigmoid", norm_topk_prob=False, score_bias=True, naming="deepseek", seed=9)
    sd = moe.state_dict()
    sd["gate.e_score_correction_bias"] = np.array([100.0, 0, 0, 0], np.float32)
    moe.load_state_dict(sd)
    x = tokens(5, 8, 4)
    y = run(moe, x)
    gate_w = sigmoid(x.astype(np.float64) @ sd["gate.weight"].T)[:, :1]
    close(y, gate_w * swiglu(x.astype(np.float64), sd, "experts.0", ("gate_proj", "up_proj", "down_proj")))
    close(y, deepseek_v3_ref(x, sd, 1, 1, 1, False, 1.0, False))


def test_group_limit_changes_the_choice():
    """With one group kept, the routed experts all come from that group (the formula and the
    module agree, and differ from unlimited routing)."""
    kw = dict(router="sigmoid", score_bias=True, naming="deepseek", seed=11)
    limited = sc.nn.MoE(8, 8, 8, 2, n_group=4, topk_group=1, **kw)
    free = sc.nn.MoE(8, 8, 8, 2, **kw)
    sd = limited.state_dict()
    # expert 2 wins unlimited routing; group {0, 1} wins the group vote (biases dominate sigmoids)
    sd["gate.e_score_correction_bias"] = np.array([3, 2.5, 4, -5, -5, -5, -5, -5], np.float32)
    limited.load_state_dict(sd)
    free.load_state_dict(sd)
    x = tokens(16, 8, 5)
    y_lim, y_free = run(limited, x), run(free, x)
    close(y_lim, deepseek_v3_ref(x, sd, 2, 4, 1, True, 1.0, False))
    close(y_free, deepseek_v3_ref(x, sd, 2, 1, 1, True, 1.0, False))
    assert not np.allclose(y_lim, y_free, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# dense formulation (what the user writes) vs sparse formulation (what the pass produces)

def op_names(g):
    return [op.name for op in g.main.body.ops]


def test_dense_formulation_uses_general_ops_only():
    moe = sc.nn.MoE(8, 12, 4, 2, seed=0)
    names = op_names(sc.trace(moe, sc.TensorSpec(("tokens", 8), "float32")))
    assert not [n for n in names if "moe" in n or "grouped" in n]
    assert "sc.topk" in names and "sc.scatter" in names
    # every expert runs: 4 experts x 3 projections + the router
    assert names.count("sc.linear") + names.count("sc.matmul") >= 13


def test_sparse_formulation_uses_dispatch_ops():
    moe = sc.nn.MoE(8, 12, 4, 2, formulation="sparse", seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 8), "float32"))
    names = op_names(g)
    for n in ("sc.moe_dispatch", "sc.moe_permute", "sc.grouped_matmul", "sc.moe_combine"):
        assert n in names
    assert names.count("sc.grouped_matmul") == 3
    assert str(sc.parse(str(g))) == str(g)


ROUTER_CONFIGS = [
    dict(router="softmax", norm_topk_prob=True),
    dict(router="softmax", norm_topk_prob=False, shared_ffn=8, shared_expert_gate=True),
    dict(router="sigmoid", score_bias=True, routed_scaling_factor=2.0, shared_ffn=8),
]


@settings(max_examples=15)
@given(t=st.integers(1, 9), e=st.integers(2, 6), data=st.data(), cfg=st.sampled_from(ROUTER_CONFIGS),
       seed=st.integers(0, 1000))
def test_dense_and_sparse_agree(t, e, data, cfg, seed):
    k = data.draw(st.integers(1, e))
    dense = sc.nn.MoE(8, 6, e, k, seed=seed, **cfg)
    sparse = sc.nn.MoE(8, 6, e, k, formulation="sparse", seed=seed, **cfg)
    if cfg.get("score_bias"):
        set_bias(dense, seed)
    sparse.load_state_dict(dense.state_dict())
    x = tokens(t, 8, seed)
    close(run(sparse, x), run(dense, x))


def test_dense_and_sparse_agree_with_groups():
    cfg = dict(router="sigmoid", n_group=4, topk_group=2, score_bias=True, routed_scaling_factor=2.5, seed=8)
    dense = sc.nn.MoE(8, 6, 8, 3, **cfg)
    sparse = sc.nn.MoE(8, 6, 8, 3, formulation="sparse", **cfg)
    sparse.load_state_dict(set_bias(dense, 4))
    x = tokens(13, 8, 1)
    close(run(sparse, x), run(dense, x))


# ---------------------------------------------------------------------------------------------
# shapes and calling conventions

@pytest.mark.parametrize("formulation", ["dense", "sparse"])
def test_batch_seq_input(formulation):
    moe = sc.nn.MoE(8, 12, 4, 2, formulation=formulation, seed=0)
    g = sc.trace(moe, sc.TensorSpec(("batch", "seq", 8), "float32"))
    assert str(sc.parse(str(g))) == str(g)
    assert g.main.body.ops[-1].operands[0].type.shape == ("batch", "seq", 8)
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
    (y,) = sc.interpret(g, x)
    assert y.shape == (2, 3, 8)
    close(y.reshape(6, 8), qwen_ref(x.reshape(6, 8), moe.state_dict(), 2, True, False, False))


def test_symbolic_tokens_any_count():
    moe = sc.nn.MoE(8, 12, 4, 2, formulation="sparse", seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 8), "float32"))
    out_type = g.main.body.ops[-1].operands[0].type
    assert out_type.shape == ("tokens", 8)
    for t in (1, 2, 17):
        x = tokens(t, 8, t)
        (y,) = sc.interpret(g, x)
        close(y, qwen_ref(x, moe.state_dict(), 2, True, False, False))


def test_eager_call():
    moe = sc.nn.MoE(8, 12, 4, 2, seed=0)
    x = tokens(3, 8)
    close(moe(x), qwen_ref(x, moe.state_dict(), 2, True, False, False))


@pytest.mark.parametrize("kw,msg", [
    (dict(router="relu"), "router"),
    (dict(naming="llama"), "naming"),
    (dict(formulation="padded"), "formulation"),
    (dict(top_k=5), "top_k"),
    (dict(router="sigmoid", n_group=3), "n_group"),
    (dict(router="softmax", n_group=2), "sigmoid"),
    (dict(router="sigmoid", n_group=2, topk_group=3), "topk_group"),
    (dict(shared_expert_gate=True), "shared_ffn"),
])
def test_bad_configs_are_named(kw, msg):
    args = dict(hidden=8, ffn=8, num_experts=4, top_k=2)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        sc.nn.MoE(**args)


# ---------------------------------------------------------------------------------------------
# an independent torch implementation (HF modelling code, transcribed), when torch is present

def test_against_torch_deepseek_v3():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    moe = sc.nn.MoE(16, 12, 8, 3, router="sigmoid", shared_ffn=24, n_group=4, topk_group=2,
                    routed_scaling_factor=2.5, score_bias=True, naming="deepseek", seed=12)
    sd = {k: torch.from_numpy(v.copy()) for k, v in set_bias(moe, 1).items()}
    x = tokens(10, 16, 6)

    def mlp(h, p):
        return F.linear(F.silu(F.linear(h, sd[p + ".gate_proj.weight"])) * F.linear(h, sd[p + ".up_proj.weight"]),
                        sd[p + ".down_proj.weight"])

    with torch.no_grad():
        h = torch.from_numpy(x)
        scores = F.linear(h, sd["gate.weight"]).sigmoid()
        sfc = scores + sd["gate.e_score_correction_bias"].unsqueeze(0)
        group_scores = sfc.view(-1, 4, 2).topk(2, dim=-1)[0].sum(dim=-1)
        group_idx = torch.topk(group_scores, k=2, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        score_mask = group_mask.unsqueeze(-1).expand(-1, 4, 2).reshape(-1, 8)
        sfc = sfc.masked_fill(~score_mask.bool(), 0.0)
        idx = torch.topk(sfc, k=3, dim=-1, sorted=False)[1]
        w = scores.gather(1, idx)
        w = w / (w.sum(dim=-1, keepdim=True) + 1e-20) * 2.5
        out = torch.zeros_like(h)
        mask = F.one_hot(idx, 8).permute(2, 0, 1)
        for e in range(8):
            tok, slot = torch.where(mask[e])
            out.index_add_(0, tok, mlp(h[tok], f"experts.{e}") * w[tok, slot, None])
        out = out + mlp(h, "shared_experts")
    close(run(moe, x), out.numpy())


def test_against_torch_mixtral():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    moe = sc.nn.MoE(16, 24, 8, 2, naming="mixtral", seed=13)
    sd = {k: torch.from_numpy(v.copy()) for k, v in moe.state_dict().items()}
    x = tokens(10, 16, 7)
    with torch.no_grad():
        h = torch.from_numpy(x)
        rw = F.softmax(F.linear(h, sd["gate.weight"]), dim=1, dtype=torch.float)
        rw, sel = torch.topk(rw, 2, dim=-1)
        rw /= rw.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(h)
        mask = F.one_hot(sel, 8).permute(2, 1, 0)
        for e in range(8):
            p = f"experts.{e}"
            idx, top_x = torch.where(mask[e])
            cur = h[top_x]
            y = F.linear(F.silu(F.linear(cur, sd[p + ".w1.weight"])) * F.linear(cur, sd[p + ".w3.weight"]),
                         sd[p + ".w2.weight"]) * rw[top_x, idx, None]
            out.index_add_(0, top_x, y)
    close(run(moe, x), out.numpy())
