"""Benchmark case: the ``activation-sparsity`` pass on the dense SwiGLU MLP (hidden 1024, ffn 2816,
fp32), compiled with and without it, at 1 token (decode: the weights are the work) and a few
more.

    python benchmarks/activation_sparsity_case.py [--quick] [--target 0.5]

``bench_activation_sparsity(args, limits)`` returns rows in the format of ``bench.py``'s ``row``
(pass ``row=bench.row`` to append them to its table). Each call uses the next of ``ROTATE``
weight copies (138 MB in all, beyond any cache), for both variants alike, so the weights come
from DRAM. Beside the times it reports the sparsity measured on fresh inputs (not the
calibration batches) and the relative output error (L2) against the dense compiled model.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import reexec_without_openblas_overrides, row as common_row  # noqa: E402

if __name__ == "__main__":
    reexec_without_openblas_overrides()

import numpy as np  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.benchmark import time_calls  # noqa: E402
from sparsec.passes.activation_sparsity import measure_sparsity  # noqa: E402

ROTATE = 4


def bench_activation_sparsity(args, limits, row=None, target: float | None = None, tokens=(1, 16)):
    """Rows: per token count, the dense compiled MLP and the MLP after
    ``activation-sparsity{target=...}`` (default 0.5, or ``args.target``)."""
    row = row or common_row
    target = target if target is not None else getattr(args, "target", 0.5)
    hidden, ffn = 1024, 2816
    pipeline = f"default,activation-sparsity{{target={target}}}"
    spec = sc.TensorSpec(("tokens", hidden), "float32")
    mlps = [sc.nn.MLP(hidden, ffn, "silu", gated=True, seed=k) for k in range(ROTATE)]
    graphs = [sc.trace(m, spec) for m in mlps]
    dense = [sc.compile(g, progress=False) for g in graphs]
    sparse = [sc.compile(g, pipeline=pipeline, progress=False) for g in graphs]
    nbytes = sum(w.nbytes for w in mlps[0].state_dict().values())
    rows = []
    rng = np.random.default_rng(1234)
    for t in tokens:
        case = f"SwiGLU MLP {hidden}x{ffn} fp32, {t} tok, activation sparsity {target}"
        flops = 2 * t * 3 * hidden * ffn
        xs = [rng.standard_normal((t, hidden)).astype(np.float32) for _ in range(8)]  # fresh inputs
        # sparsity and error on the fresh inputs (every copy: each has its own thresholds)
        skipped, errs = [], []
        for i, x in enumerate(xs):
            k = i % ROTATE
            skipped.append(measure_sparsity(sparse[k].graph, x)["all"])
            want, got = dense[k](x), sparse[k](x)
            errs.append(float(np.linalg.norm(got - want) / np.linalg.norm(want)))
        s, err = float(np.mean(skipped)), float(np.median(errs))
        it = iter(range(10**9))
        med, best = time_calls(lambda: dense[next(it) % ROTATE](xs[0]), args.repeat)
        ref = med
        rows.append(row(case, "sparsec dense", med, best, ref, nbytes=nbytes, flops=flops, limits=limits,
                        note=f"{ROTATE} weight copies cycled"))
        it = iter(range(10**9))
        med, best = time_calls(lambda: sparse[next(it) % ROTATE](xs[0]), args.repeat)
        rows.append(row(case, "sparsec activation-sparsity", med, best, ref, nbytes=nbytes * (1 - s), flops=flops,
                        limits=limits,
                        note=f"speedup {ref / med:.2f}x; sparsity {100 * s:.1f}% (fresh inputs); rel L2 err {err:.3f}"))
    return rows


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--target", type=float, default=0.5)
    ap.add_argument("--tokens", default="1,16")
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args()
    args.repeat = args.repeat or (15 if args.quick else 60)
    rows = bench_activation_sparsity(args, None, tokens=[int(t) for t in args.tokens.split(",")])
    for r in rows:
        gbs = f"{r['GB/s']:.1f} GB/s" if "GB/s" in r else ""
        print(f"{r['case']} | {r['impl']:28} | median {r['ms']:.3f} ms | min {r['min_ms']:.3f} ms | {gbs} | "
              f"{r['note']}")


if __name__ == "__main__":
    main()
