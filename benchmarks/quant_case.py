"""Benchmark case: quantized weights on the CPU. The MoE layer (hidden 1024, ffn 2816, 8 experts,
top-2, Mixtral naming) compiled in fp32 and with ``quantize=`` q8_0 / q4_0 / int8 / int4, at 1 token
(decode: the two active experts' weights are the work) and 128 tokens (prefill: compute-bound,
int8 ops), and the dense GEMVs of that MLP's shapes (2816x1024, 1024x2816) at 1 token.

    python benchmarks/quant_case.py [--quick] [--only moe,gemv] [--tokens 1,128]

``bench_quant_moe(args, limits)`` / ``bench_quant_gemv(args, limits)`` return rows in the format
of ``bench.py``'s ``row`` (pass ``row=bench.row`` to append them to its table). ``%bw`` is against
the bytes each variant must read: the active experts' weights in their stored format (q8_0: 34
bytes per 32 weights, q4_0: 18, int8: 32 + a scale per row, int4: 20; fp32: 128). As in
``bench_moe``, 16 different inputs are cycled so each call routes to other experts and their
weights come from DRAM, not the L3 cache; the GEMVs cycle 16 weight copies for the same reason.
The note of each quantized MoE row ends with its ``%bw`` rounds split by the bandwidth state of
the round (``STATE_SPLIT``): the median fraction and the median fp32/layer ratio of the rounds in
each state, since this machine switches between about 50 and 75 GB/s within a run.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import by_state, paired_fraction, paired_rounds, paired_time, reexec_without_openblas_overrides, row as common_row  # noqa: E402

if __name__ == "__main__":
    reexec_without_openblas_overrides()

import numpy as np  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.benchmark import time_calls  # noqa: E402

MODES = ("q8_0", "q4_0", "int8", "int4")
INPUTS = 16
#: probe GB/s that separates this machine's two bandwidth states (about 50 and 75 GB/s) in the
#: per-state summary of a row's %bw rounds (the ratio there: fp32 / layer of the same round)
STATE_SPLIT = 62.0


def _expert_bytes(cm, experts: int) -> int:
    """Bytes of one expert's three matrices as the compiled model stores them."""
    total = 0
    for w in cm.graph.weights.values():
        shape = getattr(w, "shape", ())
        if len(shape) == 3 and shape[0] == experts:
            total += w.nbytes
    return total // experts


def _kernel_isa(cm) -> str:
    isas = {s.kernel.rsplit("_", 1)[1] for s in cm.executables["main"].plan.steps
            if s.kernel.startswith("grouped") and s.kernel.rsplit("_", 1)[1] in ("vnni", "avx2", "generic")}
    return ",".join(sorted(isas)) or "f32"


