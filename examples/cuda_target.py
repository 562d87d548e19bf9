"""Compile a quantized MoE layer for the CUDA target: PTX for every kernel anywhere, and a run on
a GPU, or on numba's CUDA simulator where there is none.

    python examples/cuda_target.py [OUT_DIR]                 # PTX for sm_90 into OUT_DIR/ptx
    NUMBA_ENABLE_CUDASIM=1 python examples/cuda_target.py    # also runs it on the simulator (slow)

On a machine with an NVIDIA GPU it also runs there. From the third call with the same input
sizes, a call replays the launches recorded from the one before: one CUDA graph launch on a GPU.
"""
import os
import sys

import numpy as np

import sparsec as sc
from sparsec.runtime.cuda.device import availability
from sparsec.runtime.cuda.launch import simulator

out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
moe = sc.nn.MoE(hidden=64, ffn=96, num_experts=4, top_k=2, router="softmax", norm_topk_prob=True, seed=0)
g = sc.trace(moe, sc.TensorSpec(("tokens", 64), "float32"))

# 1. The PTX of every kernel the plan launches (each GEMV geometry the shapes can choose), checked
#    with ptxas where the CUDA toolkit (or the nvidia-cuda-nvcc wheel) is installed: no GPU needed.
#    (Not with the simulator on: it replaces numba.cuda's compiler.)
if simulator():
    print("PTX: not with numba's CUDA simulator on")
    cm = sc.compile(g, target="cuda", quantize="q8_0", progress=False, accuracy_samples=0)
else:
    ptx_dir = os.path.join(out_dir, "ptx")
    cm = sc.compile(g, target="cuda", quantize="q8_0", emit_ptx=ptx_dir, progress=False, accuracy_samples=0)
    checks = sorted({r.ptxas.split(":")[0] for r in cm.report["ptx"]})
    print(f"{len(cm.report['ptx'])} kernels written to {ptx_dir} (ptxas: {', '.join(checks)})")
    # what ptxas -v says of each: registers per thread, bytes spilled, static shared memory
    for r in cm.report["ptx"]:
        if r.op == "sc.moe_gated_grouped_matmul":
            print(f"  {r.name}: {r.resources() or r.ptxas}")

# 2. Running it needs a device, or the simulator switched on before Python starts.
usable, what = availability()
if not usable:
    print(f"not run here: {what}")
    sys.exit(0)
print(f"running on: {what}")
if simulator():
    sys.setswitchinterval(2e-5)  # the simulator's barriers poll its threads: much faster so
ex = cm.executables["main"]
rng = np.random.default_rng(0)
for call in range(4):
    x = rng.standard_normal((2, 64)).astype(np.float32)
    got = cm(x)
    (want,) = sc.interpret(cm.graph, x)  # the reference interpreter on the quantized graph
    print(f"call {call}: max |cuda - reference| = {np.abs(got - want).max():.1e}")
(rep,) = ex.replay_report()
print(f"replay for {rep['sizes']}: {rep['launches']} launches, "
      + ("one CUDA graph" if rep["graph"] else f"no graph ({rep['why']})"))
