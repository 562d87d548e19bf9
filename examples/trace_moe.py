"""Trace a Mixture-of-Experts layer, save its IR and weights, run it with the reference interpreter,
then the same layer in bfloat16 (``Module.to``).

    python examples/trace_moe.py [OUT_DIR]      # writes OUT_DIR/tiny_moe.mlir (+ .safetensors)
    sparsec show examples/tiny_moe.mlir
"""
import os
import sys

import numpy as np
from safetensors.numpy import save_file

import sparsec as sc

out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))

# A Qwen3-MoE style layer: softmax router, top-2 of 8 experts, renormalized weights.
moe = sc.nn.MoE(hidden=64, ffn=128, num_experts=8, top_k=2, router="softmax", norm_topk_prob=True, seed=0)
g = sc.trace(moe, sc.TensorSpec(("tokens", 64), "float32"))

text = str(g)
assert str(sc.parse(text)) == text  # the printed IR parses back to the same text

x = np.random.default_rng(0).standard_normal((5, 64)).astype("float32")
(y,) = sc.interpret(g, x)
print(f"traced {sum(1 for _ in g.walk())} ops, {len(g.weights)} weights; output {y.shape} {y.dtype}")

# what sc.compile's default pipeline makes of it: the router's softmax/topk/sum/div become one
# sc.softmax_topk (fuse-router), the 24 expert linears three grouped kernels over stacked weights
opt = sc.passes.PassManager.parse("default").run(g)
chain = [o.name for o in opt.main.ops if o.name not in ("sc.param", "func.return")]
print("after the default pipeline:", " -> ".join(chain))
(y_opt,) = sc.interpret(opt, x)
print(f"same output: max abs diff {np.abs(y_opt - y).max():.1e}")

os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "tiny_moe.mlir"), "w") as f:
    f.write(text)
save_file(dict(g.weights), os.path.join(out_dir, "tiny_moe.safetensors"))
print(f"wrote {os.path.join(out_dir, 'tiny_moe.mlir')} and tiny_moe.safetensors")

# The same layer computing in bfloat16, as torch's module.to(torch.bfloat16): Module.to rounds
# the parameters once; traced with bf16 inputs, every op rounds its result to bf16.
g16 = sc.trace(moe.to("bfloat16"), sc.TensorSpec(("tokens", 64), "bfloat16"))
y16 = sc.compile(g16, progress=False)(x.astype(g16.main.args[0].type.dtype.np))
print(f"bf16 model: output {y16.dtype}, max abs diff from f32 {np.abs(y16.astype('float32') - y).max():.1e}")
