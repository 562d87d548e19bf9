"""Benchmark case: a ViT-B/16-shaped image encoder (hidden 768, 12 layers, 12 heads, MLP 3072,
224x224 RGB, 16x16 patches: 197 tokens) on one image. Random weights through a transformers
``ViTConfig`` saved to a temporary folder and loaded with ``sc.load_hf``, so sparsec and
transformers run the same checkpoint. Rows: sparsec fp32, transformers eager on PyTorch (SDPA
attention, transformers' default, and the ``eager`` attention), and sparsec int8 (``quantize="int8"``:
the encoder's linear weights int8 per channel, activations int8 per 32-block) with its feature
cosine similarity to fp32. Rates are GFLOP/s of the model's matmul work (patch embedding, q/k/v/out,
MLP, attention scores and values, pooler).

    python benchmarks/vit_case.py [--quick] [--small]

``--small`` is a smoke run with a tiny encoder (seconds). ``bench_vit(args, limits, row=...)``
appends to ``bench.py``'s table (``python benchmarks/bench.py --only vit``). PyTorch uses as many
threads as sparsec's kernels (``numba.get_num_threads()``).
"""
from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import reexec_without_openblas_overrides, row as common_row  # noqa: E402

if __name__ == "__main__":
    reexec_without_openblas_overrides()

import numpy as np  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.benchmark import time_calls  # noqa: E402

BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, image_size=224,
            patch_size=16)
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32,
             patch_size=8)


def vit_flops(c: dict) -> int:
    """Multiply-add work (2 flops each) of one image through ``ViTModel`` with its pooler."""
    h, f, p, s = c["hidden_size"], c["intermediate_size"], c["patch_size"], c["image_size"]
    patches = (s // p) ** 2
    t = patches + 1
    per_layer = 2 * t * h * (4 * h + 2 * f) + 2 * 2 * t * t * h
    return 2 * patches * h * 3 * p * p + c["num_hidden_layers"] * per_layer + 2 * h * h


def cosine(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def bench_vit(args, limits, row=None, small: bool = False):
    row = row or common_row
    config = SMALL if small else BASE
    name = "ViT tiny (smoke)" if small else "ViT-B/16"
    case = f"{name} encoder, 1 image {config['image_size']}x{config['image_size']}"
    flops = vit_flops(config)
    try:
        import torch
        import transformers
    except ImportError:
        row(case, "sparsec (torch/transformers not installed: needed to build the checkpoint)",
            float("nan"), float("nan"))
        return
    import numba
    torch.set_num_threads(numba.get_num_threads())
    folder = tempfile.mkdtemp(prefix="sparsec_vit_")
    torch.manual_seed(0)
    hf = transformers.ViTModel(transformers.ViTConfig(**config)).eval()
    hf.save_pretrained(folder)
    del hf
    model = sc.load_hf(folder)
    spec = sc.TensorSpec((1, 3, config["image_size"], config["image_size"]), "float32")
    x = np.random.default_rng(0).standard_normal(spec.shape).astype(np.float32)

    fp32 = sc.compile(model, spec, progress=False)
    med, best = time_calls(lambda: fp32(x), args.repeat)
    ref = med
    feats = fp32.run(x)
    row(case, "sparsec fp32", med, best, ref, flops=flops, limits=limits,
        note=f"{len(fp32.executables['main'].plan.steps)} kernels")

    x_t = torch.from_numpy(x)
    for attn in ("sdpa", "eager"):
        peer = transformers.ViTModel.from_pretrained(folder, attn_implementation=attn).eval()
        with torch.inference_mode():
            want = peer(pixel_values=x_t).last_hidden_state.numpy()
            err = float(np.abs(feats[0] - want).max() / np.abs(want).max())
            m2, b2 = time_calls(lambda: peer(pixel_values=x_t), args.repeat)
        row(case, f"transformers eager ({attn} attention)", m2, b2, ref, flops=flops, limits=limits,
            note=f"torch {torch.__version__}, {torch.get_num_threads()} threads; sparsec max rel err {err:.1e}")

    q = sc.compile(model, spec, quantize="int8", progress=False, accuracy_samples=0)
    m3, b3 = time_calls(lambda: q(x), args.repeat)
    got = q.run(x)
    cos = ", ".join(f"{n} {cosine(a, b):.5f}" for n, a, b in zip(fp32.output_names, got, feats))
    layers = len(q.report["quantization"]["layers"])
    row(case, "sparsec int8", m3, b3, ref, flops=flops, limits=limits,
        note=f"{ref / m3:.2f}x vs fp32; {layers} weights int8; cosine to fp32: {cos}; rate = G op/s")


def main():
    import argparse
    from common import print_table
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--small", action="store_true", help="a tiny encoder (smoke run)")
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args()
    args.repeat = args.repeat or (5 if args.quick or args.small else 20)
    import numba
    from common import openblas_note
    print(f"sparsec {sc.__version__}; numba threads {numba.get_num_threads()}; {openblas_note()}")
    bench_vit(args, None, small=args.small)
    print("ratio = median time / sparsec fp32's median time (above 1: sparsec fp32 is faster)")
    print_table()


if __name__ == "__main__":
    main()
