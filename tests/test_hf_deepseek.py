"""DeepSeek-V3 / V2 (multi-head latent attention) from Hugging Face checkpoints: tiny random
``transformers`` models saved with ``save_pretrained``, loaded by sparsec, compared at fp32
(logits, greedy generation with the latent KV cache) with and without the MoE passes."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import sparsec as sc
from sparsec.hf import HFConfigError
from sparsec.hf.archs import deepseek
from sparsec.nn.mla import MLA, rope_parameters

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SPEC = sc.TensorSpec(("batch", "seq"), "int64")
PIPELINES = ("default", "classic,fuse-elementwise")   # with and without the MoE passes
RTOL = 1e-4

YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
        "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}
COMMON = dict(vocab_size=96, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
              num_attention_heads=4, n_routed_experts=8, num_experts_per_tok=2, kv_lora_rank=16,
              qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, first_k_dense_replace=1,
              max_position_embeddings=256, bos_token_id=None, eos_token_id=None, pad_token_id=None)
CASES = {
    # DeepSeek-V3 as published: q LoRA, yarn (mscale), interleaved rope, groups, shared expert
    "v3": ("DeepseekV3", dict(COMMON, q_lora_rank=32, n_group=2, topk_group=1, n_shared_experts=1,
                              routed_scaling_factor=2.5, norm_topk_prob=True, rope_parameters=YARN)),
    # no q LoRA, plain rope in halves, attention biases, tied embeddings, no renormalisation
    "v3_plain": ("DeepseekV3", dict(COMMON, q_lora_rank=None, n_group=4, topk_group=2, n_shared_experts=2,
                                    routed_scaling_factor=1.0, norm_topk_prob=False, rope_interleave=False,
                                    attention_bias=True, tie_word_embeddings=True,
                                    rope_parameters={"rope_type": "default", "rope_theta": 5000.0})),
    # DeepSeek-V2: softmax router with group-limited greedy selection, yarn with mscale 0.707
    "v2_group": ("DeepseekV2", dict(COMMON, q_lora_rank=None, n_group=4, topk_group=2, n_shared_experts=2,
                                    topk_method="group_limited_greedy", routed_scaling_factor=16.0,
                                    rope_parameters=dict(YARN, mscale=0.707, mscale_all_dim=0.707))),
    # DeepSeek-V2-Lite style: greedy softmax router, q LoRA
    "v2_greedy": ("DeepseekV2", dict(COMMON, q_lora_rank=32, n_shared_experts=1, topk_method="greedy",
                                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
}


def _hf_model(name: str):
    family, kwargs = CASES[name]
    cfg = getattr(transformers, f"{family}Config")(**kwargs)
    torch.manual_seed(sum(map(ord, name)))
    model = getattr(transformers, f"{family}ForCausalLM")(cfg).eval()
    with torch.no_grad():  # weights large enough that routing and attention are far from uniform
        for n, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "norm" in n else 0.15 * torch.randn_like(p))
        for n, b in model.named_buffers():
            if n.endswith("e_score_correction_bias"):
                # all negative: a masked group scored 0.0 (instead of -inf) would win the selection
                b.copy_(-1.0 - torch.rand_like(b))
    return model


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    """(name, HF model, checkpoint folder)."""
    path = tmp_path_factory.mktemp(request.param)
    model = _hf_model(request.param)
    model.save_pretrained(path)
    return request.param, model, path


def load(path):
    return sc.load_hf(path)


def _ids(batch=2, seq=7, vocab=96, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, (batch, seq)).astype(np.int64)


def _hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


def _close(out, ref, what):
    err = float(np.abs(out - ref).max() / np.abs(ref).max())
    assert err < RTOL, f"{what}: max |diff| / max |ref| = {err:.2e} >= {RTOL}"
    return err


@pytest.fixture(scope="module")
def compiled(case):
    name, hf, path = case
    model = load(path)
    return name, hf, model, {p: sc.compile(model, SPEC, pipeline=p) for p in PIPELINES}


def test_state_dict_names_are_the_checkpoint_names(case):
    from safetensors.numpy import load_file
    name, hf, path = case
    saved = load_file(path / "model.safetensors")
    own = load(path).state_dict()
    assert set(own) == set(saved) - ({"lm_head.weight"} if hf.config.tie_word_embeddings else set())
    for k, v in own.items():
        np.testing.assert_array_equal(v, saved[k], err_msg=k)
    assert "model.layers.1.self_attn.kv_a_proj_with_mqa.weight" in own
    assert "model.layers.1.mlp.experts.7.down_proj.weight" in own
    assert "model.layers.0.mlp.gate_proj.weight" in own and "model.layers.0.mlp.experts.0.up_proj.weight" not in own


def test_logits_match_transformers(compiled):
    name, hf, model, cms = compiled
    ids = _ids()
    ref = _hf_logits(hf, ids)
    (interp,) = sc.interpret(sc.trace(model, SPEC), ids)
    _close(interp, ref, f"{name} interpreter")
    for p, cm in cms.items():
        _close(cm(ids), ref, f"{name} {p}")


def test_generate_matches_transformers(compiled):
    name, hf, model, cms = compiled
    ids = _ids(batch=2, seq=5, seed=1)
    with torch.no_grad():
        ref = hf.generate(torch.tensor(ids), max_new_tokens=8, do_sample=False).numpy()
    assert ref.shape == (2, 13)
    assert len(set(ref[:, 5:].ravel().tolist())) > 2, "degenerate test model: it keeps emitting one token"
    for p, cm in cms.items():
        np.testing.assert_array_equal(cm.generate(ids, 8), ref, err_msg=f"{name} {p}")


def test_decode_steps_match_full_forward(compiled):
    """The decode function (absorbed MLA over the latent cache): the prompt step and each
    following one-token step give the logits transformers computes for the whole sequence."""
    name, hf, model, cms = compiled
    ids = _ids(batch=2, seq=9, seed=2)
    ref = _hf_logits(hf, ids)
    for p, cm in cms.items():
        ex = cm.executables["decode"]
        n_layers = hf.config.num_hidden_layers
        caches = [np.zeros((2, 1, 9, 16 + 8), np.float32) for _ in range(n_layers)]
        prompt = 6
        logits = ex(ids[:, :prompt], np.arange(prompt), *[c[:, :, :prompt] for c in caches])[0]
        _close(logits, ref[:, :prompt], f"{name} {p} prompt step")
        for t in range(prompt, 9):
            logits = ex(ids[:, t:t + 1], np.arange(t, t + 1), *[c[:, :, :t + 1] for c in caches])[0]
            _close(logits[:, 0], ref[:, t], f"{name} {p} step {t}")


def test_kv_cache_is_the_compressed_latent(compiled):
    """The decode function's caches are ``[batch, 1, ctx, kv_lora_rank + qk_rope_head_dim]`` per
    layer and hold what transformers' MLA cache holds: the normed latent and the rotated k_rope."""
    name, hf, model, cms = compiled
    c = hf.config
    r, rd = c.kv_lora_rank, c.qk_rope_head_dim
    ids = _ids(batch=2, seq=6, seed=3)
    with torch.no_grad():
        hf_cache = hf(torch.tensor(ids), use_cache=True).cache
    for p, cm in cms.items():
        fn = cm.graph.functions["decode"]
        caches = [(n, a.type) for n, a in zip(fn.input_names(), fn.args) if n.startswith("past_")]
        assert [n for n, _ in caches] == [f"past_key.{i}" for i in range(c.num_hidden_layers)]
        for n, t in caches:
            assert t.shape == ("batch", 1, "ctx", r + rd), (n, t.pretty())
        assert [n for n in fn.output_names() if n.startswith("present_")] == \
            [f"present_key.{i}" for i in range(c.num_hidden_layers)]
        outs = cm.executables["decode"](ids, np.arange(6), *[np.zeros((2, 1, 6, r + rd), np.float32)
                                                             for _ in caches])
        outs = dict(zip(fn.output_names(), outs))
        for i in range(c.num_hidden_layers):
            buf = outs[f"present_key.{i}"]
            latent, k_rope = (hf_cache.layers[i].keys.numpy(), hf_cache.layers[i].values.numpy())
            if name.startswith("v2"):   # V2 keeps the rotated pairs interleaved; sparsec the halves
                k_rope = np.concatenate([k_rope[..., 0::2], k_rope[..., 1::2]], -1)
            _close(buf[..., :r], latent, f"{name} {p} layer {i} latent")
            _close(buf[..., r:], k_rope, f"{name} {p} layer {i} k_rope")


