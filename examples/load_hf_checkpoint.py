"""Load a Hugging Face checkpoint folder (config.json + *.safetensors) with sc.load_hf, compile
it, check it against transformers and generate.

    python examples/load_hf_checkpoint.py [OUT_DIR]

A tiny random Qwen3-MoE model is built with transformers and saved into OUT_DIR/qwen3_moe (the
same code loads a downloaded checkpoint folder). Without torch/transformers the folder is written
from a sparsec model instead, so the example still runs.
"""
import json
import os
import sys
import tempfile

import numpy as np

import sparsec as sc

out_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
folder = os.path.join(out_dir, "qwen3_moe")
ids = np.array([[5, 17, 42, 7]], dtype=np.int64)

try:
    import torch
    import transformers
except ImportError:
    torch = transformers = None

if transformers is not None:
    config = transformers.Qwen3MoeConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=4,
                                         num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True)
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.1)
    hf.save_pretrained(folder)                                 # config.json + model.safetensors
    with torch.no_grad():
        reference = hf(torch.tensor(ids)).logits.numpy()
else:
    from safetensors.numpy import save_file
    lm = sc.nn.CausalLM(vocab=128, hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, qk_norm=True, seed=0,
                        mlp=lambda i: sc.nn.MoE(64, 32, 4, 2, norm_topk_prob=True, seed=i))
    os.makedirs(folder, exist_ok=True)
    save_file(lm.state_dict(), os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "qwen3_moe", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 96,
                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                   "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                   "norm_topk_prob": True, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}, f)
    reference = lm(ids)

model = sc.load_hf(folder)                                     # an sc.nn.CausalLM, checkpoint names
print(model, "-", len(model.state_dict()), "tensors, e.g.", next(iter(model.state_dict())))
cm = sc.compile(model, *sc.hf.input_specs(model))              # input_ids ("batch", "seq") int64
print(cm.report["passes"])
logits = cm(ids)
err = np.abs(logits - reference).max() / np.abs(reference).max()
print(f"logits {logits.shape}: max relative difference from the reference {err:.1e}")
assert err < 1e-4
out = cm.generate(ids, max_new_tokens=8)
print("generated:", out[0].tolist())
cm.save(os.path.join(out_dir, "qwen3_moe.spc"))
print(f"saved {os.path.join(out_dir, 'qwen3_moe.spc')}  (sparsec compile {folder} -o m.spc does the same)")
