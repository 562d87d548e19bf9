"""``sc.compile``: trace (if needed) -> passes -> lowering -> executables; ``CompiledModel``
runs them, generates tokens, and saves/loads the ``.spc`` artifact.

    cm = sc.compile(model, sc.TensorSpec(("batch", "seq"), "int64"))
    logits = cm(ids)
    cm.save("m.spc"); cm2 = sc.load("m.spc")
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from .errors import SparsecError
from .ir import Graph

QUANT_MODES = (None, "int8", "q8_0", "q4_0", "int4")
TARGETS = ("cpu", "cuda")


class CompileError(SparsecError):
    """A model that cannot be compiled with the options given."""


class CompiledModel:
    """A compiled module: call it with NumPy arrays (one array back for one output, else a tuple).

    ``report`` holds what compilation did: pass pipeline and per-pass op counts, kernels per
    op, and the time of each phase.
    """

    def __init__(self, graph: Graph, executables: dict, target: str, pipeline: str, quantize, report: dict):
        self.graph = graph
        self.executables = executables
        self.target = target
        self.pipeline = pipeline
        self.quantize = quantize
        self.report = report
        main = graph.main
        self._main = executables[main.name]
        self.input_names = main.input_names()
        self.output_names = main.output_names()

    def __call__(self, *arrays):
        outs = self._main(*arrays)
        return outs[0] if len(outs) == 1 else outs

    def run(self, *arrays) -> tuple:
        """Always a tuple of outputs."""
        return self._main(*arrays)

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}: {a.type.pretty()}" for n, a in zip(self.input_names, self.graph.main.args))
        return f"<CompiledModel {self.target} ({ins}) pipeline={self.pipeline!r}>"

    # -- generation ------------------------------------------------------------------------
    def generate(self, input_ids, max_new_tokens: int, pixel_values=None) -> np.ndarray:
        """Greedy decoding: appends ``max_new_tokens`` argmax tokens to ``input_ids`` int64
        ``[batch, seq]`` and returns ``[batch, seq + max_new_tokens]``. ``pixel_values``: the
        image of a vision-language model (LLaVA), read by the prompt step only."""
        from .runtime.generate import generate
        extra = None if pixel_values is None else {"pixel_values": pixel_values}
        return generate(self, input_ids, max_new_tokens, extra)

    # -- artifact --------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the ``.spc`` artifact (optimized IR, weights, manifest, checksum) atomically."""
        from .runtime.artifact import save_artifact
        weights = {k: self.graph.weights[k] for k in self.graph.params() if k in self.graph.weights}
        manifest = {
            "sparsec_version": _version(), "target": self.target, "pipeline": self.pipeline,
            "quantize": self.quantize,
            "kernels": {name: [f"{s.op}:{s.kernel}" for s in ex.plan.steps]
                        for name, ex in self.executables.items()},
        }
        save_artifact(path, str(self.graph), weights, manifest)


def _version() -> str:
    from . import __version__
    return __version__


def _progress_bar(total: int, desc: str, enabled: bool | None):
    """A tqdm bar on a terminal (or when asked), nothing otherwise."""
    if enabled is False or total == 0:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="kernel", leave=False,
                disable=None if enabled is None else not enabled, file=sys.stderr)


def to_graph(model, specs) -> Graph:
    """A Graph from a Graph (copied), an ``sc.nn.Module``, or a Python function over Tensors."""
    from .frontend.tracer import trace
    from .testing.equivalence import clone
    if isinstance(model, Graph):
        return clone(model)
    if isinstance(model, str):
        from .fileio import read_model_ir
        return read_model_ir(model)
    if not callable(model):
        raise CompileError(f"sc.compile: expected an sc.nn.Module, a function or an sc.Graph, "
                           f"got {type(model).__name__}")
    if not specs:
        raise CompileError("sc.compile: give one sc.TensorSpec per model input, e.g. "
                           "sc.TensorSpec((\"batch\", \"seq\"), \"int64\")")
    return trace(model, *specs)


class _DecodeStep:
    """Traces ``model.forward_cached`` with the model's parameter names."""

    def __init__(self, model):
        self.model = model

    def named_parameters(self):
        return self.model.named_parameters()

    def forward(self, input_ids, positions, *caches):
        return self.model.forward_cached(input_ids, positions, *caches)

    __call__ = forward