def test_moe_passes_run_only_in_the_default_pipeline(compiled):
    name, hf, model, cms = compiled

    def ops_of(cm):
        return {s.op for ex in cm.executables.values() for s in ex.plan.steps}

    assert "sc.moe_dispatch" in ops_of(cms["default"])
    assert "sc.moe_dispatch" not in ops_of(cms["classic,fuse-elementwise"])


# -- weight layouts and model structure --------------------------------------------------------

def test_fused_expert_layout_and_mtp_layers(tmp_path):
    """A checkpoint with transformers' fused experts (``experts.gate_up_proj [E, 2I, H]``,
    ``experts.down_proj [E, H, I]``) and DeepSeek-V3's multi-token-prediction layer
    (``model.layers.{num_hidden_layers}``, ignored) loads as the per-expert model."""
    from safetensors.numpy import load_file, save_file
    hf = _hf_model("v3")
    hf.save_pretrained(tmp_path / "per_expert")
    per_expert = load_file(tmp_path / "per_expert" / "model.safetensors")
    fused = {k: v for k, v in per_expert.items() if ".experts." not in k}
    for i in (1, 2):
        pre = f"model.layers.{i}.mlp.experts"
        fused[f"{pre}.gate_up_proj"] = np.stack([np.concatenate([per_expert[f"{pre}.{e}.gate_proj.weight"],
                                                                 per_expert[f"{pre}.{e}.up_proj.weight"]])
                                                 for e in range(8)])
        fused[f"{pre}.down_proj"] = np.stack([per_expert[f"{pre}.{e}.down_proj.weight"] for e in range(8)])
    assert fused["model.layers.1.mlp.experts.gate_up_proj"].shape == (8, 64, 64)
    fused["model.layers.3.eh_proj.weight"] = np.zeros((64, 128), np.float32)   # the MTP module
    fused["model.layers.3.self_attn.kv_b_proj.weight"] = np.zeros((128, 16), np.float32)
    (tmp_path / "fused").mkdir()
    save_file(fused, tmp_path / "fused" / "model.safetensors")
    (tmp_path / "fused" / "config.json").write_text((tmp_path / "per_expert" / "config.json").read_text())
    model = load(tmp_path / "fused")
    own = model.state_dict()
    assert set(own) == set(per_expert)
    for k, v in per_expert.items():
        np.testing.assert_array_equal(own[k], v, err_msg=k)
    ids = _ids(batch=1, seq=4)
    (out,) = sc.interpret(sc.trace(model, SPEC), ids)
    _close(out, _hf_logits(hf, ids), "fused layout")
    assert deepseek.rename_weight("model.layers.3.eh_proj.weight", {"num_hidden_layers": 3}) is None
    assert deepseek.rename_weight("model.layers.2.mlp.gate.weight", {"num_hidden_layers": 3}) == \
        "model.layers.2.mlp.gate.weight"


