"""Device check for the CUDA target, in one short run (< 5 minutes) on a machine with an NVIDIA GPU:

1. the CUDA test modules on the real device (``SPARSEC_CUDA_TESTS=device``: the same tests the
   simulator runs in CI, on the GPU; there ``tests/test_cuda_replay.py`` also checks that replays
   are CUDA graphs), and the PTX/ptxas tests;
2. the MoE layer, sparsec ``target="cuda"`` against PyTorch on the same GPU (the Hugging Face
   MoE block, eager and ``torch.compile``): a Mixtral-shaped layer (hidden 1024, ffn 2816, 8
   experts, top-2) and a Qwen3-30B-A3B-shaped one (hidden 2048, ffn 768, 128 experts, top-8), at
   1 and 128 tokens, fp32 / bf16 / q8_0 (torch: fp32 and bf16). sparsec runs twice per case:
   launching every kernel from Python per call ("launches") and replaying the recorded call as a
   CUDA graph ("replayed", ``runtime/cuda/replay.py``; the note says how many launches it holds,
   or why it is not a graph). Printed per row: the wall time per call, the device time (CUDA
   events around the launches), the bytes of the experts the tokens are routed to (in each
   variant's stored format, plus the router) and the bandwidth of both times against the
   device's peak (from its memory clock and bus width).

    python benchmarks/cuda_check.py [--skip-tests] [--no-torch-compile] [--reduce-overhead]
                                    [--repeat N] [--budget S] [--modes fp32,bf16,q8_0]
                                    [--tokens 1,128] [--simulate]

On a lent GPU machine of this workplace, ``bash benchmarks/cuda_device.sh [options]`` installs
this checkout offline and runs this script, keeping its output under ``$OUT``.

``--simulate`` is a dry run of the same code on numba's CUDA simulator with a tiny layer (no
tests, no torch; ``tests/test_cuda_check_script.py`` runs it), so a GPU session is not spent on a
broken script. sparsec bf16 is the layer cast with ``Module.to("bfloat16")`` and traced with
bf16 inputs. Bytes for 128 tokens count the distinct experts the router picks for the
benchmark's inputs (sparsec's router; the HF block has its own random weights, so its routing
differs; at 1 token both read ``top_k`` experts). The issue's targets: at 1 token at least 70% of
peak bandwidth on the active expert bytes; at 128 tokens faster than ``torch.compile``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

LAYERS = [
    # name, hidden, ffn, experts, top_k, sparsec naming, HF block
    ("mixtral 8x(1024x2816) top-2", 1024, 2816, 8, 2, "mixtral", "mixtral"),
    ("qwen3-30b-a3b 128x(2048x768) top-8", 2048, 768, 128, 8, "qwen", "qwen3_moe"),
]
TOKENS = (1, 128)


def device_info():
    from numba import cuda
    if not cuda.is_available():
        sys.exit("cuda_check: numba.cuda finds no GPU here; this script is for a machine with one "
                 "(the simulator tests run in CI: tests/test_cuda_suite.py)")
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    try:  # DDR: two transfers per clock
        peak = 2 * dev.MEMORY_CLOCK_RATE * 1e3 * dev.GLOBAL_MEMORY_BUS_WIDTH / 8 / 1e9
    except Exception:  # noqa: BLE001 - attribute names differ across numba-cuda versions
        peak = float("nan")
    return name, dev.compute_capability, peak


def run_tests(timeout: float) -> str:
    from sparsec.lower.cuda.testing import CUDA_TESTS_ENV, cuda_test_files
    tests = os.path.join(ROOT, "tests")
    files = cuda_test_files(tests) + [os.path.join(tests, "test_cuda_ptx.py")]
    # the replay tests first (they assert that replays are CUDA graphs on a device): a run cut by
    # the timeout still reports them
    files.sort(key=lambda f: not f.endswith("test_cuda_replay.py"))
    env = dict(os.environ, **{CUDA_TESTS_ENV: "device"})
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", "-rs", *files]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        out, code = r.stdout, r.returncode
    except subprocess.TimeoutExpired as e:  # show how far it got (kernels JIT-compile on first use)
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        code = f"timed out after {timeout:.0f} s"
    tail = "\n".join(out.strip().splitlines()[-15:])
    return f"CUDA tests on the device ({time.perf_counter() - t0:.0f} s, exit {code}):\n{tail}"


def median_times(fn, repeat: int, sync, device_seconds) -> tuple[float, float]:
    """Median wall seconds of ``fn(); sync()`` and median device seconds (``device_seconds()``
    after each call: CUDA events from before the first launch to after the last)."""
    fn()
    sync()
    wall, dev = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        wall.append(time.perf_counter() - t0)
        dev.append(device_seconds())
    return float(np.median(wall)), float(np.median(dev))


def expert_bytes(cm, experts: int) -> int:
    """Bytes of one expert's matrices as the compiled model stores them."""
    total = 0
    for w in cm.graph.weights.values():
        shape = getattr(w, "shape", ())
        if len(shape) == 3 and shape[0] == experts:
            total += int(w.nbytes)
    return total // experts


