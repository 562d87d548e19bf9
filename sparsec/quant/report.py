"""Accuracy of a quantized model against its fp32 original: what ``sparsec compile --quantize``
prints and the benchmark calls.

    inputs = sample_inputs(fp32_graph)                      # a few random batches from the signature
    rep = accuracy_report(fp32_graph, quant_graph_or_compiled_model, inputs)
    print(rep.format())

Per model output: max and mean absolute error, relative L2 error ``||q - f|| / ||f||`` and, for
logits (an output named ``*logits*`` or whose last dim is the row count of an embedding table),
top-1 agreement: the fraction of positions whose argmax over the last axis is the same. Per
quantized layer: the relative error of the layer's output, ``||x W_q^T - x W^T|| / ||x W^T||``, on
the activations ``x`` that reach it in the quantized model (reference interpreter, first batch).
The per-layer weight error and bytes come from the ``quantize`` pass (``quantization_layers``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["AccuracyReport", "OutputError", "accuracy_report", "format_layers", "format_quantization",
           "layer_errors", "quantization_layers", "quantization_sources",
           "sample_inputs"]


@dataclass
class OutputError:
    name: str
    max_abs: float
    mean_abs: float
    rel_l2: float
    top1: float | None = None     # fraction of positions with the same argmax (logits only)


@dataclass
class AccuracyReport:
    outputs: list[OutputError]
    samples: int
    layer_errors: dict[str, float] = field(default_factory=dict)   # weight name -> relative output error

    def format(self) -> str:
        lines = [f"accuracy against fp32 ({self.samples} random input batch{'es' if self.samples != 1 else ''}):"]
        for o in self.outputs:
            t1 = f"  top-1 agreement {100 * o.top1:.1f}%" if o.top1 is not None else ""
            lines.append(f"  {o.name}: max abs error {o.max_abs:.4g}  mean abs error {o.mean_abs:.4g}  "
                         f"relative error {o.rel_l2:.4g}{t1}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# inputs

def sample_inputs(graph, samples: int = 4, tokens: int = 16, seed: int = 0, function: str | None = None) -> list:
    """``samples`` random input batches for ``graph``: float inputs N(0, 1), every symbolic dim
    ``tokens`` (``batch``: 1), integer inputs that index an embedding table uniform over its rows
    (as the activation-sparsity calibration); other inputs raise a ``SparsecError`` naming them."""
    from ..errors import SparsecError
    from ..ir import TensorType
    from ..ir.types import dim_symbols
    fn = graph.functions[function] if function else graph.main
    rng = np.random.default_rng(seed)
    bindings = {s: (1 if s == "batch" else tokens) for a in fn.args if isinstance(a.type, TensorType)
                for d in a.type.shape if isinstance(d, str) for s in dim_symbols(d)}
    specs = []
    for a, name in zip(fn.args, fn.input_names()):
        t = a.type
        high = _rows_indexed(a) if isinstance(t, TensorType) and t.dtype.is_int else None
        if not isinstance(t, TensorType) or not (t.dtype.is_float or high is not None):
            raise SparsecError(f"input {name!r} of @{fn.name} ({t.pretty() if hasattr(t, 'pretty') else t}) is "
                               f"neither a float tensor nor token ids indexing an embedding table, so random sample "
                               f"inputs cannot be made for it; call sparsec.quant.report.accuracy_report with "
                               f"inputs of your own")
        specs.append((t.concrete(bindings), t.dtype.np, high))
    out = []
    for _ in range(samples):
        out.append(tuple(rng.standard_normal(shape).astype(dt) if high is None
                         else rng.integers(0, high, size=shape).astype(dt) for shape, dt, high in specs))
    return out


def _rows_indexed(arg) -> int | None:
    """The row count of the embedding table an integer input indexes (``sc.embedding``), else None."""
    for op in arg.users:
        if op.name == "sc.embedding" and op.operands[0] is arg:
            return int(op.operands[1].type.shape[0])
    return None


# ---------------------------------------------------------------------------------------------
# the report

def _runner(model):
    """A function inputs -> tuple of outputs, for a Graph (interpreter) or a compiled model."""
    from ..ir import Graph
    if isinstance(model, Graph):
        from ..interpreter import interpret

        def run(*arrays):
            with np.errstate(all="ignore"):
                return interpret(model, *arrays)
        return run
    if hasattr(model, "run"):
        return lambda *arrays: tuple(model.run(*arrays))
    if callable(model):
        def call(*arrays):
            out = model(*arrays)
            return tuple(out) if isinstance(out, (tuple, list)) else (out,)
        return call
    raise TypeError(f"accuracy_report: expected an sc.Graph, a CompiledModel or a callable, got {type(model).__name__}")


def _graph_of(model):
    from ..ir import Graph
    if isinstance(model, Graph):
        return model
    return getattr(model, "graph", None)


def _vocab_sizes(graph) -> set[int]:
    if graph is None:
        return set()
    return {int(op.operands[1].type.shape[0]) for op in graph.walk() if op.name == "sc.embedding"}


def accuracy_report(fp32_model, quant_model, inputs, names=None, layer_samples: int = 1,
                    fp32_weights=None, layer_graph=None) -> AccuracyReport:
    """Compare ``quant_model`` with ``fp32_model`` on ``inputs`` (a list of input tuples).

    Either model is an ``sc.Graph`` (run by the reference interpreter), a ``CompiledModel`` or a
    callable. ``names`` names the outputs (default: the graph's output names). Per-layer errors
    need the quantized model's graph (a Graph, or ``CompiledModel.graph``) and the fp32 weights:
    ``fp32_weights`` (name in the quantized graph -> float array, e.g. the quantize pass's
    ``stats.sources``), else the fp32 model's graph's weights of the same names; ``layer_samples``
    batches are used for them (0: skip). ``layer_graph``: the quantized graph to take them from
    instead (``sc.compile`` passes the graph before ``fuse-projections`` stacked its weights).
    """
    inputs = [tuple(b) for b in inputs]
    if not inputs:
        raise ValueError("accuracy_report: no inputs")
    f_run, q_run = _runner(fp32_model), _runner(quant_model)
    fg, qg = _graph_of(fp32_model), _graph_of(quant_model)
    if names is None:
        g = qg or fg
        names = g.main.output_names() if g is not None else None
    vocab = _vocab_sizes(fg) | _vocab_sizes(qg)
    acc: dict[int, dict] = {}
    for batch in inputs:
        fo, qo = f_run(*batch), q_run(*batch)
        if len(fo) != len(qo):
            raise ValueError(f"accuracy_report: the models give {len(fo)} and {len(qo)} outputs")
        for i, (f, q) in enumerate(zip(fo, qo)):
            f, q = np.asarray(f), np.asarray(q)
            if f.dtype.kind != "f" and f.dtype.name != "bfloat16":
                continue
            f64, q64 = f.astype(np.float64), q.astype(np.float64)
            d = np.abs(q64 - f64)
            a = acc.setdefault(i, {"max": 0.0, "sum": 0.0, "n": 0, "err2": 0.0, "ref2": 0.0, "same": 0, "pos": 0})
            a["max"] = max(a["max"], float(d.max()) if d.size else 0.0)
            a["sum"] += float(d.sum())
            a["n"] += d.size
            a["err2"] += float((d * d).sum())
            a["ref2"] += float((f64 * f64).sum())
            name = names[i] if names and i < len(names) else f"output {i}"
            if f.ndim >= 1 and f.size and ("logits" in str(name) or f.shape[-1] in vocab):
                a["same"] += int((f64.argmax(-1) == q64.argmax(-1)).sum())
                a["pos"] += int(f.size // f.shape[-1])
    outputs = []
    for i, a in sorted(acc.items()):
        name = names[i] if names and i < len(names) else f"output {i}"
        rel = float(np.sqrt(a["err2"] / a["ref2"])) if a["ref2"] > 0 else float(np.sqrt(a["err2"]))
        outputs.append(OutputError(str(name), a["max"], a["sum"] / max(a["n"], 1), rel,
                                   a["same"] / a["pos"] if a["pos"] else None))
    layers = {}
    if fp32_weights is None and fg is not None:
        fp32_weights = fg.weights
    lg = layer_graph if layer_graph is not None else qg
    if layer_samples and lg is not None and fp32_weights:
        layers = layer_errors(lg, fp32_weights, inputs[:layer_samples])
    return AccuracyReport(outputs, len(inputs), layers)


def _source_weight(name: str, fmt: str, fp32_weights):
    """The fp32 array a quantized weight was made from (``<name>.<fmt>`` comes from ``<name>``)."""
    for cand in (name, name.removesuffix(f".{fmt}")):
        w = fp32_weights.get(cand)
        if isinstance(w, np.ndarray):
            return w
    return None


def layer_errors(quant_graph, fp32_weights, inputs) -> dict[str, float]:
    """Per quantized weight: ``||y_q - y_f|| / ||y_f||`` of the ops reading it, where ``y_q`` is
    the op's output in the quantized model and ``y_f`` the same op on the same inputs with the fp32
    weight (reference interpreter, main function)."""
    from ..interpreter import _bind_inputs, run_block, run_op
    from ..ir.types import QuantType, bound_dims
    fn = quant_graph.main
    sites = []                                     # (op, operand index, weight name, fp32 weight)
    for op in fn.walk():
        for i, v in enumerate(op.operands):
            t = v.type
            if isinstance(t, QuantType) and getattr(v, "owner", None) is not None \
                    and getattr(v.owner, "name", "") == "sc.param":
                name = v.owner.attrs["name"]
                w = _source_weight(name, t.format, fp32_weights)
                if w is not None:
                    sites.append((op, i, name, w))
    if not sites:
        return {}
    err2: dict[str, float] = {}
    ref2: dict[str, float] = {}
    for batch in inputs:
        arrays = [np.asarray(a) for a in batch]
        env = {id(a): x for a, x in zip(fn.args, arrays)}
        with bound_dims(_bind_inputs(fn, arrays)), np.errstate(all="ignore"):
            run_block(fn.body, env, quant_graph.weights)
            for op, i, name, w in sites:
                if id(op.results[0]) not in env:
                    continue  # inside a region, or not reached
                yq = np.asarray(env[id(op.results[0])], np.float64)
                env2 = dict(env)
                env2[id(op.operands[i])] = w
                yf = np.asarray(run_op(op, env2, quant_graph.weights)[0], np.float64)
                err2[name] = err2.get(name, 0.0) + float(((yq - yf) ** 2).sum())
                ref2[name] = ref2.get(name, 0.0) + float((yf ** 2).sum())
    return {n: (float(np.sqrt(err2[n] / ref2[n])) if ref2[n] > 0 else float(np.sqrt(err2[n]))) for n in err2}


# ---------------------------------------------------------------------------------------------
# the quantize pass's table

def quantization_layers(records) -> tuple[list, list]:
    """``(layers, skipped)`` from a ``PassManager.report`` (every ``quantize`` pass in it)."""
    layers, skipped = [], []
    for r in records:
        if r.name == "quantize":
            layers.extend(getattr(r.stats, "layers", []))
            skipped.extend(getattr(r.stats, "skipped", []))
    return layers, skipped


def quantization_sources(records, drop: bool = False) -> dict:
    """Quantized weight name -> the float array it was made from (every ``quantize`` pass in a
    ``PassManager.report``); ``drop`` releases them from the records."""
    out = {}
    for r in records:
        if r.name == "quantize":
            out.update(getattr(r.stats, "sources", {}))
            if drop:
                r.stats.sources = {}
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def format_layers(layers, skipped=(), layer_errors: dict | None = None) -> str:
    """The per-layer table: name, shape, format, bytes before -> after (saved), weight error,
    and (when measured) the layer's output error."""
    if not layers and not skipped:
        return "quantization: no weights quantized"
    out_err = layer_errors or {}
    w = max([len(r.name) for r in layers] + [6])
    head = f"  {'weight':<{w}} {'shape':<12} {'format':<8} {'bytes before -> after':>24} {'saved':>10} {'weight err':>10}"
    if out_err:
        head += f" {'output err':>10}"
    lines = ["quantized layers:", head]
    for r in layers:
        shape = "x".join(map(str, r.shape))
        row = (f"  {r.name:<{w}} {shape:<12} {r.format:<8} {_mib(r.bytes_before):>10} -> {_mib(r.bytes_after):>10} "
               f"{_mib(r.bytes_saved):>10} {r.rel_error:>10.3g}")
        if out_err:
            e = out_err.get(r.name)
            row += f" {e:>10.3g}" if e is not None else f" {'-':>10}"
        lines.append(row)
    before, after = sum(r.bytes_before for r in layers), sum(r.bytes_after for r in layers)
    lines.append(f"  {len(layers)} weights: {_mib(before)} -> {_mib(after)}"
                 + (f" ({before / after:.2f}x smaller)" if after else ""))
    for name, why in skipped:
        lines.append(f"  kept in full precision: {name} ({why})")
    return "\n".join(lines)


def format_quantization(q: dict) -> str:
    """``CompiledModel.report["quantization"]`` as text: the per-layer table and the accuracy."""
    acc = q.get("accuracy")
    lines = [f"quantization: {q.get('mode')}",
             format_layers(q.get("layers", []), q.get("skipped", []), acc.layer_errors if acc else None)]
    lines.append(acc.format() if acc is not None else q.get("accuracy_note") or "accuracy not measured")
    return "\n".join(lines)