def test_moe_layer_freq_and_first_k_dense_replace():
    cfg = transformers.DeepseekV3Config(**dict(CASES["v3"][1], num_hidden_layers=5)).to_dict()
    cfg.update(first_k_dense_replace=1, moe_layer_freq=2)
    names = deepseek.build(cfg).state_dict()
    moe = [i for i in range(5) if f"model.layers.{i}.mlp.gate.weight" in names]
    dense = [i for i in range(5) if f"model.layers.{i}.mlp.gate_proj.weight" in names]
    assert moe == [2, 4] and dense == [0, 1, 3]
    cfg.update(n_routed_experts=None)
    assert not any(".experts." in n for n in deepseek.build(cfg).state_dict())


def test_legacy_rope_scaling_fields():
    """Published DeepSeek configs keep ``rope_theta`` + ``rope_scaling {"type": "yarn", ...}``."""
    cfg = transformers.DeepseekV3Config(**CASES["v3"][1]).to_dict()
    legacy = {k: v for k, v in cfg.items() if k != "rope_parameters"}
    legacy["rope_theta"] = 10000.0
    legacy["rope_scaling"] = {"type": "yarn", **{k: v for k, v in YARN.items() if k not in ("rope_type", "rope_theta")}}
    a, b = deepseek.build(cfg, seed=3), deepseek.build(legacy, seed=3)
    for x, y in zip(a.model.layers, b.model.layers):
        np.testing.assert_array_equal(x.self_attn.inv_freq, y.self_attn.inv_freq)
        assert (x.self_attn.scaling, x.self_attn.attention_factor) == (y.self_attn.scaling, y.self_attn.attention_factor)


def test_yarn_parameters_match_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    for rope in (YARN, dict(YARN, mscale=0.707, mscale_all_dim=0.707, factor=40.0, beta_fast=16),
                 dict(YARN, mscale=None, mscale_all_dim=None, truncate=False)):
        cfg = transformers.DeepseekV3Config(**dict(CASES["v3"][1], rope_parameters=dict(rope)))
        inv, factor = ROPE_INIT_FUNCTIONS["yarn"](cfg)
        ours, our_factor, mscale = rope_parameters(8, dict(rope))
        np.testing.assert_allclose(ours, inv.numpy(), rtol=1e-6)
        assert our_factor == pytest.approx(factor, rel=1e-12)
        attn = transformers.models.deepseek_v3.modeling_deepseek_v3.DeepseekV3Attention(cfg, 0)
        assert MLA(64, 4, 32, 16, 16, 8, 16, rope=dict(rope)).scaling == pytest.approx(attn.scaling, rel=1e-12)
        assert mscale != 1.0 or not rope.get("mscale_all_dim")