def routed_experts(moe, x: np.ndarray, experts: int, top_k: int) -> int:
    w = np.asarray(moe.state_dict()["gate.weight"], np.float32)
    logits = x @ w.T
    return len(np.unique(np.argsort(-logits, axis=1)[:, :top_k]))


def compile_sparsec(layer, mode):
    """(moe, graph, compiled model) or a string saying why there is none. bf16: the layer's
    parameters cast with ``Module.to`` and traced with bf16 inputs (it computes in bf16)."""
    import sparsec as sc
    name, hidden, ffn, experts, top_k, naming, _ = layer
    moe = sc.nn.MoE(hidden, ffn, experts, top_k, router="softmax", norm_topk_prob=True, naming=naming, seed=0)
    dtype = "bfloat16" if mode == "bf16" else "float32"
    g = sc.trace(moe.to(dtype), sc.TensorSpec(("tokens", hidden), dtype))
    try:
        cm = sc.compile(g, target="cuda", quantize="q8_0" if mode == "q8_0" else None, progress=False,
                        accuracy_samples=0)
    except sc.errors.SparsecError as e:
        return f"not lowered yet: {str(e).splitlines()[0][:160]}"
    return moe, g, cm


#: relative error allowed against the interpreter of the graph the model was compiled from
TOLERANCE = {"fp32": 1e-4, "q8_0": 1e-4, "bf16": 3e-2}


def bench_sparsec(layer, compiled, tokens, mode, repeat, replay: bool):
    """(wall seconds, device seconds, bytes read, note, per-launch profile or None) or a string
    saying why there is no time. ``replay``: after the warm-up calls the executable replays its
    recorded launches (a CUDA graph); else it launches every kernel from Python on every call."""
    import sparsec as sc
    from numba import cuda
    from sparsec.runtime.cuda.executable import REPLAY_AFTER
    name, hidden, ffn, experts, top_k, naming, _ = layer
    moe, g, cm = compiled
    dt = g.main.args[0].type.dtype.np
    x = np.random.default_rng(tokens).standard_normal((tokens, hidden)).astype(np.float32).astype(dt)
    ex = cm.executables["main"]
    ex.replay_after = max(1, REPLAY_AFTER) if replay else 0
    ex.time_device = True
    try:
        got = cm(x)
        if tokens == 1 and not replay:  # correctness on the device (the interpreter runs every expert)
            (want,) = sc.interpret(cm.graph, x)
            got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
            err = float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))
            if err > TOLERANCE[mode]:
                return f"WRONG: max error {err:.2e} vs the interpreter (allowed {TOLERANCE[mode]:.0e})"
        xd = cuda.to_device(x)
        for _ in range(ex.replay_after + 1):  # the calls before the recording, and the recording
            ex.call(xd, to_host=False)
        wall, dev = median_times(lambda: ex.call(xd, to_host=False), repeat, cuda.synchronize,
                                 lambda: ex.device_seconds)
        # each kernel of the call alone (graphs of 10 copies): where the layer's time goes (at 128
        # tokens: the grouped GEMMs, their row tile in the kernel name)
        prof = ex.profile_launches(xd, repeat=10) if replay else None
    except sc.errors.SparsecError as e:
        return f"failed: {str(e).splitlines()[0][:160]}"
    finally:
        ex.time_device = False
    rep = next((r for r in ex.replay_report() if r["sizes"].get("tokens") == tokens), None)
    if not replay:
        note = ""
    elif rep is None or rep["launches"] is None:
        note = "not recorded"
    else:
        note = f"{rep['launches']} launches, " + ("CUDA graph" if rep["graph"] else f"no graph: {rep['why']}")
    active = min(experts, tokens * top_k) if tokens == 1 else routed_experts(moe, x.astype(np.float32), experts, top_k)
    nbytes = active * expert_bytes(cm, experts) + hidden * experts * np.dtype(dt).itemsize
    return wall, dev, nbytes, note, prof


