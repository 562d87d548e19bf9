"""``fuse-projections``: sibling ``sc.linear`` ops that read the same input become one.

Attention's q, k and v projections (and a dense MLP's gate and up) read the same activations:
three products of ``x`` each quantize ``x`` (quantized weights), start the threads and stream
their own weight. This pass stacks their weights along the output dim into one weight, emits one
``sc.linear`` and takes each original result back as a ``sc.slice`` of the last axis::

    q = linear(x, Wq)  k = linear(x, Wk)  v = linear(x, Wv)
      ->  qkv = linear(x, W_qkv)   q = slice(qkv, -1, 0, Nq)  k = slice(qkv, -1, Nq, Nq+Nk) ...

Exact: each output element is the same dot product of the same row and weight row.

What is fused: ``sc.linear`` users of one value whose weights are ``sc.param`` weights read by
nothing else in the function, of one kind (the same float dtype, or the same quantized format and layout: the
quantized parts are stacked in the canonical block layout and repacked to the members' layout)
and the same input size ``K``, all without bias or all with ``sc.param`` biases of one dtype. A
weight that the quantize pass kept in full precision (a skip glob) is not stacked with quantized
ones: members are grouped by kind. The stacked weight is named after its parts
(``model.layers.0.self_attn.q_proj+k_proj+v_proj.weight``); functions that share weights
(``main`` and ``decode``) share the stacked one; weights nothing reads any more are dropped (a
weight another function still reads unfused stays, beside the stacked copy).

``sc.compile`` runs this pass after the whole pipeline, quantization included, when the pipeline
uses ``default`` (so skip globs and the per-layer quantization report see the model's own
weights). Statistics: ``linears fused`` (ops replaced), ``fused linears`` (ops created).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Builder, Operation, OpResult
from ..ir.types import QuantType, TensorType
from .registry import Pass, Statistics, register_pass


def _param(v) -> Operation | None:
    return v.owner if isinstance(v, OpResult) and v.owner.name == "sc.param" else None


def _kind(graph, w_op: Operation):
    """What a weight must share with the others to be stacked with them (None: not stackable)."""
    w = graph.weights.get(w_op.attrs["name"])
    t = w_op.result.type
    if w is None or len(t.shape) != 2 or any(not isinstance(d, int) for d in t.shape):
        return None
    if isinstance(t, QuantType):
        if getattr(w, "fmt", None) != t.format:
            return None
        return ("q", t.format, w.layout)
    if isinstance(t, TensorType) and isinstance(w, np.ndarray) and t.dtype.np.kind == "f":
        return ("f", t.dtype.name)
    return None


def _stacked_name(names: list[str]) -> str:
    """``a.b.q.w``, ``a.b.k.w`` -> ``a.b.q+k.w`` (the common dotted prefix and suffix kept)."""
    parts = [n.split(".") for n in names]
    pre = 0
    while all(len(p) > pre + 1 for p in parts) and len({p[pre] for p in parts}) == 1:
        pre += 1
    suf = 0
    while all(len(p) > pre + suf + 1 for p in parts) and len({p[-1 - suf] for p in parts}) == 1:
        suf += 1
    middle = "+".join(".".join(p[pre:len(p) - suf]) for p in parts)
    return ".".join(parts[0][:pre] + [middle] + (parts[0][len(parts[0]) - suf:] if suf else []))


def _stack(weights: list):
    """The weights stacked along their first (output) dim."""
    if isinstance(weights[0], np.ndarray):
        return np.concatenate(weights, axis=0)
    from ..quant import layouts
    from ..quant.formats import QuantizedTensor
    blocks = [layouts.to_blocks(w) for w in weights]
    parts = {k: np.concatenate([b.parts[k] for b in blocks], axis=0) for k in blocks[0].parts}
    shape = (sum(w.shape[0] for w in weights), weights[0].shape[1])
    qt = QuantizedTensor(weights[0].fmt, shape, parts, "blocks")
    qt.check()
    layout = weights[0].layout
    return qt if layout == "blocks" else layouts.repack(qt, layout)


@register_pass
@dataclass(frozen=True)
class FuseProjections(Pass):
    """stack the weights of linears that read the same input into one linear (q/k/v, gate/up)"""
    name = "fuse-projections"

    def run(self, graph, stats: Statistics) -> None:
        stacked: dict[tuple, tuple] = {}          # member weight names -> the stacked (weight, bias) names
        replaced: set[str] = set()
        for fn in graph.functions.values():
            readers: dict[str, int] = {}          # weight name -> ops of this function reading it
            for op in fn.walk():
                if op.name == "sc.param":
                    readers[op.attrs["name"]] = readers.get(op.attrs["name"], 0) + len(op.result.uses)
            for group in self._groups(graph, fn, readers):
                replaced |= self._fuse(graph, group, stacked, stats)
        still_read = graph.params()
        for name in sorted(replaced):
            if name not in still_read:
                graph.weights.pop(name, None)

    @staticmethod
    def _groups(graph, fn, readers) -> list[list[Operation]]:
        """Sibling linears of each value, grouped by weight kind, input size and bias."""
        out = []
        seen = set()
        for op in list(fn.ops):
            if op.name != "sc.linear" or id(op) in seen:
                continue
            x = op.operands[0]
            by_key: dict[tuple, list[Operation]] = {}
            for lin, i in list(x.uses):
                if lin.name != "sc.linear" or i != 0 or lin.parent is not op.parent or id(lin) in seen:
                    continue
                w_op = _param(lin.operands[1])
                if w_op is None or readers.get(w_op.attrs["name"], 0) != 1:
                    continue
                kind = _kind(graph, w_op)
                if kind is None:
                    continue
                bias = None
                if len(lin.operands) == 3:
                    b_op = _param(lin.operands[2])
                    if b_op is None or readers.get(b_op.attrs["name"], 0) != 1 \
                            or not isinstance(graph.weights.get(b_op.attrs["name"]), np.ndarray):
                        continue
                    bias = b_op.result.type.dtype.name
                by_key.setdefault((kind, w_op.result.type.shape[1], bias), []).append(lin)
            for members in by_key.values():
                for m in members:
                    seen.add(id(m))
                if len(members) >= 2:
                    out.append(sorted(members, key=op.parent.index_of))
        return out

    @staticmethod
    def _fuse(graph, members: list[Operation], stacked: dict, stats: Statistics) -> set[str]:
        w_ops = [_param(m.operands[1]) for m in members]
        names = [w.attrs["name"] for w in w_ops]
        has_bias = len(members[0].operands) == 3
        b_ops = [_param(m.operands[2]) for m in members] if has_bias else []
        b_names = [b.attrs["name"] for b in b_ops]
        key = tuple(names + b_names)
        w_name = stacked.get(key)
        if w_name is None:  # first function to stack these weights (another one shares them)
            w_name = _unique(graph, _stacked_name(names))
            graph.weights[w_name] = _stack([graph.weights[n] for n in names])
            b_name = None
            if has_bias:
                b_name = _unique(graph, _stacked_name(b_names))
                graph.weights[b_name] = np.concatenate([graph.weights[n] for n in b_names])
            stacked[key] = (w_name, b_name)
        else:
            w_name, b_name = w_name
        sizes = [w.result.type.shape[0] for w in w_ops]
        wt = w_ops[0].result.type
        K = wt.shape[1]
        n = sum(sizes)
        w_type = QuantType(wt.format, (n, K)) if isinstance(wt, QuantType) else TensorType((n, K), wt.dtype)
        first = members[0]
        b = Builder.before_op(first)
        w_new = b.create("sc.param", [], {"name": w_name}, result_types=[w_type], loc=first.loc,
                         result_hints=[w_name]).result
        operands = [first.operands[0], w_new]
        if has_bias:
            bt = b_ops[0].result.type
            operands.append(b.create("sc.param", [], {"name": b_name}, result_types=[TensorType((n,), bt.dtype)],
                                     loc=first.loc, result_hints=[b_name]).result)
        y = b.create("sc.linear", operands, {}, loc=first.loc).result
        start = 0
        rank = len(first.result.type.shape)
        for m, size in zip(members, sizes):
            part = b.create("sc.slice", [y], {"axis": rank - 1, "start": start, "stop": start + size, "step": 1},
                            loc=m.loc, result_hints=[m.result.name_hint]).result
            m.result.replace_all_uses_with(part)
            start += size
        for m in members:
            m.erase()
        for p in w_ops + b_ops:
            if not p.result.uses:
                p.erase()
        stats["linears fused"] += len(members)
        stats["fused linears"] += 1
        return set(names + b_names)


def _unique(graph, name: str) -> str:
    if name not in graph.weights:
        return name
    i = 1
    while f"{name}.{i}" in graph.weights:
        i += 1
    return f"{name}.{i}"
