"""``quantize``: matmul weights to a quantized format (``sparsec.quant``), repacked into the
layout the CPU kernels read fastest.

    quantize{mode=q8_0}
    quantize{mode=int4,group=128,skip="default,*.down_proj.weight",min-elements=4096}

What is quantized: every float ``sc.param`` used as the weight operand of ``sc.linear`` (``w``),
``sc.grouped_matmul`` (``w``) or ``sc.moe_gated_grouped_matmul`` (``w_gate``, ``w_up``). Its array
in ``graph.weights`` becomes a ``sparsec.quant.QuantizedTensor`` and the param's type
``QuantType(fmt, shape)`` (``!sc.q8_0<4096x1024>``). A weight that other ops read too (a tied
embedding table read by ``sc.embedding``) keeps its float array for them; the matmuls read a new
param ``<name>.<fmt>`` (``model.embed_tokens.weight.q8_0``). Expert weights must be ``sc.param``
stacks ``[E, N, K]`` (``fold-constants{fold-params=true}`` after the MoE passes makes them); a
weight computed by other ops is left alone (counted as skipped). Rows whose ``K`` is not a multiple
of the block are padded in storage (the logical shape keeps ``K``).

Options:

- ``mode``: ``int8`` (format ``i8c``: per output channel, symmetric), ``q8_0``, ``q4_0``, ``int4``
  (group-wise asymmetric; ``group`` 32, 64 or 128 gives ``int4``, ``int4g64``, ``int4g128``).
  ``group`` applies to ``int4`` only (q8_0/q4_0 blocks are 32, int8 is per row).
- ``skip``: comma-separated ``fnmatch`` globs (``*``, ``?``, ``[seq]``) over weight names; a
  weight is kept in full precision when a glob matches its whole name or a dotted suffix of it
  (``gate.weight`` matches ``model.layers.0.mlp.gate.weight`` but not ``...gate_proj.weight``).
  The word ``default`` stands for the default globs ``DEFAULT_SKIP``: the MoE router
  (``gate.weight``, ``router.*``), Qwen2-MoE's ``shared_expert_gate.weight`` and ``lm_head.*``.
  A weight tied to an embedding table (read by ``sc.embedding`` too) is also matched as
  ``lm_head.weight`` for its matmul uses, so a tied output projection is skipped by default.
  ``skip=none`` or ``skip=""`` quantizes everything; ``skip="default,*.down_proj.*"`` adds a
  glob to the defaults; a list without ``default`` replaces them.
- ``layout``: ``auto`` repacks every weight into ``sparsec.quant.layouts.preferred_layout(fmt)``
  (what the CPU kernels registered as fastest; ``blocks`` until they register another);
  ``blocks`` keeps the canonical llama.cpp block layout; any other registered layout name is
  used as is. Artifacts store the repacked form.
- ``min-elements``: weights with fewer elements stay in full precision.

Statistics: ``weights quantized``, ``bytes before``, ``bytes after``, ``weights skipped (<why>)``.
The per-layer table (name, shape, format, bytes before -> after, relative weight error
``||W - W_q|| / ||W||``) is ``stats.layers`` (a list of ``QuantizedLayer``) and the skipped weights
``stats.skipped`` (``(name, why)``) on the pass's ``Statistics`` in ``PassManager.report``;
``sparsec.quant.report.quantization_layers(pm.report)`` collects them. ``stats.sources`` maps each
quantized weight's name to the float array it was made from (what per-layer output errors compare
with; ``sc.compile`` drops it once its accuracy report is made).

Non-finite weights, and weights too large for a format's f16 scale, are refused with a
``QuantizationError`` naming the tensor (skip the tensor, or fix the checkpoint).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np

from ..errors import SparsecError
from ..ir import Builder
from ..ir.core import OpResult
from ..ir.types import QuantType, TensorType
from .registry import Pass, Statistics, option, register_pass

#: operand positions that hold a weight ``[.., N, K]`` a quantized kernel reads
MATMUL_WEIGHTS = {"sc.linear": (1,), "sc.grouped_matmul": (1,), "sc.moe_gated_grouped_matmul": (1, 2)}
#: what ``skip=default`` keeps in full precision: MoE routers and the output projection
DEFAULT_SKIP = ("gate.weight", "router.*", "shared_expert_gate.weight", "lm_head.*")
MODES = ("int8", "q8_0", "q4_0", "int4")


@dataclass
class QuantizedLayer:
    """One row of the per-layer table."""
    name: str                 # the weight's name in graph.weights (after the pass)
    shape: tuple[int, ...]
    format: str
    layout: str
    bytes_before: int
    bytes_after: int
    rel_error: float          # ||W - dequantize(Q)||_F / ||W||_F

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after


def parse_skip(text: str) -> tuple[str, ...]:
    """``"default,*.down_proj.*"`` -> the globs (``default`` expanded; ``none``/empty: no globs)."""
    out: list[str] = []
    for item in (s.strip() for s in (text or "").split(",")):
        if not item or item.lower() == "none":
            continue
        if item == "default":
            out.extend(DEFAULT_SKIP)
        else:
            out.append(item)
    return tuple(dict.fromkeys(out))


def skip_match(name: str, globs) -> str | None:
    """The first glob matching ``name`` or a dotted suffix of it, else None."""
    for g in globs:
        if fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(name, "*." + g):
            return g
    return None


def _relative_error(w: np.ndarray, wq: np.ndarray, chunk: int = 1 << 20) -> float:
    """``||w - wq|| / ||w||`` accumulated in f64 over chunks (no f64 copy of a large weight)."""
    a, b = w.reshape(-1), wq.reshape(-1)
    err2 = ref2 = 0.0
    for i in range(0, a.size, chunk):
        x = a[i:i + chunk].astype(np.float64)
        d = x - b[i:i + chunk]
        err2 += float(d @ d)
        ref2 += float(x @ x)
    return float(np.sqrt(err2 / ref2)) if ref2 > 0 else 0.0


def _is_float_array(w) -> bool:
    return isinstance(w, np.ndarray) and (w.dtype.kind == "f" or w.dtype.name == "bfloat16")


@register_pass
@dataclass(frozen=True)
class Quantize(Pass):
    """quantize matmul weights (int8 per channel, q8_0, q4_0, int4 groups); routers and lm_head stay fp32"""
    name = "quantize"
    mode: str = option("q8_0", choices=MODES, doc="int8 (per output channel), q8_0, q4_0 or int4")
    group: int = option(32, choices=(32, 64, 128), doc="int4 group size (values per scale and minimum)")
    skip: str = option("default", doc="comma-separated fnmatch globs of weight names kept in full precision "
                                      "('default' = routers and lm_head; 'none' = quantize all)")
    layout: str = option("auto", doc="auto (the layout the CPU kernels read fastest), blocks, or a layout name")
    min_elements: int = option(0, doc="weights with fewer elements stay in full precision")

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.group not in (32, 64, 128):
            raise ValueError(f"group must be 32, 64 or 128, got {self.group}")
        if self.mode != "int4" and self.group != 32:
            raise ValueError(f"group={self.group} applies to mode int4 only ({self.mode} has a fixed block: "
                             f"{'one scale per row' if self.mode == 'int8' else '32 values'})")
        if self.min_elements < 0:
            raise ValueError(f"min-elements must be >= 0, got {self.min_elements}")
        if self.layout not in ("auto", "blocks"):
            from ..quant.layouts import layouts_for
            if self.layout not in layouts_for(self.format):
                raise ValueError(f"no layout {self.layout!r} for {self.format}; known: auto, "
                                 f"{', '.join(layouts_for(self.format))}")

    @property
    def format(self) -> str:
        from ..quant import format_for_mode
        return format_for_mode(self.mode, self.group)

    def target_layout(self) -> str:
        from ..quant.layouts import preferred_layout  # the kernels' layouts register with sparsec.quant
        return preferred_layout(self.format) if self.layout == "auto" else self.layout

    # -------------------------------------------------------------------------------------
    def run(self, graph, stats: Statistics) -> None:
        fmt, globs, layout = self.format, parse_skip(self.skip), self.target_layout()
        layers: list[QuantizedLayer] = []
        skipped: list[tuple[str, str]] = []
        stats.layers, stats.skipped = layers, skipped
        stats.sources = {}  # quantized name -> the float array it was made from (for accuracy reports)

        params: dict[str, list] = {}                 # name -> its sc.param ops (every function)
        for op in graph.walk():
            if op.name == "sc.param":
                params.setdefault(op.attrs["name"], []).append(op)

        def skip(name: str, why: str) -> None:
            skipped.append((name, why))
            stats[f"weights skipped ({why})"] += 1

        # weight operands that are not a param (a stack not folded yet, a cast, ...)
        for op in graph.walk():
            for i in MATMUL_WEIGHTS.get(op.name, ()):
                v = op.operands[i]
                if not (isinstance(v, OpResult) and v.owner.name == "sc.param"):
                    skip(f"{op.name} operand {i}", "weight computed by other ops; run "
                                                    "fold-constants{fold-params=true} first")

        for name, ops in params.items():
            uses = [(op, u) for op in ops for u in op.result.uses]
            mm = [(op, u) for op, u in uses if u[1] in MATMUL_WEIGHTS.get(u[0].name, ())]
            if not mm:
                continue
            tied = any(u[0].name == "sc.embedding" for _, u in uses)
            t = ops[0].result.type
            if isinstance(t, QuantType):
                continue  # already quantized (a second quantize pass)
            w = graph.weights.get(name)
            if w is None:
                raise SparsecError(f"weight {name!r} is not in the graph's weight store, so it cannot be quantized "
                                   f"(an .mlir file takes its weights from the .safetensors file beside it)")
            if not isinstance(t, TensorType) or not _is_float_array(w):
                skip(name, "not a float weight")
                continue
            hit = skip_match(name, globs) or (skip_match("lm_head.weight", globs) if tied else None)
            if hit is not None:
                skip(name, f"skip {hit}")
                continue
            if w.size < self.min_elements:
                skip(name, f"fewer than {self.min_elements} elements")
                continue
            layers.append(self._quantize_weight(graph, name, ops, mm, len(mm) == len(uses), fmt, layout, stats))

        stats["weights quantized"] = len(layers)
        stats["bytes before"] = sum(r.bytes_before for r in layers)
        stats["bytes after"] = sum(r.bytes_after for r in layers)

    def _quantize_weight(self, graph, name: str, ops, mm, only_matmuls: bool, fmt: str, layout: str,
                         stats: Statistics) -> QuantizedLayer:
        from ..quant import layouts, quantize
        w = graph.weights[name]
        qt = quantize(w, fmt, name=name)
        rel = _relative_error(w, np.asarray(qt))
        qt = layouts.repack(qt, layout)
        if only_matmuls:
            new_name = name
        else:  # other ops (an embedding lookup) keep the float weight under its own name
            taken = set(graph.weights) | set(graph.params())
            new_name, n = f"{name}.{fmt}", 1
            while new_name in taken:
                new_name, n = f"{name}.{fmt}.{n}", n + 1
            stats["float weights kept for other uses"] += 1
        graph.weights[new_name] = qt
        stats.sources[new_name] = w
        qtype = QuantType(fmt, tuple(w.shape))
        by_op: dict[int, list] = {}
        for op, u in mm:
            by_op.setdefault(id(op), [op]).append(u)
        for entries in by_op.values():
            op, users = entries[0], entries[1:]
            block = op.parent
            same = [u for u, _ in users if u.parent is block]
            # right before its first reader (the param op's own place when it is read inside a region)
            at = min(same, key=block.index_of) if len(same) == len(users) and not only_matmuls else op
            new = Builder.before_op(at).create("sc.param", [], {"name": new_name}, result_types=[qtype],
                                               loc=op.loc, result_hints=[new_name])
            for user, i in users:
                user.set_operand(i, new.result)
            if not op.result.uses:
                op.erase()
        return QuantizedLayer(new_name, tuple(int(d) for d in w.shape), fmt, qt.layout, int(w.nbytes),
                              int(qt.nbytes), rel)
