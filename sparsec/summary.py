"""What ``sparsec show`` prints: inputs, outputs, op counts, parameters, experts, quantization."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .ir import Graph, TensorType
from .ir.types import QUANT_FORMATS, QuantType


def quant_nbytes(fmt_name: str, shape) -> int:
    """Bytes of a weight of logical ``shape`` ``[..., N, K]`` stored in a quantized format, scales
    included: per block of ``b`` values ``b * bits / 8`` bytes plus an f16 scale ``d`` (and an f16
    minimum ``m`` for int4*), K padded to whole blocks; ``i8c``: one byte per value plus an f32
    scale per row. So q8_0 is 8.5 bits per weight, q4_0 4.5, int4 5.0, int4g64 4.5, int4g128 4.25."""
    fmt = QUANT_FORMATS[fmt_name]
    rows, k = int(np.prod(shape[:-1])), int(shape[-1])
    if not fmt.block:
        return rows * (k * fmt.bits // 8 + 4)
    nb = -(-k // fmt.block)
    return rows * nb * (fmt.block * fmt.bits // 8 + (4 if fmt_name.startswith("int4") else 2))


def _nbytes(t, w=None) -> int:
    if isinstance(t, QuantType):
        if w is not None and hasattr(w, "fmt"):
            return int(w.nbytes)  # what is stored (a repacked layout may differ)
        return quant_nbytes(t.format, t.shape)
    if isinstance(t, TensorType):
        return int(np.prod(t.shape)) * t.dtype.np.itemsize if t.is_static else 0
    return 0


def summarize(g: Graph) -> dict:
    fn = g.main
    ops = Counter(op.name for op in g.walk() if op.name not in ("func.return", "sc.yield"))
    params = g.params()
    experts: set[tuple[str, int]] = set()
    for name in params:
        m = re.match(r"(?:(.*)\.)?experts\.(\d+)\.", name)
        if m:
            experts.add((m.group(1) or "", int(m.group(2))))
    moe_blocks = sorted({p for p, _ in experts})
    dispatch = [op.attrs["num_experts"] for op in g.walk() if op.name == "sc.moe_dispatch"]
    quant = Counter(t.format for t in params.values() if isinstance(t, QuantType))
    quant_bytes = sum(_nbytes(t, g.weights.get(n)) for n, t in params.items() if isinstance(t, QuantType))
    quant_elems = sum(int(np.prod(t.shape)) for t in params.values() if isinstance(t, QuantType))
    return {
        "functions": list(g.functions),
        "inputs": [(n, a.type) for n, a in zip(fn.input_names(), fn.args)],
        "outputs": [(n, v.type) for n, v in zip(fn.output_names(), fn.outputs)],
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "num_ops": sum(ops.values()),
        "num_params": len(params),
        "param_elements": int(sum(int(np.prod(t.shape)) for t in params.values())),
        "param_bytes": sum(_nbytes(t, g.weights.get(n)) for n, t in params.items()),
        # after sparse-activation the dispatch ops say it (expert weights are stacked by then;
        # expert-fusion counts a shared expert's chunks among them)
        "moe_blocks": len(dispatch) if dispatch else len(moe_blocks),
        "experts_per_block": (max(dispatch) if dispatch else
                              (len(experts) // len(moe_blocks)) if moe_blocks else 0),
        "quantized": dict(quant),
        "quantized_bytes": quant_bytes,
        "quantized_elements": quant_elems,
    }


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def format_summary(s: dict, title: str = "") -> str:
    def ty(t):
        return t.pretty() if hasattr(t, "pretty") else str(t)
    lines = []
    if title:
        lines.append(title)
    lines.append(f"functions: {', '.join('@' + f for f in s['functions'])}")
    lines.append("inputs:")
    lines += [f"  {n}: {ty(t)}" for n, t in s["inputs"]]
    lines.append("outputs:")
    lines += [f"  {n}: {ty(t)}" for n, t in s["outputs"]]
    lines.append(f"ops: {s['num_ops']}")
    lines += [f"  {k:<24} {v}" for k, v in s["ops"].items()]
    mb = s["param_bytes"] / 2**20
    lines.append(f"params: {s['num_params']} tensors, {s['param_elements']:,} elements, {mb:.2f} MiB")
    if s["moe_blocks"]:
        per = f", {s['experts_per_block']} experts each" if s["experts_per_block"] else ""
        lines.append(f"MoE blocks: {s['moe_blocks']}{per}")
    else:
        lines.append("MoE blocks: none")
    q = s["quantized"]
    if q:
        qb, qe = s.get("quantized_bytes", 0), s.get("quantized_elements", 0)
        lines.append(f"quantization: {', '.join(f'{k} x{v}' for k, v in q.items())}: {qe:,} weights in "
                     f"{_size(qb)} ({8 * qb / max(qe, 1):.2f} bits per weight; as f32: {_size(4 * qe)})")
    else:
        lines.append("quantization: none (full precision)")
    return "\n".join(lines)