def bench_quant_moe(args, limits, row=None, tokens=(1, 128)):
    """Rows per token count: the fp32 MoE layer, then each quantized mode (ratio = time / fp32)."""
    row = row or common_row
    hidden, ffn, experts, top_k = 1024, 2816, 8, 2
    moe = sc.nn.MoE(hidden, ffn, experts, top_k, router="softmax", norm_topk_prob=True, naming="mixtral", seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", hidden), "float32"))
    compiled = [("fp32", sc.compile(g, progress=False))]
    for mode in MODES:
        compiled.append((mode, sc.compile(g, quantize=mode, progress=False, accuracy_samples=0)))
    rows = []
    for t in tokens:
        xs = [np.random.default_rng(1000 * t + j).standard_normal((t, hidden)).astype(np.float32)
              for j in range(INPUTS)]
        active = min(experts, t * top_k)
        ops = 2 * t * top_k * 3 * hidden * ffn
        case = f"MoE {experts}x({hidden}x{ffn}) top-{top_k}, {t} tok, {INPUTS} inputs cycled"
        (f32_out,) = sc.interpret(g, xs[0])
        fp32 = compiled[0][1]
        for mode, cm in compiled:
            nbytes = active * _expert_bytes(cm, experts)
            it = iter(range(10**9))
            if cm is fp32:
                med, best = time_calls(lambda: cm(xs[next(it) % INPUTS]), args.repeat)
                ref = med
            else:  # timed alternately with fp32: the ratio is not the machine's bandwidth drift
                it2 = iter(range(10**9))
                (ref, _), (med, best) = paired_time(lambda: fp32(xs[next(it2) % INPUTS]),
                                                    lambda: cm(xs[next(it) % INPUTS]), args.repeat)
            it3, it4 = iter(range(10**9)), iter(range(10**9))  # (fp32 and the layer get the same input, as above)
            rounds = paired_rounds(lambda: cm(xs[next(it4) % INPUTS]), nbytes, args.repeat,
                                   before=None if cm is fp32 else lambda: fp32(xs[next(it3) % INPUTS]))
            frac, probe = paired_fraction(rounds)
            states = f"; by state: {by_state(rounds, STATE_SPLIT)}" if cm is not fp32 else ""
            got = cm(xs[0])
            (want,) = sc.interpret(cm.graph, xs[0])
            err_ref = float(np.linalg.norm(got - want) / np.linalg.norm(want))
            err_f32 = float(np.linalg.norm(got - f32_out) / np.linalg.norm(f32_out))
            what = "GFLOP/s" if mode == "fp32" else "G int8 op/s"
            rows.append(row(case, f"sparsec {mode}", med, best, ref, nbytes=nbytes, flops=ops,
                            limits=limits, paired_bw=(frac, probe),
                            note=f"{ref / med:.2f}x vs fp32 (timed alternately); {nbytes / 1e6:.1f} MB read; "
                                 f"rate column = {what}; "
                                 f"kernels {_kernel_isa(cm)}; rel L2 err vs its interpreter {err_ref:.1e}, "
                                 f"vs fp32 {err_f32:.1e}{states}"))
    return rows


def bench_quant_gemv(args, limits, row=None, shapes=((2816, 1024), (1024, 2816))):
    """One-row ``sc.linear`` per shape: fp32, then each format (16 weight copies cycled)."""
    from sparsec.frontend.tracer import Parameter
    from sparsec.quant import format_for_mode
    row = row or common_row
    rng = np.random.default_rng(0)
    rows = []
    for n, k in shapes:
        base = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        x = rng.standard_normal((1, k)).astype(np.float32)
        case = f"GEMV {n}x{k}, 1 tok, {INPUTS} weight copies cycled"
        ref = None
        for mode in ("fp32",) + MODES:
            cms = []
            for c in range(INPUTS):
                w = Parameter(base * np.float32(1 + 0.01 * c))
                gr = sc.trace(lambda x: sc.ops.linear(x, w), sc.TensorSpec(("tokens", k), "float32"))
                pipeline = "default" if mode == "fp32" else \
                    f"default,quantize{{mode={mode},skip=none,min-elements=0}}"
                cms.append(sc.compile(gr, pipeline=pipeline, progress=False, accuracy_samples=0))
            nbytes = sum(getattr(v, "nbytes", 0) for v in cms[0].graph.weights.values())
            for cm in cms:  # each copy's first call prepares its executable: not timed (time_calls
                cm(x)       # warms up only the first two of the 16)
            it = iter(range(10**9))
            med, best = time_calls(lambda: cms[next(it) % INPUTS](x), args.repeat)
            ref = ref or med
            fmt = "fp32" if mode == "fp32" else format_for_mode(mode)
            rows.append(row(case, f"sparsec {fmt}", med, best, ref, nbytes=nbytes, flops=2 * n * k, limits=limits,
                            note=f"{ref / med:.2f}x vs fp32; {nbytes / 1e6:.2f} MB"))
    return rows


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--only", default="moe,gemv")
    ap.add_argument("--tokens", default="1,128")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--bandwidth", type=float, default=None, help="GB/s for %%bw (default: measured)")
    args = ap.parse_args()
    args.repeat = args.repeat or (15 if args.quick else 60)
    bw = args.bandwidth
    if bw is None:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench import measure_bandwidth
        bw = measure_bandwidth(5 if args.quick else 10)
    limits = {"bandwidth": bw, "sgemm": float("nan")}
    print(f"read bandwidth {bw:.1f} GB/s")
    rows = []
    if "moe" in args.only:
        rows += bench_quant_moe(args, limits, tokens=[int(t) for t in args.tokens.split(",")])
    if "gemv" in args.only:
        rows += bench_quant_gemv(args, limits)
    for r in rows:
        rate = f"{r['GB/s']:5.1f} GB/s {r['%bw']:5.1f}%bw" if "GB/s" in r else ""
        print(f"{r['case']} | {r['impl']:15} | median {r['ms']:7.3f} ms | min {r['min_ms']:7.3f} ms | {rate} | "
              f"{r['GFLOP/s']:7.1f} G/s | {r['note']}")


if __name__ == "__main__":
    main()