def hf_block(kind, hidden, ffn, experts, top_k):
    import torch
    if kind == "mixtral":
        from transformers.models.mixtral.modeling_mixtral import MixtralConfig, MixtralSparseMoeBlock
        cfg = MixtralConfig(hidden_size=hidden, intermediate_size=ffn, num_local_experts=experts,
                            num_experts_per_tok=top_k)
        block = MixtralSparseMoeBlock(cfg)
    else:
        from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeConfig, Qwen3MoeSparseMoeBlock
        cfg = Qwen3MoeConfig(hidden_size=hidden, moe_intermediate_size=ffn, num_experts=experts,
                             num_experts_per_tok=top_k, norm_topk_prob=True)
        block = Qwen3MoeSparseMoeBlock(cfg)
    with torch.no_grad():
        for p in block.parameters():  # expert tensors may be created uninitialized
            p.normal_(0.0, 0.02)
    return block


def bench_torch(layer, tokens, dtype, compiled, repeat):
    """``compiled``: None (eager) or a ``torch.compile`` mode."""
    import torch
    name, hidden, ffn, experts, top_k, _, kind = layer
    tdt = torch.bfloat16 if dtype == "bf16" else torch.float32
    block = hf_block(kind, hidden, ffn, experts, top_k).to("cuda", tdt).eval()
    fn = torch.compile(block, mode=compiled) if compiled else block
    x = torch.randn(1, tokens, hidden, device="cuda", dtype=tdt)
    ev = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))

    def call():
        ev[0].record()
        with torch.no_grad():
            out = fn(x)
        ev[1].record()
        return out[0] if isinstance(out, tuple) else out
    for _ in range(3):  # torch.compile compiles on the first call (reduce-overhead records on later ones)
        call()
    wall, dev = median_times(call, repeat, torch.cuda.synchronize, lambda: ev[0].elapsed_time(ev[1]) / 1e3)
    esize = 2 if dtype == "bf16" else 4
    active = min(experts, tokens * top_k) if tokens == 1 else experts * (1 - (1 - top_k / experts) ** tokens)
    nbytes = int(active * 3 * hidden * ffn * esize + hidden * experts * esize)
    return wall, dev, nbytes, "", None


