"""``sc.load_hf`` against transformers: for each architecture a tiny random model is built with
transformers, saved with ``save_pretrained`` (safetensors), loaded by sparsec, and its logits
(eager, and compiled with and without the MoE passes) and greedy tokens compared."""
import numpy as np
import pytest

import sparsec as sc
from sparsec.summary import summarize

torch = pytest.importorskip("torch", reason="torch is not installed: the HF-loading tests compare against "
                                            "transformers (install torch==2.13.0 and transformers, as .ci/run does)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[test]')")

VOCAB = 128
BASE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
#: each config exercises the code paths its architecture has
CONFIGS = {
    # Llama 3.1 rope scaling (original context 32 so that low, medium and high frequencies all occur)
    "llama": ("LlamaConfig", dict(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
                                  rope_theta=10000.0)),
    "llama-linear": ("LlamaConfig", dict(rope_scaling={"rope_type": "linear", "factor": 4.0}, attention_bias=True,
                                         mlp_bias=True)),
    "mistral": ("MistralConfig", dict(sliding_window=None, head_dim=16)),                    # LLaVA's other LM
    "qwen2": ("Qwen2Config", dict(rope_theta=1000.0)),                                       # q/k/v bias
    "qwen3": ("Qwen3Config", dict(head_dim=16, tie_word_embeddings=True)),                   # QK-norm, tied
    "mixtral": ("MixtralConfig", dict(num_local_experts=4, num_experts_per_tok=2)),          # w1/w3/w2 names
    "qwen2_moe": ("Qwen2MoeConfig", dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                         shared_expert_intermediate_size=64, norm_topk_prob=False,
                                         decoder_sparse_step=1, mlp_only_layers=[1])),      # shared expert + gate
    "qwen3_moe": ("Qwen3MoeConfig", dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                         norm_topk_prob=True)),
    "olmoe": ("OlmoeConfig", dict(num_experts=4, num_experts_per_tok=2, intermediate_size=48)),  # full QK-norm
}
MOE = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe")


def make_hf(kind, **over):
    """A transformers causal LM with random weights large enough to separate logits and routes."""
    cls, extra = CONFIGS[kind]
    config = getattr(transformers, cls)(**{**BASE, **extra, **over})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.12)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def save(model, folder, **kw):
    model.save_pretrained(str(folder), **kw)
    return str(folder)


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


IDS = np.random.default_rng(0).integers(3, VOCAB, (2, 7)).astype(np.int64)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_logits_and_generate_match_transformers(kind, tmp_path):
    hf = make_hf(kind)
    folder = save(hf, tmp_path / kind)
    model = sc.load_hf(folder)
    ref = hf_logits(hf, IDS)
    err = rel(model(IDS), ref)
    print(f"{kind}: eager logits max relative error {err:.2e}")
    assert err < 1e-4
    with torch.no_grad():
        want = hf.generate(torch.tensor(IDS[:1]), max_new_tokens=8, do_sample=False).numpy()
    for pipeline in ("default", "classic,fuse-elementwise"):
        cm = sc.compile(model, *sc.hf.input_specs(model), pipeline=pipeline)
        ops = summarize(cm.graph)["ops"]
        assert ("sc.moe_dispatch" in ops) == (kind in MOE and pipeline == "default"), (pipeline, sorted(ops))
        err = rel(cm(IDS), ref)
        print(f"{kind} [{pipeline}]: compiled logits max relative error {err:.2e}")
        assert err < 1e-4
        got = cm.generate(IDS[:1], 8)
        np.testing.assert_array_equal(got, want, err_msg=f"{kind} [{pipeline}]: greedy tokens differ")


def test_config_paths_are_used(tmp_path):
    """The options the configs set reach the sparsec model (so the tests above test them)."""
    m = sc.load_hf(save(make_hf("llama"), tmp_path / "l"))
    attn = m.model.layers[0].self_attn
    assert attn.rope_scaling["rope_type"] == "llama3" and attn._inv_freq is not None
    m = sc.load_hf(save(make_hf("qwen3"), tmp_path / "q3"))
    assert m.lm_head.weight is m.model.embed_tokens.weight and "lm_head.weight" not in m.state_dict()
    assert m.model.layers[0].self_attn.qk_norm == "head"
    m = sc.load_hf(save(make_hf("qwen2_moe"), tmp_path / "q2m"))
    assert isinstance(m.model.layers[0].mlp, sc.nn.MoE) and not isinstance(m.model.layers[1].mlp, sc.nn.MoE)
    assert m.model.layers[0].mlp.shared_expert_gate is not None
    assert "model.layers.0.self_attn.q_proj.bias" in m.state_dict()
    assert "model.layers.0.self_attn.o_proj.bias" not in m.state_dict()
    m = sc.load_hf(save(make_hf("olmoe"), tmp_path / "ol"))
    assert m.model.layers[0].self_attn.q_norm.weight.data.shape == (64,)


