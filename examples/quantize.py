"""Quantize a small MoE causal LM at q8_0 and q4_0: per-layer bytes and errors, the accuracy
against fp32, generation, and the quantized ``.spc`` artifact.

    python examples/quantize.py [OUT_DIR]

``sc.compile(model, spec, quantize="q8_0")`` appends the ``quantize`` pass to the default
pipeline: the matmul weights (attention projections, the stacked expert weights) become q8_0
blocks repacked for the CPU kernels, while the MoE router and ``lm_head`` stay fp32. The
compile report holds the per-layer table and an accuracy report against the fp32 model on a
few random token batches (the same report ``sparsec compile --quantize`` prints). After
quantizing, ``fuse-projections`` stacks each layer's q/k/v weights (same format) into one, so a
decode step runs one quantized matmul for the three; the report still names the model's weights.
"""
import os
import sys

import numpy as np

import sparsec as sc
from sparsec.quant.report import accuracy_report, format_quantization, sample_inputs

out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
lm = sc.nn.CausalLM(vocab=512, hidden=128, layers=2, heads=4, kv_heads=2, ffn=256, seed=0,
                    mlp=lambda i: sc.nn.MoE(hidden=128, ffn=128, num_experts=8, top_k=2, seed=i))
spec = sc.TensorSpec(("batch", "seq"), "int64")
fp32 = sc.compile(lm, spec, progress=False)
prompt = np.array([[5, 17, 42, 7]])
print("fp32 generates:", fp32.generate(prompt, 8)[0].tolist())

for mode in ("q8_0", "q4_0"):
    cm = sc.compile(lm, spec, quantize=mode, progress=False)
    print(f"\n== {mode} ==")
    print(format_quantization(cm.report["quantization"]))
    print("pipeline:", cm.pipeline)
    print("stacked weights:", [n for n in cm.graph.weights if "+" in n])
    print(f"{mode} generates:", cm.generate(prompt, 8)[0].tolist())
    path = os.path.join(out_dir, f"lm.{mode}.spc")
    cm.save(path)
    print(f"saved {path}: {os.path.getsize(path) / 2**10:.0f} KiB")

# the same report for any two models on inputs of your own (graphs run in the interpreter,
# compiled models run their kernels): here the fp32 and the reloaded q4_0 artifact
cm4 = sc.load(os.path.join(out_dir, "lm.q4_0.spc"))
rep = accuracy_report(fp32, cm4, sample_inputs(fp32.graph, samples=2, tokens=32, seed=1), layer_samples=0)
print("\nreloaded q4_0 " + rep.format())