def add_decode_function(graph: Graph, model) -> None:
    """For a causal LM module (``forward_cached`` + ``cache_layout``), add the KV-cache
    ``decode`` function that ``generate`` uses (see ``sparsec.runtime.generate``)."""
    from .frontend.tracer import TensorSpec, trace
    from .runtime.generate import DECODE
    specs = [TensorSpec(("batch", "seq"), "int64", name="input_ids"), TensorSpec(("seq",), "int64", name="positions")]
    specs += [TensorSpec(shape, dt, name=name) for name, shape, dt in model.cache_layout()]
    g = trace(_DecodeStep(model), *specs, name=DECODE)
    fn = g.functions[DECODE]
    graph.add_function(fn)
    for k, w in g.weights.items():
        graph.weights.setdefault(k, w)


class _PrefillStep(_DecodeStep):
    """Traces ``model.forward_prefill`` (the prompt step with the main function's extra inputs)."""

    def forward(self, *args):
        return self.model.forward_prefill(*args)

    __call__ = forward


def add_prefill_function(graph: Graph, model) -> None:
    """For a model whose prompt step takes more than token ids (a vision-language model:
    ``forward_prefill(pixel_values, input_ids, positions, *caches)``), add function ``prefill``:
    the main function's inputs, ``positions``, then the caches of ``decode`` (their ``batch`` is
    the main function's); outputs as ``decode``. ``generate`` runs it for the prompt."""
    from .frontend.tracer import TensorSpec, trace
    from .runtime.generate import PREFILL
    main = graph.main
    names = main.input_names()
    if "input_ids" not in names:
        raise CompileError(f"{type(model).__name__}: forward_prefill needs an input named 'input_ids' in the main "
                           f"function (inputs: {', '.join(map(str, names))})")
    ids = main.args[names.index("input_ids")].type
    specs = [TensorSpec(a.type.shape, a.type.dtype, name=n) for a, n in zip(main.args, names)]
    specs.append(TensorSpec((ids.shape[1],), "int64", name="positions"))
    specs += [TensorSpec(tuple(ids.shape[0] if d == "batch" else d for d in shape), dt, name=name)
              for name, shape, dt in model.cache_layout()]
    g = trace(_PrefillStep(model), *specs, name=PREFILL)
    graph.add_function(g.functions[PREFILL])
    for k, w in g.weights.items():
        graph.weights.setdefault(k, w)


def lower_all(graph: Graph, target: str) -> dict:
    """An ``Executable`` per function; the caches of the decode and prefill functions are donated
    (updated in place)."""
    from .lower import lower_function
    from .runtime.generate import DECODE, PREFILL, is_cache_input
    out = {}
    shared: dict = {}
    for name, fn in graph.functions.items():
        donate = {n for n in fn.input_names() if is_cache_input(n)} if name in (DECODE, PREFILL) else set()
        out[name] = _executable(lower_function(graph, name, target, donate=donate), target, graph, shared)
    return out


def _executable(plan, target: str, graph: Graph, shared: dict):
    """The target's executable for ``plan``; CUDA: the model's weights are uploaded once, shared
    by its functions (``shared["weights"]``)."""
    if target == "cuda":
        from .runtime.cuda.device import DeviceWeights
        from .runtime.cuda.executable import CudaExecutable
        if "weights" not in shared:
            shared["weights"] = DeviceWeights(graph.weights)
        return CudaExecutable(plan, shared["weights"])
    from .runtime.executable import Executable
    return Executable(plan)


def require_cuda(what: str) -> str:
    """The CUDA device's description, or a ``CompileError`` saying there is none and what to do
    (the simulator, ``--emit-ptx``, or the CPU target)."""
    try:
        from .runtime.cuda.device import NoCudaDevice, require_device
    except ImportError as e:
        raise CompileError(f"{what}: the CUDA target needs numba-cuda ({e}); pip install 'sparsec[cuda]'") from None
    try:
        return require_device(what)
    except NoCudaDevice as e:
        raise CompileError(str(e)) from None


