"""``infer-shapes``: specialize symbolic dims to sizes and re-derive every value's type.

``infer-shapes{bind="tokens=5,batch=1"}`` (quoted in pipeline text: the value holds ``=`` and
``,``) substitutes the bound sizes for those symbols in the function input types (the names the
printer writes as ``sc.dims``) and in every ``Dims`` attribute (``sc.reshape``/``sc.broadcast_to``
shapes such as ``["tokens", 8]``), then walks each function in order and re-derives every op's
result types with its shape rule (``sparsec.ir.builder.infer_result_types``), updating
``result.type`` in place. Nested regions follow: an ``sc.fused`` body's block arguments take the
operand types, its ops are re-derived, and the op's own results come from its ``sc.yield``.
Products of symbols (``"batch*seq"``, ``"2*tokens"``) become ints when all their symbols are
bound, or keep the unbound ones (``batch=2`` turns ``"batch*seq"`` into ``"2*seq"``).
``sc.param`` types are declared, not derived, and stay as they are.

Without a binding the pass only re-derives the types: on valid IR nothing changes, so the
``types changed`` statistic is a consistency check of the shape rules.

A binding that is malformed (``tokens:5``, ``tokens=``, ``=5``), names a size that is not a
positive integer, binds a symbol twice, or names a symbol that is not a dim of any function
input is a ``PipelineError`` naming it (the syntax is checked when the pipeline is parsed, the
symbols when the pass runs). Should a shape rule refuse the specialized types, that too is a
``PipelineError``, naming the binding and the op.

Statistics: ``symbols bound``, ``types changed`` (inputs, results and region arguments),
``attributes specialized``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import VerifyError
from ..ir import Block, TensorType
from ..ir.attributes import Dims
from ..ir.builder import infer_result_types
from ..ir.types import dim_prod, dim_symbols, eval_dim
from .registry import Pass, PipelineError, Statistics, option, register_pass

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def parse_binding(text: str) -> dict[str, int]:
    """``"tokens=5, batch=1"`` -> ``{"tokens": 5, "batch": 1}``; raises ``PipelineError``."""
    out: dict[str, int] = {}
    if not text.strip():
        return out
    for item in text.split(","):
        item = item.strip()
        name, eq, size = (s.strip() for s in item.partition("="))
        if not eq or not name or not size:
            raise PipelineError(f"infer-shapes: bind={text!r}: expected symbol=size, got {item!r}")
        if not _SYMBOL.match(name):
            raise PipelineError(f"infer-shapes: bind={text!r}: {name!r} is not a symbol name")
        try:
            n = int(size, 10)
        except ValueError:
            raise PipelineError(f"infer-shapes: bind={text!r}: the size of {name!r} must be a positive "
                                f"integer, got {size!r}") from None
        if n <= 0:
            raise PipelineError(f"infer-shapes: bind={text!r}: the size of {name!r} must be a positive "
                                f"integer, got {n}")
        if name in out:
            raise PipelineError(f"infer-shapes: bind={text!r}: {name!r} is bound twice")
        out[name] = n
    return out


def substitute_dim(d, bindings: dict[str, int]):
    """``d`` with the bound symbols replaced by their sizes (an int once none is left)."""
    if isinstance(d, int):  # static, or -1 in a reshape shape
        return d
    syms = dim_symbols(d)
    coef = eval_dim(d, {s: 1 for s in syms})
    bound = math.prod(bindings[s] for s in syms if s in bindings)
    return dim_prod([coef * bound, *(s for s in syms if s not in bindings)])


def input_symbols(graph) -> set[str]:
    """Every symbol that appears in a dim of some function input."""
    return {s for fn in graph.functions.values() for a in fn.args if isinstance(a.type, TensorType)
            for d in a.type.shape for s in dim_symbols(d)}


@register_pass
@dataclass(frozen=True)
class InferShapes(Pass):
    """bind symbolic dims to sizes and re-derive every type with the shape rules"""
    name = "infer-shapes"
    bind: str = option("", doc='symbol sizes, e.g. "tokens=5,batch=1" (empty: only re-derive types)')

    def __post_init__(self):
        parse_binding(self.bind)  # syntax errors surface when the pipeline is parsed

    def run(self, graph, stats: Statistics) -> None:
        bindings = parse_binding(self.bind)
        known = input_symbols(graph)
        unknown = sorted(set(bindings) - known)
        if unknown:
            have = ", ".join(sorted(known)) or "none (every input is static)"
            raise PipelineError(f"infer-shapes: bind={self.bind!r} names {', '.join(map(repr, unknown))}, which "
                                f"{'is' if len(unknown) == 1 else 'are'} not a symbolic dim of the inputs "
                                f"(symbols: {have})")
        stats["symbols bound"] += len(bindings)
        for fn in graph.functions.values():
            if bindings:
                for a in fn.args:
                    if isinstance(a.type, TensorType):
                        self._set_type(a, a.type.with_shape([substitute_dim(d, bindings) for d in a.type.shape]),
                                       stats)
            self._infer_block(fn.body, bindings, stats)

    @staticmethod
    def _set_type(value, t, stats: Statistics) -> None:
        if value.type != t:
            value.type = t
            stats["types changed"] += 1

    def _infer_block(self, block: Block, bindings: dict[str, int], stats: Statistics) -> None:
        for op in block.ops:
            d = op.opdef
            if d is None:  # func.return / sc.yield
                continue
            if bindings:
                for key, kind in d.attrs.items():
                    v = op.attrs.get(key)
                    if isinstance(kind, Dims) and v is not None:
                        new = tuple(substitute_dim(x, bindings) for x in v)
                        if new != tuple(v):
                            op.attrs[key] = new
                            stats["attributes specialized"] += 1
            for region in op.regions:
                for b in region.blocks:
                    if d.region_args == "operands":
                        for a, v in zip(b.args, op.operands):
                            self._set_type(a, v.type, stats)
                    self._infer_block(b, bindings, stats)
            if d.declared_result:
                continue
            try:
                types = infer_result_types(op.name, list(op.operands), op.attrs, op.loc or "", op.regions)
            except VerifyError as e:
                where = f"with bind={self.bind!r}" if bindings else "(no binding)"
                raise PipelineError(f"infer-shapes {where}: {e}") from None
            for r, t in zip(op.results, types):
                self._set_type(r, t, stats)
