"""What ``sparsec show`` prints: inputs, outputs, op counts, parameters, experts, quantization."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .ir import Graph, TensorType
from .ir.types import QUANT_FORMATS, QuantType


def _nbytes(t) -> int:
    if isinstance(t, TensorType):
        return int(np.prod(t.shape)) * t.dtype.np.itemsize if t.is_static else 0
    if isinstance(t, QuantType):
        fmt = QUANT_FORMATS[t.format]
        n = int(np.prod(t.shape))
        return n * fmt.bits // 8 + (n // fmt.block * 2 if fmt.block else t.shape[0] * 4)
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
    return {
        "functions": list(g.functions),
        "inputs": [(n, a.type) for n, a in zip(fn.input_names(), fn.args)],
        "outputs": [(n, v.type) for n, v in zip(fn.output_names(), fn.outputs)],
        "ops": dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        "num_ops": sum(ops.values()),
        "num_params": len(params),
        "param_elements": int(sum(int(np.prod(t.shape)) for t in params.values())),
        "param_bytes": sum(_nbytes(t) for t in params.values()),
        # after sparse-activation the dispatch ops say it (expert weights are stacked by then;
        # expert-fusion counts a shared expert's chunks among them)
        "moe_blocks": len(dispatch) if dispatch else len(moe_blocks),
        "experts_per_block": (max(dispatch) if dispatch else
                              (len(experts) // len(moe_blocks)) if moe_blocks else 0),
        "quantized": dict(quant),
    }


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
    lines.append("quantization: " + (", ".join(f"{k} x{v}" for k, v in q.items()) if q else "none (full precision)"))
    return "\n".join(lines)