def _writable_dir(path: str, what: str) -> None:
    """Create directory ``path`` if needed; a ``CompileError`` naming it where that fails or it is
    not writable (before any work is done)."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise CompileError(f"{what}: cannot create the directory {path!r}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK):
        raise CompileError(f"{what}: the directory {path!r} is not writable")


def compile(model, *specs, target: str = "cpu", quantize: str | None = None, pipeline: str = "default",
            threads: int | None = None, progress: bool | None = None, verify_each: bool = False,
            print_ir_after_all: bool = False, dump_dir: str | None = None, warmup: bool = True,
            accuracy_samples: int = 4, emit_ptx: str | None = None) -> CompiledModel:
    """Compile ``model`` (an ``sc.nn.Module``, a function, an ``sc.Graph`` or an ``.mlir``
    path) for ``target``.

    ``pipeline`` is pass pipeline text (``"default"`` = canonicalize, cse, dce,
    fuse-elementwise, plus what later passes add). ``quantize`` (``"int8"``, ``"q8_0"``,
    ``"q4_0"``, ``"int4"``) appends ``quantize{mode=...}`` to it (for other options, such as the
    int4 group or skip globs, write the pass into ``pipeline`` instead). A pipeline that names
    ``default`` gets ``fuse-projections`` last, after any quantize pass (sibling linears such as
    q/k/v stacked into one; after quantization, so skip globs see the model's weight names). ``threads`` sets the
    kernel thread count. ``progress``: None = a progress bar only on a terminal. ``warmup``
    compiles every kernel now (else at first call).

    When the pipeline quantizes, ``report["quantization"]`` holds the per-layer table (weights,
    bytes before/after, weight error) and an accuracy report against the fp32 model on
    ``accuracy_samples`` random input batches (the fp32 graph run by the reference interpreter;
    0 skips it); ``sparsec.quant.report.format_quantization`` prints both.

    ``target="cuda"`` needs a GPU numba.cuda can use, or its simulator (``NUMBA_ENABLE_CUDASIM=1``);
    ``emit_ptx=DIR`` (CUDA only) writes the PTX of every kernel for sm_90 into DIR (and checks
    it with ptxas when the toolkit is installed; ``report["ptx"]``) and needs no device: without
    one the model is returned uncompiled for the device (calling it raises).
    """
    from .passes import PASSES, PassManager, parse_pipeline, pipeline_names
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if quantize not in QUANT_MODES:
        raise CompileError(f"unknown quantize mode {quantize!r}; expected one of "
                           f"{', '.join(str(m) for m in QUANT_MODES)}")
    if target == "cuda" and emit_ptx is None:
        require_cuda("sc.compile(target='cuda')")
    if emit_ptx is not None:
        _writable_dir(emit_ptx, "emit_ptx")
    passes = parse_pipeline(pipeline)
    quant_passes = [p for p in passes if p.name == "quantize"]
    if quantize is not None:
        if quant_passes:
            raise CompileError(f"quantize={quantize!r} and a quantize pass in the pipeline ('{quant_passes[0]}'): "
                               f"give only one of them")
        quant_passes = [PASSES["quantize"](mode=quantize)]
        passes.append(quant_passes[0])
    if "default" in pipeline_names(pipeline) and not any(p.name == "fuse-projections" for p in passes):
        # last, after quantize: skip globs and the per-layer report see the model's own weights
        passes.append(PASSES["fuse-projections"]())
    if target == "cuda":  # the CUDA kernels read the canonical block layout: store that, not the CPU's repacking
        import dataclasses
        passes = [dataclasses.replace(p, layout="blocks") if p.name == "quantize" and p.layout == "auto" else p
                  for p in passes]
        quant_passes = [p for p in passes if p.name == "quantize"]
    if threads is not None:
        set_threads(threads)
    times = {}
    t0 = time.perf_counter()
    graph = to_graph(model, specs)
    if hasattr(model, "forward_cached") and hasattr(model, "cache_layout"):
        add_decode_function(graph, model)
        if hasattr(model, "forward_prefill"):
            add_prefill_function(graph, model)
    times["trace"] = time.perf_counter() - t0
    reference = None
    if quant_passes and accuracy_samples > 0:
        from .testing.equivalence import clone
        reference = clone(graph)  # the fp32 model the accuracy report compares with (weights shared)

    t0 = time.perf_counter()
    pm = PassManager(passes, verify_each=verify_each, print_ir_after_all=print_ir_after_all, dump_dir=dump_dir)
    layer_graph = []  # the graph as the quantize pass left it: per-layer errors name the model's weights
    keep = reference is not None and any(p.name == "fuse-projections" for p in passes)

    def after_pass(p, g):
        if keep and p is quant_passes[-1]:
            from .testing.equivalence import clone
            layer_graph[:] = [clone(g)]
    graph = pm.run(graph, inplace=True, after_pass=after_pass)
    graph.verify()
    times["passes"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    executables = lower_all(graph, target)
    times["lower"] = time.perf_counter() - t0
    ptx_report = None
    if emit_ptx is not None:
        if target != "cuda":
            raise CompileError(f"emit_ptx is for target='cuda', not {target!r}")
        from .runtime.cuda.device import availability
        from .runtime.cuda.launch import simulator
        from .runtime.cuda.ptx import emit_ptx as write_ptx
        if simulator():
            raise CompileError("emit_ptx: no PTX while numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1 "
                               "replaces numba.cuda's compiler); run without it, no GPU is needed")
        try:
            ptx_report = write_ptx([ex.plan for ex in executables.values()], emit_ptx)
        except OSError as e:
            raise CompileError(f"emit_ptx: cannot write the PTX into {emit_ptx!r}: {e.strerror or e}") from None
        warmup = warmup and availability()[0]

    t0 = time.perf_counter()
    from .runtime import kernel_stats
    before = kernel_stats()
    if warmup:
        total = sum(len(ex.plan.steps) for ex in executables.values())
        bar = _progress_bar(total, "compiling kernels", progress)
        for ex in executables.values():
            ex.warmup(None if bar is None else (lambda k: bar.update(1)))
        if bar is not None:
            bar.close()
    times["kernels"] = time.perf_counter() - t0
    after = kernel_stats()
    report = {
        "times": times,
        "passes": pm.format_report(timing=True),
        "pass_records": pm.report,
        "kernels": {name: ex.plan.kernel_counts() for name, ex in executables.items()},
        "kernel_cache": {k: after.get(k, 0) - before.get(k, 0) for k in after},
    }
    if ptx_report is not None:
        report["ptx"] = ptx_report
    mode = quantize or (quant_passes[-1].mode if quant_passes else None)
    cm = CompiledModel(graph, executables, target, pm.pipeline, mode, report)
    if quant_passes:
        report["quantization"] = _quantization_report(pm, reference, cm, accuracy_samples, times,
                                                      getattr(model, "sample_inputs", None),
                                                      layer_graph[0] if layer_graph else None)
    return cm


def _quantization_report(pm, reference, cm, samples: int, times: dict, model_samples=None,
                         layer_graph=None) -> dict:
    """The quantize pass's per-layer table, and the accuracy against fp32 (see ``compile``). A
    model with ``sample_inputs(samples)`` (LLaVA: prompts with the right number of image tokens)
    supplies the inputs; otherwise they are random from the signature."""
    from .quant.report import accuracy_report, quantization_layers, quantization_sources, sample_inputs
    layers, skipped = quantization_layers(pm.report)
    sources = quantization_sources(pm.report, drop=True)  # fp32 arrays: used below, then released
    out = {"mode": cm.quantize, "layers": layers, "skipped": skipped, "accuracy": None, "accuracy_note": ""}
    if reference is None:
        out["accuracy_note"] = "accuracy not measured (accuracy_samples=0)"
        return out
    t0 = time.perf_counter()
    try:
        inputs = model_samples(samples) if model_samples is not None else sample_inputs(reference, samples)
        out["accuracy"] = accuracy_report(reference, cm, inputs, fp32_weights=sources, layer_graph=layer_graph)
    except SparsecError as e:  # inputs that cannot be made up (e.g. integer inputs other than token ids)
        out["accuracy_note"] = f"accuracy not measured: {e}"
    times["accuracy"] = time.perf_counter() - t0
    return out


def load(path: str, threads: int | None = None, warmup: bool = True) -> CompiledModel:
    """A ``CompiledModel`` from a ``.spc`` artifact (checked: format version and checksum)."""
    from .ir import parse
    from .runtime.artifact import ArtifactError, load_artifact
    ir, weights, manifest = load_artifact(path)
    try:
        graph = parse(ir, filename=f"{path}:ir")
    except SparsecError as e:
        raise ArtifactError(f"{path}: the IR inside does not parse: {e}") from None
    graph.weights = weights
    try:
        graph.verify()  # the weights match the IR's types (quantized formats and shapes included)
    except SparsecError as e:
        raise ArtifactError(f"{path}: the weights do not match the IR: {e}") from None
    if threads is not None:
        set_threads(threads)
    t0 = time.perf_counter()
    if manifest.get("target") == "cuda":
        require_cuda(f"sc.load({path!r}): the artifact is compiled for target 'cuda'")
    executables = lower_all(graph, manifest.get("target", "cpu"))
    for ex in executables.values():
        if warmup:
            ex.warmup()
    report = {"times": {"load": time.perf_counter() - t0}, "manifest": manifest,
              "kernels": {name: ex.plan.kernel_counts() for name, ex in executables.items()}}
    return CompiledModel(graph, executables, manifest.get("target", "cpu"), manifest.get("pipeline", ""),
                         manifest.get("quantize"), report)


def set_threads(n: int) -> None:
    """Threads the parallel kernels use (at most what Numba was started with)."""
    import numba
    top = numba.config.NUMBA_NUM_THREADS
    if not 1 <= int(n) <= top:
        raise CompileError(f"threads={n}: expected 1..{top} (this machine's Numba thread pool; set "
                           f"NUMBA_NUM_THREADS before starting Python for more)")
    numba.set_num_threads(int(n))
