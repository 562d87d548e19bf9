"""sparsec benchmark: medians and ratios against peers measured in the same run, beside the
machine's measured limits (memory bandwidth, sgemm peak).

    python benchmarks/bench.py                 # everything
    python benchmarks/bench.py --only mlp,moe  # some cases
    python benchmarks/bench.py --quick         # fewer repeats

Peers: the NumPy reference interpreter, PyTorch eager and torch.compile (torch is a
benchmark-only dependency: ``pip install torch==2.13.0``), and Hugging Face's
``MixtralSparseMoeBlock`` for the MoE layer (``pip install transformers``). Peers that are not
installed are reported as missing, not skipped silently.

``OPENBLAS_CORETYPE`` (set on our build machines) halves NumPy's and PyTorch's sgemm speed;
this script re-executes itself without it and without ``OPENBLAS_L2_SIZE`` and says so.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from common import PAIRED, ROWS, measure_bandwidth, measure_limits, median_time, paired_time, openblas_note, print_table, reexec_without_openblas_overrides, row

reexec_without_openblas_overrides()

import numpy as np  # noqa: E402

import sparsec as sc  # noqa: E402

from activation_sparsity_case import bench_activation_sparsity  # noqa: E402
from llamacpp_case import bench_llamacpp  # noqa: E402
from quant_case import bench_quant_gemv, bench_quant_moe  # noqa: E402
from vit_case import bench_vit  # noqa: E402


# -- cases ---------------------------------------------------------------------------------------

def torch_or_none():
    try:
        import torch
        return torch
    except ImportError:
        return None


ROTATE = 4  # weight copies cycled through, so 1-token cases read weights from DRAM, not the L3 cache


def bench_mlp(args, limits):
    """Dense SwiGLU MLP. At 1 token the weights (34.6 MB) are the work: each call uses the next
    of ROTATE copies (138 MB in all, beyond any cache), for every implementation alike."""
    hidden, ffn = 1024, 2816
    mlps = [sc.nn.MLP(hidden, ffn, "silu", gated=True, seed=k) for k in range(ROTATE)]
    graphs = [sc.trace(m, sc.TensorSpec(("tokens", hidden), "float32")) for m in mlps]
    cms = [sc.compile(g, progress=False) for g in graphs]
    sds = [m.state_dict() for m in mlps]
    nbytes = sum(w.nbytes for w in sds[0].values())
    torch = torch_or_none()
    for t in (1, 128):
        x = np.random.default_rng(t).standard_normal((t, hidden)).astype(np.float32)
        case = f"SwiGLU MLP {hidden}x{ffn} fp32, {t} tok"
        flops = 2 * t * 3 * hidden * ffn
        for cm in cms:  # each copy's first call prepares its executable for this size: not timed
            cm(x)
        it = iter(range(10**9))
        med, best = median_time(lambda: cms[next(it) % ROTATE](x), args.repeat)
        ref = med
        row(case, "sparsec", med, best, ref, nbytes=nbytes, flops=flops, limits=limits,
            note=f"{ROTATE} weight copies cycled")
        (want,) = sc.interpret(graphs[0], x)
        err = float(np.abs(cms[0](x) - want).max())
        it = iter(range(10**9))
        med, best = median_time(lambda: sc.interpret(graphs[next(it) % ROTATE], x), max(3, args.repeat // 4))
        row(case, "numpy reference", med, best, ref, nbytes=nbytes, flops=flops, limits=limits,
            note=f"sparsec max abs err {err:.1e}")
        if torch is None:
            row(case, "torch (not installed)", float("nan"), float("nan"))
            continue
        F = torch.nn.functional
        tws = []
        for sd in sds:
            tw = {k: torch.from_numpy(v) for k, v in sd.items()}
            tws.append(tuple(next(tw[k] for k in sd if part in k) for part in ("gate", "up", "down")))

        def eager(xt, gate, up, down):
            return F.linear(F.silu(F.linear(xt, gate)) * F.linear(xt, up), down)
        xt = torch.from_numpy(x)
        with torch.inference_mode():
            it = iter(range(10**9))
            med, best = median_time(lambda: eager(xt, *tws[next(it) % ROTATE]), args.repeat)
            row(case, "torch eager", med, best, ref, nbytes=nbytes, flops=flops, limits=limits)
            comp = torch.compile(eager)
            t0 = time.perf_counter()
            comp(xt, *tws[0])
            cold = time.perf_counter() - t0
            it = iter(range(10**9))
            med, best = median_time(lambda: comp(xt, *tws[next(it) % ROTATE]), args.repeat)
            row(case, "torch.compile", med, best, ref, nbytes=nbytes, flops=flops, limits=limits,
                note=f"first call {cold:.1f} s")


def _hf_mixtral_block(hidden, ffn, experts, top_k):
    try:
        import torch
        from transformers import MixtralConfig
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    except ImportError:
        return None
    cfg = MixtralConfig(hidden_size=hidden, intermediate_size=ffn, num_local_experts=experts,
                        num_experts_per_tok=top_k, router_jitter_noise=0.0)
    torch.manual_seed(0)
    block = MixtralSparseMoeBlock(cfg).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, hidden ** -0.5)
    return block


def bench_moe(args, limits):
    hidden, ffn, experts, top_k = 1024, 2816, 8, 2
    block = _hf_mixtral_block(hidden, ffn, experts, top_k)
    moe = sc.nn.MoE(hidden, ffn, experts, top_k, router="softmax", norm_topk_prob=True, naming="mixtral", seed=0)
    if block is not None:  # same weights in both
        gu = block.experts.gate_up_proj.detach().numpy()
        dn = block.experts.down_proj.detach().numpy()
        sd = {"gate.weight": block.gate.weight.detach().numpy().copy()}
        for e in range(experts):
            sd[f"experts.{e}.w1.weight"] = gu[e, :ffn].copy()
            sd[f"experts.{e}.w3.weight"] = gu[e, ffn:].copy()
            sd[f"experts.{e}.w2.weight"] = dn[e].copy()
        moe.load_state_dict(sd)
    g = sc.trace(moe, sc.TensorSpec(("tokens", hidden), "float32"))
    cm = sc.compile(g, progress=False)
    dense = sc.compile(g, pipeline="classic,fuse-elementwise", progress=False)  # no MoE passes
    expert_bytes = 3 * hidden * ffn * 4
    for t in (1, 128):
        # 16 different inputs cycled: each call routes to other experts, so the active experts'
        # weights come from DRAM (the same input every call would keep them in the L3 cache)
        xs = [np.random.default_rng(1000 * t + j).standard_normal((t, hidden)).astype(np.float32) for j in range(16)]
        x = xs[0]
        case = f"MoE {experts}x({hidden}x{ffn}) top-{top_k} fp32, {t} tok, 16 inputs cycled"
        active = min(experts, t * top_k)
        nbytes = active * expert_bytes  # the bytes a sparse implementation must read
        flops = 2 * t * top_k * 3 * hidden * ffn
        it = iter(range(10**9))
        med, best = median_time(lambda: cm(xs[next(it) % 16]), args.repeat)
        ref = med
        row(case, "sparsec", med, best, ref, nbytes=nbytes, flops=flops, limits=limits,
            note=f"pipeline {cm.pipeline}")
        (want,) = sc.interpret(g, x)
        err = float(np.abs(cm(x) - want).max())
        it, it2 = iter(range(10**9)), iter(range(10**9))
        (sp, _), (med, best) = paired_time(lambda: cm(xs[next(it2) % 16]), lambda: dense(xs[next(it) % 16]),
                                           args.repeat)
        row(case, "sparsec without the MoE passes", med, best, sp, nbytes=nbytes, flops=flops, limits=limits,
            note=f"pipeline {dense.pipeline}: all {experts} experts on every token; {PAIRED}")
        if block is None:
            row(case, "HF MixtralSparseMoeBlock (transformers not installed)", float("nan"), float("nan"))
            continue
        import torch
        xt = torch.from_numpy(x)[None]
        xts = [torch.from_numpy(v)[None] for v in xs]
        with torch.inference_mode():
            for impl in HF_EXPERT_IMPLEMENTATIONS:
                block.experts.config._experts_implementation = impl
                hf = block(xt)[0].numpy()
                note = f"sparsec vs HF max abs err {float(np.abs(cm(x) - hf).max()):.1e}, vs interpreter {err:.1e}"
                # batched_mm copies the selected experts' weights per token: seconds per call at 128 tokens
                reps = 3 if impl == "batched_mm" and t > 16 else args.repeat
                it, it2 = iter(range(10**9)), iter(range(10**9))
                (sp, _), (med, best) = paired_time(lambda: cm(xs[next(it2) % 16]), lambda: block(xts[next(it) % 16]),
                                                   reps)
                row(case, f"HF MixtralSparseMoeBlock experts={impl}", med, best, sp, nbytes=nbytes, flops=flops,
                    limits=limits, note=f"{note}; {PAIRED}")
                torch._dynamo.reset()
                comp = torch.compile(block)
                t0 = time.perf_counter()
                comp(xt)
                cold = time.perf_counter() - t0
                it, it2 = iter(range(10**9)), iter(range(10**9))
                (sp, _), (med, best) = paired_time(lambda: cm(xs[next(it2) % 16]), lambda: comp(xts[next(it) % 16]),
                                                   reps)
                row(case, f"HF MixtralSparseMoeBlock experts={impl} torch.compile", med, best, sp, nbytes=nbytes,
                    flops=flops, limits=limits, note=f"first call {cold:.1f} s; {PAIRED}")
            block.experts.config._experts_implementation = "eager"


#: transformers' expert implementations (config._experts_implementation), each eager and compiled
HF_EXPERT_IMPLEMENTATIONS = ("eager", "grouped_mm", "batched_mm")


def bench_moe_finegrained(args, limits):
    """DeepSeek-V2-Lite-shaped MoE at reduced width: 64 experts of ffn 512, top-6, plus 2 shared
    experts (one SwiGLU of ffn 1024, as DeepSeek stores them). At 1 token a sparse implementation
    reads 6 routed + 2 shared-sized experts: 8 x 3 x 1024 x 512 x 4 B = 50.3 MB."""
    hidden, ffn, experts, top_k, shared = 1024, 512, 64, 6, 2
    moe = sc.nn.MoE(hidden, ffn, experts, top_k, router="softmax", norm_topk_prob=False, shared_ffn=shared * ffn,
                    naming="deepseek", seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", hidden), "float32"))
    variants = [("sparsec", "default"),
                ("sparsec without expert-fusion", "sparse-activation,classic,fold-constants{fold-params=true},"
                                                  "fuse-elementwise"),
                ("sparsec without the MoE passes", "classic,fuse-elementwise")]
    compiled = [(name, sc.compile(g, pipeline=p, progress=False)) for name, p in variants]
    expert_bytes = 3 * hidden * ffn * 4
    for t in (1, 128):
        xs = [np.random.default_rng(2000 * t + j).standard_normal((t, hidden)).astype(np.float32) for j in range(16)]
        case = f"MoE {experts}x({hidden}x{ffn}) top-{top_k} + {shared} shared fp32, {t} tok, 16 inputs cycled"
        active = min(experts, t * top_k) + shared
        nbytes = active * expert_bytes + experts * hidden * 4
        flops = 2 * t * (top_k + shared) * 3 * hidden * ffn
        (want,) = sc.interpret(g, xs[0])
        first = compiled[0][1]
        for name, cm in compiled:
            if name.endswith("MoE passes") and t > 1:
                reps = max(3, args.repeat // 5)
            else:
                reps = args.repeat
            it = iter(range(10**9))
            err = float(np.abs(cm(xs[0]) - want).max())
            if cm is first:
                med, best = median_time(lambda: cm(xs[next(it) % 16]), reps)
                ref, note = med, ""
            else:  # timed alternately with the first (sparsec, default pipeline)
                it2 = iter(range(10**9))
                (ref, _), (med, best) = paired_time(lambda: first(xs[next(it2) % 16]), lambda: cm(xs[next(it) % 16]),
                                                    reps)
                note = f"; {PAIRED}"
            row(case, name, med, best, ref, nbytes=nbytes, flops=flops, limits=limits,
                note=f"pipeline {cm.pipeline}; max abs err vs interpreter {err:.1e}{note}")


def bench_overhead(args, limits):
    g = sc.trace(lambda x: sc.ops.silu(x * 2.0 + 1.0) - x, sc.TensorSpec(("tokens", 16), "float32"))
    cm = sc.compile(g, pipeline="", progress=False)
    n_steps = len(cm.executables["main"].plan.steps)
    x = np.ones((1, 16), np.float32)
    med, best = median_time(lambda: cm(x), max(200, args.repeat * 20), warmup=20)
    row(f"runtime overhead: {n_steps}-op graph, 1 token", "sparsec", med, best, med,
        note=f"{med / n_steps * 1e6:.1f} us per step")
    torch = torch_or_none()
    if torch is not None:
        xt = torch.from_numpy(x)
        f = (lambda t: torch.nn.functional.silu(t * 2.0 + 1.0) - t)
        with torch.inference_mode():
            m2, b2 = median_time(lambda: f(xt), max(200, args.repeat * 20), warmup=20)
        row(f"runtime overhead: {n_steps}-op graph, 1 token", "torch eager", m2, b2, med)


_COMPILE_DEMO = """
import time, sparsec as sc
from sparsec.demo import demo_model
m = demo_model()
t0 = time.perf_counter()
sc.compile(m, sc.TensorSpec(("batch", "seq"), "int64"), progress=False)
print(f"{time.perf_counter() - t0:.3f}")
"""


def _subprocess_seconds(code_or_args, env) -> float:
    import subprocess
    args = [sys.executable, "-c", code_or_args] if isinstance(code_or_args, str) else [sys.executable] + code_or_args
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"{args}: {r.stderr[-2000:]}")
    return float(r.stdout.strip().splitlines()[-1])


def bench_demo(args, limits):
    """The demo MoE LM end to end: forward at 1 and 128 tokens against the NumPy reference,
    PyTorch eager and torch.compile on the same weights; cold compile times measured in fresh
    processes with empty caches (sparsec: kernel and Numba caches; torch: the inductor cache)."""
    import tempfile
    from sparsec.demo import demo_model
    model = demo_model()
    spec = sc.TensorSpec(("batch", "seq"), "int64")
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, SPARSEC_CACHE_DIR=os.path.join(d, "k"), NUMBA_CACHE_DIR=os.path.join(d, "n"),
                   TORCHINDUCTOR_CACHE_DIR=os.path.join(d, "t"))
        cold = _subprocess_seconds(_COMPILE_DEMO, env)
        warm = _subprocess_seconds(_COMPILE_DEMO, env)
        torch_cold = None
        if torch_or_none() is not None:
            here = os.path.dirname(os.path.abspath(__file__))
            torch_cold = _subprocess_seconds([os.path.join(here, "torch_demo.py"), "cold-compile"], env)
    note = f"compile: {cold:.2f} s cold, {warm:.2f} s warm (fresh processes)"
    cm = sc.compile(model, spec, progress=False)
    g = sc.trace(model, spec)
    torch = torch_or_none()
    tm = None
    if torch is not None:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from torch_demo import TorchDemoLM
        from sparsec.demo import DEMO_CONFIG
        tm = TorchDemoLM(model.state_dict(), DEMO_CONFIG)
        tmc = torch.compile(tm)
    for t in (1, 128):
        ids = np.random.default_rng(t).integers(0, 512, size=(1, t)).astype(np.int64)
        case = f"demo MoE LM forward, {t} tok"
        med, best = median_time(lambda: cm(ids), args.repeat)
        row(case, "sparsec", med, best, med, note=note)
        (want,) = sc.interpret(g, ids)
        m2, b2 = median_time(lambda: sc.interpret(g, ids), max(3, args.repeat // 4))
        row(case, "numpy reference", m2, b2, med, note=f"sparsec max abs err {np.abs(cm(ids) - want).max():.1e}")
        if tm is not None:
            it = torch.from_numpy(ids)
            with torch.inference_mode():
                err = float(np.abs(tm(it).numpy() - want).max())
                m2, b2 = median_time(lambda: tm(it), args.repeat)
                row(case, "torch eager", m2, b2, med, note=f"max abs err vs reference {err:.1e}")
                m2, b2 = median_time(lambda: tmc(it), args.repeat)
                row(case, "torch.compile", m2, b2, med,
                    note=f"cold compile {torch_cold:.2f} s (fresh process)" if torch_cold else "")
    ids = np.arange(4, dtype=np.int64)[None]
    med, best = median_time(lambda: cm.generate(ids, 16), max(3, args.repeat // 4), warmup=1)
    row("demo MoE LM generate 16 tokens (KV cache)", "sparsec", med, best, med,
        note=f"{med / 16 * 1e3:.2f} ms/token")


def bench_sparsity(args, limits):
    bench_activation_sparsity(args, limits, row=row)


def bench_quant(args, limits):
    bench_quant_moe(args, limits, row=row)
    bench_quant_gemv(args, limits, row=row)


def bench_llama(args, limits):
    bench_llamacpp(args, limits, row=row)


def bench_vit_b16(args, limits):
    bench_vit(args, limits, row=row)


CASES = {"mlp": bench_mlp, "moe": bench_moe, "moe-finegrained": bench_moe_finegrained,
         "activation-sparsity": bench_sparsity, "quant": bench_quant, "overhead": bench_overhead, "demo": bench_demo,
         "llamacpp": bench_llama, "vit": bench_vit_b16}


def _run_isolated(name: str, args, limits) -> None:
    """Case ``name`` in a fresh Python process (its rows come back as JSON), so one case's state
    (PyTorch's and OpenBLAS's worker threads, the memory of earlier cases' models) cannot affect
    the next. In one shared process the quant case's fp32 MoE layer measured 1.44 ms against 1.19 ms
    in the moe case just before it (same model and inputs)."""
    import json
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "rows.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--only", name, "--limits", json.dumps(limits),
               "--rows-out", out] + (["--quick"] if args.quick else []) + \
              (["--threads", str(args.threads)] if args.threads else [])
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in r.stdout.splitlines():
            if line.startswith(f"[{name}] read bandwidth"):
                print(line)
        if r.returncode != 0 or not os.path.exists(out):
            print(r.stdout[-3000:])
            row(f"case {name}", "FAILED (see the output above)", float("nan"), float("nan"))
            return
        with open(out) as f:
            ROWS.extend(json.load(f))


def main():
    import json
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--same-process", action="store_true",
                    help="run every case in this process (default: each case in a fresh process)")
    ap.add_argument("--limits", default=None, help=argparse.SUPPRESS)     # set by the parent process
    ap.add_argument("--rows-out", default=None, help=argparse.SUPPRESS)   # where a child writes its rows
    args = ap.parse_args()
    args.repeat = 7 if args.quick else 25
    if args.threads:
        import numba
        numba.set_num_threads(args.threads)
    import numba
    names = [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        sys.exit(f"unknown case {', '.join(map(repr, unknown))}; cases: {', '.join(CASES)}")
    if args.rows_out:  # a child: one case, its own bandwidth limit (measured now), rows to a file
        limits = json.loads(args.limits)
        # the machine's bandwidth drifts by a third within minutes (other tenants): the limit a
        # case's rows are compared with is measured in the case's own process, just before it
        limits["bandwidth"] = measure_bandwidth(max(5, args.repeat // 3))
        print(f"[{names[0]}] read bandwidth measured for this case: {limits['bandwidth']:.1f} GB/s", flush=True)
        for name in names:
            CASES[name](args, limits)
        with open(args.rows_out, "w") as f:
            json.dump(ROWS, f)
        return
    print(f"sparsec {sc.__version__}; numba threads {numba.get_num_threads()}; {openblas_note()}")
    limits = measure_limits(args.repeat)
    isolate = len(names) > 1 and not args.same_process
    if isolate:
        print("each case runs in a fresh process (--same-process: all in this one), and its %bw is against "
              "the bandwidth measured in that process just before it")
    for name in names:
        if isolate:
            _run_isolated(name, args, limits)
        else:
            CASES[name](args, limits)
    print("ratio = median time / sparsec's median time on the same case (above 1: sparsec is faster)")
    print_table()


if __name__ == "__main__":
    main()
