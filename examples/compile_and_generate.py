"""Compile a model with sc.compile, run it, generate with the KV cache, save and load the
.spc artifact.

    python examples/compile_and_generate.py [OUT_DIR]
"""
import os
import sys
import tempfile

import numpy as np

import sparsec as sc

out_dir = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()

# a small Llama-style LM whose feed-forward blocks are top-2-of-4 MoEs
lm = sc.nn.CausalLM(vocab=128, hidden=64, layers=2, heads=4, kv_heads=2, ffn=96, seed=0,
                    mlp=lambda i: sc.nn.MoE(hidden=64, ffn=64, num_experts=4, top_k=2, seed=i))
cm = sc.compile(lm, sc.TensorSpec(("batch", "seq"), "int64"))   # default pipeline, CPU kernels
print(cm)
print(cm.report["passes"])

ids = np.array([[5, 17, 42, 7]], dtype=np.int64)
logits = cm(ids)                                                  # [1, 4, 128] float32
(want,) = sc.interpret(sc.trace(lm, sc.TensorSpec(("batch", "seq"), "int64")), ids)
print(f"logits {logits.shape}, max abs difference from the interpreter {np.abs(logits - want).max():.1e}")

out = cm.generate(ids, max_new_tokens=8)                          # greedy, KV cache
print("generated:", out[0].tolist())

path = os.path.join(out_dir, "lm.spc")
cm.save(path)                                                     # IR + weights + manifest + checksum
cm2 = sc.load(path)
assert (cm2.generate(ids, 8) == out).all()
print(f"saved and reloaded {path} ({os.path.getsize(path) / 1e6:.1f} MB): same tokens")
