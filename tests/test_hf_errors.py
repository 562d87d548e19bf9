"""``sc.load_hf`` refuses what it cannot load faithfully, with errors naming the tensor or the
config field: missing / unexpected / wrongly shaped tensors, pickle-only folders, unknown
architectures, unsupported config values."""
import json
import os

import numpy as np
import pytest

import sparsec as sc
from sparsec.hf import HFConfigError, HFWeightError

pytest.importorskip("safetensors")
from safetensors.numpy import load_file, save_file  # noqa: E402

H, V = 32, 64
CONFIG = {"model_type": "llama", "vocab_size": V, "hidden_size": H, "intermediate_size": 48,
          "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
          "rope_theta": 10000.0, "tie_word_embeddings": False, "hidden_act": "silu"}


def write(folder, config=CONFIG, tensors=None):
    """A Llama folder written without transformers: the tensors of sparsec's own model."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    if tensors is None:
        m = sc.nn.CausalLM(vocab=V, hidden=H, layers=1, heads=4, kv_heads=2, ffn=48, seed=3)
        tensors = m.state_dict()
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(folder, "model.safetensors"))
    return str(folder)


def tensors(folder):
    return load_file(os.path.join(folder, "model.safetensors"))


def test_round_trip_without_transformers(tmp_path):
    folder = write(tmp_path / "ok")
    m = sc.load_hf(folder)
    ref = sc.nn.CausalLM(vocab=V, hidden=H, layers=1, heads=4, kv_heads=2, ffn=48, seed=3)
    ids = np.array([[1, 5, 9]])
    np.testing.assert_allclose(m(ids), ref(ids), rtol=1e-6, atol=1e-6)


def test_missing_tensor(tmp_path):
    t = tensors(write(tmp_path / "a"))
    del t["model.layers.0.self_attn.k_proj.weight"]
    with pytest.raises(HFWeightError, match=r"missing tensors.*model\.layers\.0\.self_attn\.k_proj\.weight \[16, 32\]"):
        sc.load_hf(write(tmp_path / "b", tensors=t))


def test_unexpected_tensor(tmp_path):
    t = tensors(write(tmp_path / "a"))
    t["model.layers.0.self_attn.extra.weight"] = np.zeros((3, 5), np.float32)
    with pytest.raises(HFWeightError, match=r"unexpected tensors.*model\.layers\.0\.self_attn\.extra\.weight \[3, 5\]"):
        sc.load_hf(write(tmp_path / "b", tensors=t))


def test_wrongly_shaped_tensor(tmp_path):
    t = tensors(write(tmp_path / "a"))
    t["model.layers.0.mlp.up_proj.weight"] = np.zeros((40, H), np.float32)
    with pytest.raises(HFWeightError, match=r"model\.layers\.0\.mlp\.up_proj\.weight: expected shape \[48, 32\], "
                                            r"found \[40, 32\]"):
        sc.load_hf(write(tmp_path / "b", tensors=t))


def test_wrongly_shaped_fused_experts(tmp_path):
    config = {**CONFIG, "model_type": "qwen3_moe", "num_experts": 4, "num_experts_per_tok": 2,
              "moe_intermediate_size": 8, "head_dim": 8}
    m = sc.nn.CausalLM(vocab=V, hidden=H, layers=1, heads=4, kv_heads=2, qk_norm=True, head_dim=8,
                       mlp=lambda i: sc.nn.MoE(H, 8, 4, 2, norm_topk_prob=False), seed=1)
    t = {k: v for k, v in m.state_dict().items() if ".experts." not in k}
    t["model.layers.0.mlp.experts.gate_up_proj"] = np.zeros((4, 16, H), np.float32)
    t["model.layers.0.mlp.experts.down_proj"] = np.zeros((4, H, 8), np.float32)
    sc.load_hf(write(tmp_path / "ok", config, t))  # the right shapes load
    t["model.layers.0.mlp.experts.gate_up_proj"] = np.zeros((3, 16, H), np.float32)
    with pytest.raises(HFWeightError, match=r"gate_up_proj \(fused experts\): expected shape \[4, 16, 32\], "
                                            r"found \[3, 16, 32\]"):
        sc.load_hf(write(tmp_path / "bad", config, t))


def test_pickle_only_folder_is_refused(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(HFWeightError, match=r"pytorch_model\.bin.*safetensors only.*never unpickles"):
        sc.load_hf(str(folder))


def test_unknown_model_type(tmp_path):
    with pytest.raises(HFConfigError, match=r"model_type 'bloom' is not supported.*supported: .*llama.*qwen3_moe"):
        sc.load_hf(write(tmp_path / "a", {**CONFIG, "model_type": "bloom"}))


@pytest.mark.parametrize("field,value,pattern", [
    ("rope_scaling", {"rope_type": "yarn", "factor": 4.0}, r"rope_scaling rope_type = 'yarn' is not supported"),
    ("rope_parameters", {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4},
     r"rope_parameters rope_type = 'dynamic' is not supported"),
    ("hidden_act", "tanh", r"hidden_act = 'tanh' is not supported"),
    ("pretraining_tp", 2, r"pretraining_tp = 2 is not supported"),
])
def test_unsupported_config_value(tmp_path, field, value, pattern):
    with pytest.raises(HFConfigError, match=pattern):
        sc.load_hf(write(tmp_path / "a", {**CONFIG, field: value}))


def test_unsupported_sliding_window_and_clip_qkv(tmp_path):
    qwen2 = {**CONFIG, "model_type": "qwen2", "use_sliding_window": True, "sliding_window": 64}
    with pytest.raises(HFConfigError, match=r"use_sliding_window = true.*sliding_window = 64"):
        sc.load_hf(write(tmp_path / "q", qwen2))
    mixtral = {**CONFIG, "model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 2,
               "sliding_window": 16, "max_position_embeddings": 128}
    with pytest.raises(HFConfigError, match=r"sliding_window = 16"):
        sc.load_hf(write(tmp_path / "m", mixtral))
    mistral = {**CONFIG, "model_type": "mistral", "sliding_window": 16, "max_position_embeddings": 128}
    with pytest.raises(HFConfigError, match=r"sliding_window = 16"):
        sc.load_hf(write(tmp_path / "mi", mistral))
    olmoe = {**CONFIG, "model_type": "olmoe", "num_experts": 4, "num_experts_per_tok": 2, "clip_qkv": 8.0}
    with pytest.raises(HFConfigError, match=r"clip_qkv = 8.0 is not supported"):
        sc.load_hf(write(tmp_path / "o", olmoe))


def test_missing_config_and_field(tmp_path):
    with pytest.raises(HFConfigError, match="no config.json"):
        sc.load_hf(str(tmp_path))
    cfg = dict(CONFIG)
    del cfg["num_attention_heads"]
    with pytest.raises(HFConfigError, match="missing required field 'num_attention_heads'"):
        sc.load_hf(write(tmp_path / "a", cfg))


def test_arch_modules_are_discovered():
    found, broken = sc.hf.architectures()
    assert {"llama", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "bert"} <= set(found)
    for mod in set(found.values()):
        assert callable(mod.build) and mod.MODEL_TYPES


def test_truncated_safetensors_file(tmp_path):
    folder = write(tmp_path / "a")
    path = os.path.join(folder, "model.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])   # the header is intact, the data is cut
    with pytest.raises(HFWeightError, match=r"model\.safetensors"):
        sc.load_hf(folder)


def test_header_claiming_more_bytes_than_the_file(tmp_path):
    folder = write(tmp_path / "a")
    path = os.path.join(folder, "model.safetensors")
    data = bytearray(open(path, "rb").read())
    n = int.from_bytes(data[:8], "little")
    data[:8] = (n + 10_000).to_bytes(8, "little")      # a header length past the end of the file
    open(path, "wb").write(bytes(data))
    with pytest.raises(HFWeightError, match=r"cannot read weights .*model\.safetensors"):
        sc.load_hf(folder)
    open(path, "wb").write(b"\x10\x00")                 # not even a length
    with pytest.raises(HFWeightError, match=r"cannot read weights"):
        sc.load_hf(folder)


def test_integer_tensor_where_a_weight_is_expected(tmp_path):
    t = tensors(write(tmp_path / "a"))
    t["model.layers.0.mlp.up_proj.weight"] = np.zeros((48, H), np.int32)
    with pytest.raises(HFWeightError, match=r"model\.layers\.0\.mlp\.up_proj\.weight.*dtype int32 \(expected a float"):
        sc.load_hf(write(tmp_path / "b", tensors=t))