#: ``--simulate``: the same code paths on numba's CUDA simulator with a tiny layer (no device,
#: no torch): checks that this script runs before a GPU session is spent on it
SIM_LAYERS = [("tiny 4x(16x24) top-2", 16, 24, 4, 2, "mixtral", "mixtral")]
SIM_TOKENS = (1, 3)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--no-torch-compile", action="store_true")
    ap.add_argument("--reduce-overhead", action="store_true",
                    help="also torch.compile(mode='reduce-overhead') (CUDA graphs, as sparsec's replay)")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--budget", type=float, default=280.0, help="seconds; torch.compile cases are skipped past it")
    ap.add_argument("--simulate", action="store_true",
                    help="dry run on numba's CUDA simulator: a tiny layer, no tests, no torch")
    ap.add_argument("--modes", default="fp32,bf16,q8_0", help="sparsec variants, comma-separated")
    ap.add_argument("--tokens", default=None, help="token counts, comma-separated (default 1,128; simulate: 1,3)")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in TOLERANCE]
    if bad:
        ap.error(f"--modes: unknown {', '.join(bad)}; expected some of {', '.join(TOLERANCE)}")
    if args.simulate and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        # the simulator is chosen when numba is imported: start again with it on
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        sys.exit(subprocess.call([sys.executable, os.path.abspath(__file__), *(argv if argv is not None else
                                                                                 sys.argv[1:])], env=env))
    start = time.perf_counter()
    layers, token_counts = (SIM_LAYERS, SIM_TOKENS) if args.simulate else (LAYERS, TOKENS)
    if args.tokens:
        try:
            token_counts = tuple(int(t) for t in args.tokens.split(",") if t)
        except ValueError:
            ap.error(f"--tokens: expected whole numbers separated by commas, got {args.tokens!r}")
    if args.simulate:
        sys.setswitchinterval(2e-5)  # the simulator's barriers poll threads: ~6x faster (as in its tests)
        name, cc, peak = "numba CUDA simulator", (0, 0), float("nan")
        args.skip_tests, have_torch = True, False
    else:
        name, cc, peak = device_info()
    print(f"device: {name}, compute capability {cc[0]}.{cc[1]}, peak memory bandwidth {peak:.0f} GB/s")
    if not args.skip_tests:
        print(run_tests(timeout=min(150.0, args.budget / 2)))
    if not args.simulate:
        try:
            import torch
            have_torch = torch.cuda.is_available()
        except ImportError:
            have_torch = False
    print("wall: per call, host to host (median); gpu: CUDA events from before the first launch to after "
          "the last,\nincluding the device's idle time while the host launches; %: GB/s against the peak")
    print(f"\n{'layer':36} {'tok':>4} {'impl':28} {'wall us':>9} {'gpu us':>9} {'MB read':>8} {'% wall':>7} "
          f"{'% gpu':>7}  note")

    def show(layer, tokens, label, res):
        if isinstance(res, str):
            print(f"{layer[0]:36} {tokens:>4} {label:28} {res}")
            return
        wall, dev, nbytes, note, prof = res
        pct = [100 * nbytes / t / 1e9 / peak if t > 0 else float("nan") for t in (wall, dev)]
        print(f"{layer[0]:36} {tokens:>4} {label:28} {wall * 1e6:>9.1f} {dev * 1e6:>9.1f} {nbytes / 1e6:>8.1f} "
              f"{pct[0]:>6.1f}% {pct[1]:>6.1f}%  {note}")
        if prof:
            total = sum(p["seconds"] for p in prof)
            print(f"{'':41}each launch alone (us): " + ", ".join(
                f"{p['kernel']} {p['seconds'] * 1e6:.1f}" for p in prof) + f"; sum {total * 1e6:.1f}")

    for layer in layers:
        for mode in modes:  # one compiled model per mode, every token count
            try:
                compiled = compile_sparsec(layer, mode)
            except Exception as e:  # noqa: BLE001 - one failing case must not end the check
                compiled = f"error: {type(e).__name__}: {str(e)[:160]}"
            for tokens in token_counts:
                for replay in (False, True):
                    if isinstance(compiled, str):
                        res = compiled
                    else:
                        try:
                            res = bench_sparsec(layer, compiled, tokens, mode, args.repeat, replay)
                        except Exception as e:  # noqa: BLE001
                            res = f"error: {type(e).__name__}: {str(e)[:160]}"
                    show(layer, tokens, f"sparsec {mode} {'replayed' if replay else 'launches'}", res)
            compiled = None  # free the device and host copies of this layer's weights
        if not have_torch:
            continue
        impls = [("torch eager", None)]
        if not args.no_torch_compile:
            impls.append(("torch.compile", "default"))
        if args.reduce_overhead:
            impls.append(("torch.compile r-o", "reduce-overhead"))
        for impl, cmode in impls:
            for mode in [m for m in modes if m != "q8_0"]:
                for tokens in token_counts:
                    label = f"{impl} {mode}"
                    if cmode and time.perf_counter() - start > args.budget:
                        show(layer, tokens, label, f"skipped: past the {args.budget:.0f} s budget")
                        continue
                    try:
                        res = bench_torch(layer, tokens, mode, cmode, args.repeat)
                    except Exception as e:  # noqa: BLE001
                        res = f"error: {type(e).__name__}: {str(e)[:160]}"
                    show(layer, tokens, label, res)
    if not have_torch:
        print("(no torch rows: " + ("a dry run on the simulator)" if args.simulate else
                                    "PyTorch with CUDA is not installed here)"))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
