"""A tiny LLaVA-style vision-language model end to end: a CLIP vision tower, the multi-modal
projector and a Llama language model, loaded with sc.load_hf, compiled, and greedy generation from
an image array and a prompt with image tokens.

    python examples/llava_generate.py [OUT_DIR]

The random-weight model is built with transformers and saved into OUT_DIR/tiny_llava (the same
code loads a downloaded llava-hf folder; its image processor gives ``pixel_values``). Without
torch/transformers the folder is written from sparsec models instead, so the example still runs.
"""
import json
import os
import sys
import tempfile

import numpy as np

import sparsec as sc

out_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
folder = os.path.join(out_dir, "tiny_llava")
IMAGE_TOKEN = 90
vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
              patch_size=8, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5)
text = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0)

try:
    import torch
    import transformers
except ImportError:
    torch = transformers = None

if transformers is not None:
    config = transformers.LlavaConfig(vision_config=transformers.CLIPVisionConfig(**vision),
                                      text_config=transformers.LlamaConfig(**text), image_token_index=IMAGE_TOKEN)
    torch.manual_seed(0)
    hf = transformers.LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():  # random weights of a scale that gives varied tokens
        for name, p in hf.named_parameters():
            if "norm" in name and name.endswith("weight") and p.ndim == 1:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 1.0 if "embed_tokens" in name else 0.3)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(folder)                                 # config.json + model.safetensors
else:
    from safetensors.numpy import save_file
    tower = sc.nn.CLIPVisionModel(hidden=32, layers=2, heads=2, intermediate=64, image_size=32, patch_size=8)
    lm = sc.nn.CausalLM(vocab=96, hidden=32, layers=2, heads=4, kv_heads=2, ffn=64)
    vlm = sc.nn.LlavaForConditionalGeneration(tower, lm, IMAGE_TOKEN)
    os.makedirs(folder, exist_ok=True)
    save_file(vlm.state_dict(), os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "llava", "image_token_index": IMAGE_TOKEN, "vision_feature_layer": -2,
                   "vision_feature_select_strategy": "default",
                   "vision_config": dict(vision, model_type="clip_vision_model"),
                   "text_config": dict(text, model_type="llama")}, f)

vlm = sc.load_hf(folder)                          # vision_tower + multi_modal_projector + language_model
print(vlm, f"- {vlm.image_tokens} image tokens per image")
cm = sc.compile(vlm, sc.TensorSpec((1, 3, 32, 32), "float32"), sc.TensorSpec((1, "seq"), "int64"))
print(cm, "functions:", ", ".join(cm.executables))  # main, decode (next tokens), prefill (prompt + image)

# an "image" (what the processor would hand over: resized, normalized, channels first) and a
# prompt with one image token per image feature row, as the LLaVA processor expands "<image>"
image = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
ids = np.array([[0, 12, 7, *[IMAGE_TOKEN] * vlm.image_tokens, 31, 44, 5]], dtype=np.int64)

out = cm.generate(ids, max_new_tokens=8, pixel_values=image)
print("generated:", out[0, ids.shape[1]:].tolist())

if transformers is not None:
    with torch.no_grad():
        want = hf.generate(input_ids=torch.from_numpy(ids), pixel_values=torch.from_numpy(image), max_new_tokens=8,
                           do_sample=False).numpy()
    print("transformers generate:", want[0, ids.shape[1]:].tolist())
else:  # greedy by recomputation with the reference interpreter
    graph, want = sc.trace(vlm, *vlm.input_specs()), ids
    for _ in range(8):
        logits = sc.interpret(graph, image, want)[0]
        want = np.concatenate([want, logits[:, -1].argmax(-1)[:, None]], 1)
    print("reference interpreter:", want[0, ids.shape[1]:].tolist())
assert (out == want).all()
cm.save(os.path.join(out_dir, "tiny_llava.spc"))
print(f"saved {os.path.join(out_dir, 'tiny_llava.spc')}  (then: sparsec generate tiny_llava.spc --ids ... "
      f"--pixel-values image.npy)")
