"""Whole-model decode against llama.cpp on the same random weights (issue 6).

A Mixtral-style causal LM (8 layers, hidden 1024, 16 heads of 64, 8 kv heads, 8 experts of
ffn 2816, top-2, vocab 32000; seeded random weights from ``sc.nn.CausalLM``) is written as GGUF
(``benchmarks/gguf_writer.py``) at F32, Q8_0 and Q4_0 and run by llama.cpp
(``llama-cpp-python``, built from source for this CPU) and by sparsec, both at 2 threads:

- decode speed: a prompt of 16 token ids, then ``n`` greedy tokens one at a time with the KV
  cache; each single-token step is timed and the median (and best) over all steps of all
  repeats is reported, as ms per token (the ``ms`` column) and tokens/s (note). Prefill is not
  timed. The two run alternately (one sparsec generation, one llama.cpp generation, ...; a
  first untimed round each), so load from other processes falls on both alike; on a shared
  2-core machine the medians still move a lot from run to run, the best times less. llama.cpp is driven through ``Llama.eval`` (one ``llama_decode`` per token; the
  Python wrapper's share is under 0.08 ms, a whole step of a tiny model); sparsec through the ``decode`` function
  ``cm.generate`` uses, one call per token.
- logits: llama.cpp's logits on the prompt against sparsec's (max abs diff, relative to the
  largest |logit|; the median over positions of each position's max diff; top-1 agreement per
  position), and how many greedy tokens agree. With random weights an MoE token whose expert
  choice flips under quantization noise differs a lot at that one position (the max), while the
  other positions stay at the quantization error (the median).
- bytes per token: the weight bytes one decode step must read (attention, the router, 2 of 8
  experts per layer, ``output``; one row of ``token_embd``) -> GB/s and % of the measured read
  bandwidth. sparsec quantized rows use the same byte count (same q8_0/q4_0 block formats on the
  same tensors).

Tensor types: the same tensors are quantized on both sides. GGUF (see ``gguf_writer``): norms
and the router F32; attention, experts and ``output`` in the format (as
``convert_hf_to_gguf.py --outtype q8_0``, and ``llama-quantize --pure`` for Q4_0; plain
``llama-quantize Q4_0`` would make ``output`` Q6_K and, at 8 experts, ``attn_k``/``attn_v``
Q8_0, formats sparsec lacks); ``token_embd`` F32, because sparsec's embedding lookup always
reads the f32 table (one row per token: no effect on speed). sparsec: the pipeline
``default,quantize{mode=<fmt>,skip="gate.weight"}`` (routers fp32, ``lm_head`` quantized like
llama.cpp's ``output``; sparsec's own default would also keep ``lm_head`` fp32). Both KV caches
are F32 (at 64 positions they are a few hundred KB).

    python benchmarks/llamacpp_case.py [--quick] [--formats f32,q8_0,q4_0] [--new-tokens 48]

or from ``benchmarks/bench.py`` (``from llamacpp_case import bench_llamacpp``) as a case:
``bench_llamacpp(args, limits)`` appends rows with bench.py's ``row``. Needs
``pip install llama-cpp-python gguf`` (benchmark-only); without them one row says so.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time

import numpy as np  # noqa: E402

import sparsec as sc  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import measure_bandwidth, openblas_note, print_table, reexec_without_openblas_overrides  # noqa: E402
from common import row as common_row  # noqa: E402

if __name__ == "__main__":
    reexec_without_openblas_overrides()

#: the issue's model
CONFIG = dict(vocab=32000, hidden=1024, layers=8, heads=16, kv_heads=8, ffn=2816, experts=8, top_k=2,
              rope_theta=10000.0, norm_eps=1e-5)
THREADS = 2
PROMPT = 16
SEED = 0


# -- model ---------------------------------------------------------------------------------------

def make_model(cfg: dict = CONFIG, seed: int = SEED):
    """The Mixtral-style ``sc.nn.CausalLM`` with seeded random weights (about 2.6 GB at fp32)."""
    return sc.nn.CausalLM(vocab=cfg["vocab"], hidden=cfg["hidden"], layers=cfg["layers"], heads=cfg["heads"],
                          kv_heads=cfg["kv_heads"], ffn=cfg["ffn"], rope_theta=cfg["rope_theta"],
                          norm_eps=cfg["norm_eps"], seed=seed,
                          mlp=lambda i: sc.nn.MoE(hidden=cfg["hidden"], ffn=cfg["ffn"], num_experts=cfg["experts"],
                                                  top_k=cfg["top_k"], router="softmax", norm_topk_prob=True,
                                                  naming="mixtral", seed=seed * 100 + i))


def decode_bytes(tensors, cfg: dict = CONFIG) -> int:
    """Weight bytes one decode token reads, from ``write_gguf``'s tensor list: the top-k of E
    experts, one row of the embedding, every other tensor whole."""
    total = 0.0
    for name, _t, shape, nbytes in tensors:
        if name.endswith("_exps.weight"):
            total += nbytes * cfg["top_k"] / cfg["experts"]
        elif name.startswith("token_embd"):
            total += nbytes / shape[0]
        else:
            total += nbytes
    return int(total)


def logit_agreement(got: np.ndarray, want: np.ndarray) -> str:
    """Max abs difference (and relative to the largest |logit|), the median over positions of
    each position's max difference (an MoE token whose expert choice flips under quantization
    noise differs a lot at that position only), and top-1 agreement."""
    scale = float(np.abs(want).max())
    per_pos = np.abs(got - want).reshape(-1, got.shape[-1]).max(-1)
    top1 = float((got.argmax(-1) == want.argmax(-1)).mean())
    return (f"max abs diff {per_pos.max():.2e} ({per_pos.max() / scale:.1e} rel; median position "
            f"{np.median(per_pos) / scale:.1e} rel), top-1 agree {100 * top1:.0f}%")


def _agree_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# -- llama.cpp -----------------------------------------------------------------------------------

def llamacpp_version() -> str:
    import llama_cpp
    return getattr(llama_cpp, "__version__", "?")


class LlamaCppRunner:
    """llama.cpp on a GGUF at ``THREADS`` threads (F32 KV cache, logits of every position kept)."""

    def __init__(self, path: str, n_ctx: int):
        import llama_cpp
        self.llm = llama_cpp.Llama(model_path=path, n_ctx=max(256, n_ctx), n_batch=64, n_threads=THREADS,
                                   n_threads_batch=THREADS, logits_all=True, verbose=False, seed=0,
                                   type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)

    def prompt_logits(self, prompt) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(prompt)
        return np.array(self.llm.scores[:len(prompt)], dtype=np.float32)

    def decode(self, prompt, n_new: int):
        """Prefill (untimed), then ``n_new - 1`` single-token steps, each timed: (times, tokens)."""
        llm = self.llm
        llm.reset()
        llm.eval(prompt)
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        times, gen = [], [tok]
        for _ in range(n_new - 1):
            t0 = time.perf_counter()
            llm.eval([tok])
            times.append(time.perf_counter() - t0)
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            gen.append(tok)
        return times, gen

    def close(self):
        self.llm.close()


# -- sparsec -------------------------------------------------------------------------------------

class SparsecRunner:
    """A compiled model's ``main`` (prompt logits) and its KV-cache ``decode`` function, called
    one token at a time exactly as ``cm.generate`` calls it (caches sized for the whole
    generation, a view of the first ``ctx`` positions per step)."""

    def __init__(self, cm):
        self.cm = cm

    def prompt_logits(self, prompt) -> np.ndarray:
        return np.asarray(self.cm(np.array([prompt], np.int64)))[0]

    def decode(self, prompt, n_new: int):
        ex = self.cm.executables["decode"]
        plan = ex.plan
        total = len(prompt) + n_new
        caches = []
        for slot_i in plan.inputs[2:]:
            t = plan.slots[slot_i].type
            caches.append(np.zeros([1 if d == "batch" else (total if d == "ctx" else d) for d in t.shape], t.dtype.np))
        ctx = len(prompt)
        out = ex(np.array([prompt], np.int64), np.arange(ctx, dtype=np.int64), *[c[:, :, :ctx, :] for c in caches])[0]
        tok = int(np.argmax(out[0, -1]))
        times, gen = [], [tok]
        for _ in range(n_new - 1):
            step, pos = np.array([[tok]], np.int64), np.array([ctx], np.int64)
            views = [c[:, :, :ctx + 1, :] for c in caches]
            t0 = time.perf_counter()
            out = ex(step, pos, *views)[0]
            times.append(time.perf_counter() - t0)
            tok = int(np.argmax(out[0, -1]))
            gen.append(tok)
            ctx += 1
        return times, gen

    def close(self):
        self.cm = None


#: what sparsec keeps in full precision when it quantizes, mirroring the GGUF (``GGUF_TYPES``):
#: the routers only (sparsec's own default also keeps ``lm_head`` fp32; llama.cpp quantizes ``output``)
SPARSEC_SKIP = "gate.weight"
#: GGUF type overrides mirroring sparsec: its ``sc.embedding`` lookup always reads the f32 table
#: (one row per token, so this costs no decode speed)
GGUF_TYPES = {r"^token_embd\.": "f32"}


def compile_sparsec(lm, quantize=None):
    """``sc.compile`` at ``THREADS`` threads; quantized with the ``quantize`` pass in the pipeline
    (``skip=SPARSEC_SKIP``), without the fp32 accuracy report (minutes of reference
    interpretation on this model)."""
    import inspect
    kw = {}
    if "accuracy_samples" in inspect.signature(sc.compile).parameters:
        kw["accuracy_samples"] = 0
    pipeline = "default"
    if quantize is not None:
        pipeline = f'default,quantize{{mode={quantize},skip="{SPARSEC_SKIP}"}}'
    return sc.compile(lm, sc.TensorSpec((1, "seq"), "int64"), pipeline=pipeline, threads=THREADS, progress=False,
                      **kw)


# -- the case ------------------------------------------------------------------------------------

def _stats(times):
    return float(np.median(times)), float(np.min(times))


def _log(msg):
    print(f"[llamacpp] {msg}", file=sys.stderr, flush=True)


def bench_llamacpp(args, limits, row=None):
    """Rows for bench.py: per format, sparsec and llama.cpp decode ms/token (ratio: time over
    sparsec's), GB/s against the measured bandwidth, logit agreement in the notes. ``args``:
    ``quick``, optionally ``formats`` ("f32,q8_0,q4_0") and ``new_tokens``. The two run
    alternately (a sparsec generation, a llama.cpp generation, ...), so load from other
    processes on a shared machine falls on both alike."""
    row = row or common_row
    quick = getattr(args, "quick", False)
    formats = getattr(args, "formats", None) or "f32,q8_0,q4_0"
    formats = [f.strip() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    n_new = getattr(args, "new_tokens", None) or (16 if quick else 48)
    reps = 2 if quick else 5
    c = CONFIG
    title = (f"Mixtral-style LM {c['layers']}L h{c['hidden']} {c['experts']}x ffn{c['ffn']} top-{c['top_k']} "
             f"v{c['vocab']}")
    try:
        from gguf_writer import _gguf, write_gguf
        version = llamacpp_version()  # imports llama_cpp
        _gguf()  # write_gguf imports gguf lazily: fail here, not after building the model
    except ImportError as e:
        row(f"{title}: decode vs llama.cpp", "llama.cpp (not installed: pip install llama-cpp-python gguf)",
            float("nan"), float("nan"), note=str(e))
        return
    import numba
    threads_before = numba.get_num_threads()  # compile_sparsec sets THREADS; later cases get theirs back
    try:
        _bench(row, formats, n_new, reps, title, version, write_gguf, limits)
    finally:
        numba.set_num_threads(threads_before)


def _bench(row, formats, n_new, reps, title, version, write_gguf, limits):
    c = CONFIG
    rng = np.random.default_rng(1234)
    prompt = [int(t) for t in rng.integers(3, c["vocab"], size=PROMPT)]

    t0 = time.perf_counter()
    lm = make_model()
    _log(f"model built in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    sp32 = SparsecRunner(compile_sparsec(lm))
    _log(f"sparsec fp32 compiled in {time.perf_counter() - t0:.1f} s")
    ref32 = sp32.prompt_logits(prompt)
    sp32_tokens = None

    with tempfile.TemporaryDirectory(prefix="sparsec-gguf-") as d:
        for fmt in formats:
            case = f"{title} {fmt}: decode 1 tok at ctx {PROMPT}..{PROMPT + n_new}, {THREADS} threads"
            sp, sp_note = None, "fp32"
            if fmt == "f32":
                sp = sp32
            else:
                if sp32 is not None:  # free the fp32 model before compiling a quantized one
                    sp32_tokens = sp32.decode(prompt, n_new)[1]
                    sp32.close()
                    sp32 = None
                    gc.collect()
                try:
                    t0 = time.perf_counter()
                    sp = SparsecRunner(compile_sparsec(lm, quantize=fmt))
                    sp_note = f"pipeline default,quantize{{mode={fmt},skip={SPARSEC_SKIP}}}: routers fp32 " \
                              f"(compiled in {time.perf_counter() - t0:.0f} s)"
                except Exception as e:  # the quantize pass / kernels may not be in this build yet
                    sp_note = f"quantize={fmt} unavailable: {type(e).__name__}: {str(e)[:160]}"
            _log(f"{fmt}: sparsec {'ready' if sp is not None else sp_note}")
            path = os.path.join(d, f"model.{fmt}.gguf")
            t0 = time.perf_counter()
            info = write_gguf(path, lm, None, fmt, types=GGUF_TYPES)
            wt = time.perf_counter() - t0
            nbytes = decode_bytes(info["tensors"])
            ll = LlamaCppRunner(path, PROMPT + n_new + 8)
            _log(f"{fmt}: GGUF written in {wt:.0f} s, llama.cpp loaded")
            try:
                ll_logits = ll.prompt_logits(prompt)
                sp_logits = sp.prompt_logits(prompt) if sp is not None else None
                ll_times, sp_times, ll_tokens, sp_tokens = [], [], None, None
                for r in range(reps + 1):  # the first round warms up both (page cache, thread pools)
                    if sp is not None:
                        t, toks = sp.decode(prompt, n_new)
                        sp_tokens = sp_tokens or toks
                        sp_times += t if r else []
                    t, toks = ll.decode(prompt, n_new)
                    ll_tokens = ll_tokens or toks
                    ll_times += t if r else []
            finally:
                ll.close()
                os.remove(path)
            if fmt == "f32":
                sp32_tokens = sp_tokens
            ref = None
            if sp is not None:
                med, best = _stats(sp_times)
                ref = med
                extra = "" if fmt == "f32" else f"; prompt logits vs sparsec fp32: {logit_agreement(sp_logits, ref32)}"
                row(case, "sparsec", med, best, ref, nbytes=nbytes, limits=limits,
                    note=f"{1 / med:.1f} tok/s; {sp_note}{extra}")
                if sp is not sp32:
                    sp.close()
                    gc.collect()
            else:
                row(case, "sparsec", float("nan"), float("nan"), note=sp_note)
            med, best = _stats(ll_times)
            notes = [f"{1 / med:.1f} tok/s", f"prompt logits vs sparsec fp32: {logit_agreement(ll_logits, ref32)}"]
            if sp_logits is not None and fmt != "f32":
                notes.append(f"vs sparsec {fmt}: {logit_agreement(ll_logits, sp_logits)}")
            if sp_tokens is not None:
                notes.append(f"greedy tokens agree {_agree_prefix(ll_tokens, sp_tokens)}/{n_new} with sparsec {fmt}")
            if fmt != "f32" and sp32_tokens is not None:
                notes.append(f"{_agree_prefix(ll_tokens, sp32_tokens)}/{n_new} with sparsec fp32")
            notes.append(f"GGUF {info['nbytes'] / 1e9:.2f} GB (token_embd F32, norms/router F32)")
            row(case, f"llama.cpp {version} (llama-cpp-python, -march=native)", med, best, ref, nbytes=nbytes,
                limits=limits, note="; ".join(notes))
    del lm, sp32
    gc.collect()


# -- standalone ----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--formats", default="f32,q8_0,q4_0")
    ap.add_argument("--new-tokens", type=int, default=None)
    args = ap.parse_args()
    args.repeat = 7 if args.quick else 25
    limits = {"bandwidth": measure_bandwidth(args.repeat)}
    print(f"sparsec {sc.__version__}; {THREADS} threads; {openblas_note()}; "
          f"read bandwidth {limits['bandwidth']:.1f} GB/s")
    bench_llamacpp(args, limits)
    print("ms = median ms per decoded token; ratio = median / sparsec's median on the same case")
    print_table()


if __name__ == "__main__":
    main()