# -- refusals ----------------------------------------------------------------------------------

def _config(name="v3", **changes):
    family, kwargs = CASES[name]
    cfg = getattr(transformers, f"{family}Config")(**kwargs).to_dict()
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize("name, changes, message", [
    ("v3", {"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}, "quantization_config"),
    ("v3", {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}}, "'dynamic'"),
    ("v3", {"rope_parameters": dict(YARN, partial_rotary_factor=0.5)}, "partial_rotary_factor"),
    ("v3", {"rope_parameters": dict(YARN, low_freq_factor=1.0)}, "low_freq_factor"),
    ("v3", {"sliding_window": 128}, "sliding_window"),
    ("v3", {"rope_scaling": {"type": "llama3", "factor": 8.0}, "rope_parameters": None}, "'llama3'"),
    ("v3", {"scoring_func": "softmax"}, "scoring_func 'softmax'"),
    ("v3", {"topk_method": "greedy"}, "topk_method 'greedy'"),
    ("v3", {"hidden_act": "mish"}, "hidden_act 'mish'"),
    ("v2_group", {"topk_method": "noaux_tc"}, "topk_method 'noaux_tc'"),
    ("v2_group", {"norm_topk_prob": True}, "norm_topk_prob"),
    ("v2_group", {"mlp_bias": True}, "mlp_bias"),
    ("v3", {"model_type": "deepseek_v32"}, "deepseek_v32"),
])
def test_unsupported_configs_are_refused(name, changes, message):
    with pytest.raises(deepseek.UnsupportedConfig, match=message.replace("[", r"\[")) as e:
        deepseek.build(_config(name, **changes))
    assert isinstance(e.value, HFConfigError)


def test_load_hf_refuses_with_the_field_name(tmp_path):
    from safetensors.numpy import save_file
    (tmp_path / "config.json").write_text(json.dumps(_config("v3", quantization_config={"quant_method": "fp8"})))
    save_file({"lm_head.weight": np.zeros((96, 64), np.float32)}, tmp_path / "model.safetensors")
    with pytest.raises(HFConfigError, match="quantization_config"):
        sc.load_hf(tmp_path)


def test_known_fields_of_published_configs_are_accepted():
    """Fields of DeepSeek's own config.json (remote-code era) that do not change inference."""
    cfg = _config("v3", topk_method="noaux_tc", scoring_func="sigmoid", moe_layer_freq=1, ep_size=1,
                  aux_loss_alpha=0.001, seq_aux=True, num_nextn_predict_layers=1,
                  auto_map={"AutoConfig": "configuration_deepseek.DeepseekV3Config"})
    assert deepseek.check_config(copy.deepcopy(cfg)) == "deepseek_v3"


def test_defaults_are_transformers_defaults():
    """A config.json that leaves a field out means transformers' default (V3: 8 groups, top-4
    groups, renormalised weights times 2.5, ...), not 'off'."""
    for mt, cls in (("deepseek_v3", transformers.DeepseekV3Config), ("deepseek_v2", transformers.DeepseekV2Config)):
        ref = cls()
        for k, v in deepseek.DEFAULTS[mt].items():
            assert getattr(ref, k) == v, (mt, k, getattr(ref, k), v)
        assert ref.rope_parameters == {"rope_theta": 10000.0, "rope_type": "default"}
    minimal = {k: v for k, v in _config("v3").items()
               if k in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                        "intermediate_size", "moe_intermediate_size", "kv_lora_rank", "q_lora_rank",
                        "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
                        "num_experts_per_tok")}
    model = deepseek.build(dict(minimal, n_routed_experts=16, num_hidden_layers=4))
    assert [type(layer.mlp).__name__ for layer in model.model.layers] == ["MLP"] * 3 + ["DeepseekMoE"]
    moe = model.model.layers[3].mlp
    assert (moe.n_group, moe.topk_group, moe.norm_topk_prob, moe.routed_scaling_factor) == (8, 4, True, 2.5)
    assert moe.shared_ffn == 32 and model.model.layers[3].self_attn.rope_interleave
    with pytest.raises(deepseek.UnsupportedConfig, match="8 experts in 8 groups"):
        deepseek.build(dict(minimal, num_hidden_layers=4))
