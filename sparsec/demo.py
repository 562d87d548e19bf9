"""``sparsec demo``: an embedded tiny MoE causal LM (seeded weights, nothing downloaded),
compiled with the default pipeline, checked against the reference interpreter, and timed."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

#: the demo model: Qwen3-MoE-shaped, small enough to compile and check in seconds
DEMO_CONFIG = dict(vocab=512, hidden=128, layers=2, heads=4, kv_heads=2, ffn=256, num_experts=8, top_k=2,
                   moe_ffn=128, rope_theta=10000.0)


def demo_model(seed: int = 0):
    """The demo's causal LM: two decoder layers whose feed-forward blocks are top-2-of-8 MoEs."""
    import sparsec as sc
    c = DEMO_CONFIG
    return sc.nn.CausalLM(
        vocab=c["vocab"], hidden=c["hidden"], layers=c["layers"], heads=c["heads"], kv_heads=c["kv_heads"],
        ffn=c["ffn"], rope_theta=c["rope_theta"], seed=seed,
        mlp=lambda i: sc.nn.MoE(hidden=c["hidden"], ffn=c["moe_ffn"], num_experts=c["num_experts"],
                                top_k=c["top_k"], router="softmax", norm_topk_prob=True, seed=seed * 100 + i))


def run_demo(echo: Callable[[str], None] = print, pipeline: str = "default", threads: int | None = None,
             tokens: int = 16, new_tokens: int = 8, progress: bool | None = None) -> dict:
    """Build, compile, check and time the demo model; ``echo`` each report line. Returns the
    figures (and raises ``DemoMismatch`` if the compiled model disagrees with the interpreter)."""
    import sparsec as sc
    from .benchmark import median_seconds
    from .testing.equivalence import compare_outputs
    c = DEMO_CONFIG
    model = demo_model()
    echo(f"model: tiny MoE causal LM: vocab {c['vocab']}, hidden {c['hidden']}, {c['layers']} layers, "
         f"{c['heads']} heads ({c['kv_heads']} kv), MoE {c['num_experts']} experts top-{c['top_k']} "
         f"(expert ffn {c['moe_ffn']}), {sum(w.size for w in model.state_dict().values()):,} parameters")
    spec = sc.TensorSpec(("batch", "seq"), "int64")
    graph = sc.trace(model, spec)

    t0 = time.perf_counter()
    cm = sc.compile(model, spec, pipeline=pipeline, threads=threads, progress=progress)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    sc.compile(model, spec, pipeline=pipeline, threads=threads, progress=False)
    t_warm = time.perf_counter() - t0
    rep = cm.report
    echo(f"passes ({cm.pipeline}):")
    for line in rep["passes"].splitlines():
        echo(line)
    n_kernels = sum(len(ex.plan.steps) for ex in cm.executables.values())
    echo(f"kernels: {n_kernels} steps in {len(cm.executables)} functions "
         f"({', '.join('@' + n for n in cm.executables)})")
    counts = {}
    for per_fn in rep["kernels"].values():
        for k, n in per_fn.items():
            counts[k] = counts.get(k, 0) + n
    for k, n in sorted(counts.items(), key=lambda kv: -kv[1])[:12]:
        echo(f"  {n:4d}  {k}")
    if len(counts) > 12:
        echo(f"  ... {len(counts) - 12} more kernel kinds")
    times = rep["times"]
    echo(f"compile: {t_compile:.2f} s cold in this process (trace {times['trace']:.2f} s, passes "
         f"{times['passes']:.2f} s, lowering {times['lower']:.2f} s, kernels {times['kernels']:.2f} s); "
         f"{t_warm:.2f} s warm")

    rng = np.random.default_rng(0)
    ids = rng.integers(0, c["vocab"], size=(1, tokens)).astype(np.int64)
    (ref,) = sc.interpret(graph, ids)
    got = cm(ids)
    msg = compare_outputs((ref,), (got,), ["logits"], rtol=0.0, atol=1e-4)
    err = float(np.abs(ref.astype(np.float64) - got).max())
    scale = max(1.0, float(np.abs(ref).max()))
    if msg is not None:
        raise DemoMismatch(f"compiled logits differ from the interpreter: {msg}")
    echo(f"check: logits [1, {tokens}, {c['vocab']}] match the interpreter: max abs error {err:.2e} "
         f"(tolerance {1e-4 * scale:.1e})")

    t_interp = median_seconds(lambda: sc.interpret(graph, ids), 5, warmup=1)
    t_comp = median_seconds(lambda: cm(ids), 20)
    echo(f"time ({tokens} tokens): interpreter {t_interp * 1e3:.2f} ms, compiled {t_comp * 1e3:.2f} ms: "
         f"{t_interp / t_comp:.1f}x faster")

    prompt = ids[:, :4]
    t0 = time.perf_counter()
    out = cm.generate(prompt, new_tokens)
    t_gen = time.perf_counter() - t0
    ref_ids = prompt
    for _ in range(new_tokens):
        (lg,) = sc.interpret(graph, ref_ids)
        ref_ids = np.concatenate([ref_ids, np.argmax(lg[:, -1], -1)[:, None]], axis=1)
    same = bool((out == ref_ids).all())
    echo(f"generate: {new_tokens} tokens with the KV cache in {t_gen * 1e3:.1f} ms "
         f"({t_gen / new_tokens * 1e3:.2f} ms/token): {out[0, 4:].tolist()}; "
         f"{'identical to' if same else 'DIFFERENT FROM'} step-by-step interpreter recomputation")
    if not same:
        raise DemoMismatch(f"generated {out.tolist()}, the interpreter gives {ref_ids.tolist()}")
    return {"max_abs_error": err, "interpreter_s": t_interp, "compiled_s": t_comp, "compile_s": t_compile,
            "warm_compile_s": t_warm, "generate_s": t_gen, "tokens": out}


class DemoMismatch(AssertionError):
    pass