@pytest.mark.parametrize("kind", ["llama", "llama-linear"])
def test_rope_scaling_frequencies_match_transformers(kind):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from sparsec.nn.attention import rope_inv_freq
    hf = make_hf(kind)
    scaling = hf.config.rope_parameters
    want, factor = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](hf.config, "cpu")
    got = rope_inv_freq(16, scaling["rope_theta"], scaling)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-6)
    assert factor == 1.0
    base = rope_inv_freq(16, scaling["rope_theta"])
    changed = ~np.isclose(got, base)
    assert changed.any() and (kind == "llama-linear" or not changed.all())  # llama3: some bands unscaled


def test_state_dict_uses_checkpoint_names(tmp_path):
    from safetensors.numpy import load_file
    hf = make_hf("mixtral")
    folder = save(hf, tmp_path / "m")
    sd = sc.load_hf(folder).state_dict()
    on_disk = load_file(f"{folder}/model.safetensors")
    assert set(sd) == set(on_disk)
    assert any(".block_sparse_moe.experts.3.w2.weight" in k for k in sd)
    for k, a in on_disk.items():
        np.testing.assert_array_equal(sd[k], a)


def test_sharded_checkpoint(tmp_path):
    import os
    hf = make_hf("qwen3_moe")
    folder = save(hf, tmp_path / "s", max_shard_size="40KB")
    files = os.listdir(folder)
    assert "model.safetensors.index.json" in files and sum(f.endswith(".safetensors") for f in files) > 2
    assert rel(sc.load_hf(folder)(IDS), hf_logits(hf, IDS)) < 1e-4


def test_half_precision_checkpoints(tmp_path):
    """fp16 and bf16 tensors load (converted to f32): the logits match transformers' at f32 on the
    same rounded weights."""
    import copy
    hf = make_hf("qwen2")
    for dt in (torch.float16, torch.bfloat16):
        half = save(copy.deepcopy(hf).to(dt), tmp_path / str(dt))
        model = sc.load_hf(half)
        ref_model = transformers.AutoModelForCausalLM.from_pretrained(half, dtype=torch.float32).eval()
        assert rel(model(IDS), hf_logits(ref_model, IDS)) < 1e-4, dt


def _fuse_experts(folder, prefix_from="mlp", names=("gate_proj", "up_proj", "down_proj")):
    """Rewrite a per-expert checkpoint into transformers' fused form: ``mlp.experts.gate_up_proj
    [E, 2I, H]`` and ``mlp.experts.down_proj [E, H, I]`` (Mixtral's ``block_sparse_moe`` with
    w1/w3/w2 becomes ``mlp`` too, as transformers 5 names it)."""
    import re

    from safetensors.numpy import load_file, save_file
    path = f"{folder}/model.safetensors"
    sd = load_file(path)
    out, experts = {}, {}
    for k, a in sd.items():
        m = re.match(rf"^(model\.layers\.\d+)\.{prefix_from}\.experts\.(\d+)\.(\w+)\.weight$", k)
        if m:
            experts.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[m.group(3)] = a
            continue
        out[k.replace(f".{prefix_from}.gate.", ".mlp.gate.")] = a
    gate, up, down = names
    for layer, per in experts.items():
        es = [per[e] for e in sorted(per)]
        out[f"{layer}.mlp.experts.gate_up_proj"] = np.stack([np.concatenate([p[gate], p[up]], 0) for p in es])
        out[f"{layer}.mlp.experts.down_proj"] = np.stack([p[down] for p in es])
    save_file(out, path, metadata={"format": "pt"})
    return out


@pytest.mark.parametrize("kind", ["qwen3_moe", "mixtral"])
def test_fused_3d_experts_load(kind, tmp_path):
    """transformers 5.x writes per-expert tensors on save_pretrained (its conversion reverses the
    fused in-memory form); the fused 3-D form is made here by rewriting the file."""
    hf = make_hf(kind)
    folder = save(hf, tmp_path / kind)
    if kind == "mixtral":
        fused = _fuse_experts(folder, "block_sparse_moe", ("w1", "w3", "w2"))
    else:
        fused = _fuse_experts(folder)
    assert fused["model.layers.0.mlp.experts.gate_up_proj"].shape[:2] == (4, 2 * fused[
        "model.layers.0.mlp.experts.down_proj"].shape[2])
    model = sc.load_hf(folder)
    assert rel(model(IDS), hf_logits(hf, IDS)) < 1e-4
    names = model.state_dict()
    expert = "block_sparse_moe.experts.1.w3" if kind == "mixtral" else "mlp.experts.1.up_proj"
    assert f"model.layers.0.{expert}.weight" in names
