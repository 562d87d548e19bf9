"""``fold-constants``: evaluate at compile time what depends only on constants (and, with
``fold-params=true``, on weights), replacing it with its value.

A top-level op is *foldable* when it is pure, has no regions, every operand is known at compile
time, and every result is a tensor of static shape. Known values are ``sc.constant`` results,
``sc.param`` results when ``fold-params`` is on (their arrays come from ``graph.weights``), and
the results of foldable ops, computed with the ops' NumPy references
(``sparsec.interpreter.run_op``; floating-point warnings silenced). Whole subgraphs fold at
once: only values still needed by an op that is not folded (or by ``func.return``) are
materialized, as

- ``sc.constant`` when they have at most ``max-constant-elements`` elements;
- otherwise a new weight: an entry in ``graph.weights`` under the value's name when a pass named
  it (the sparse-activation stacks are ``experts.gate_proj.weight``...), else a name derived from the weight it
  was computed from and the ops applied (``lm_head.weight.T`` for a transpose, ``w.f16`` for a
  cast, ``w.T.f16`` for both, ``<name>.folded`` beyond three ops; constants give
  ``constant...``), made unique with ``.1``, ``.2``..., read by a new ``sc.param {name = ...}``.

So ``transpose(param)`` and ``cast(param)`` become pre-transposed / pre-cast weights. A value
larger than ``max-constant-elements`` is folded only if it is no bigger than the constants and
weights it is computed from together (a stack or concat of weights folds): folding never expands
a broadcast into a large new weight. An op
whose reference fails (an integer division by zero, an index out of range) is left in place, so
the error still happens at run time. Ops inside regions are not folded.

Folded ops are erased, and so are the ``sc.constant``/``sc.param`` ops that only they used; a
weight is dropped from ``graph.weights`` only when no ``sc.param`` of the graph refers to it any
longer. Statistics: ``ops folded``, ``constants created``, ``weights created``,
``weights replaced`` (weights dropped from the store because folded versions replaced them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InterpretError
from ..interpreter import run_op
from ..ir import Builder, Operation, TensorType
from .registry import Pass, Statistics, option, register_pass

#: how many op suffixes a derived weight name spells out before it says ``folded``
_MAX_NAME_SUFFIXES = 3


@dataclass
class _Known:
    """A value known at compile time and where it came from (for naming and size limits)."""
    array: np.ndarray
    source: str | None      # the weight it derives from (None: only constants)
    suffixes: tuple         # ops applied since that weight, for the derived name
    source_size: int        # elements of the constants/weights it is computed from, together


def _static_tensor(t) -> bool:
    return isinstance(t, TensorType) and t.is_static


def _suffix(op: Operation) -> str:
    if op.name == "sc.transpose":
        return "T"
    if op.name == "sc.cast":
        return op.attrs["dtype"].name
    return op.name.removeprefix("sc.")


@register_pass
@dataclass(frozen=True)
class FoldConstants(Pass):
    """evaluate subgraphs over constants (and weights with fold-params) at compile time"""
    name = "fold-constants"
    fold_params: bool = option(False, doc="also fold subgraphs over sc.param weights (into new weights)")
    max_constant_elements: int = option(64, doc="results up to this size become sc.constant, bigger ones weights")

    def __post_init__(self):
        if self.max_constant_elements < 0:
            raise ValueError(f"max-constant-elements must be >= 0, got {self.max_constant_elements}")

    def run(self, graph, stats: Statistics) -> None:
        erased: set[str] = set()
        for fn in graph.functions.values():
            with np.errstate(all="ignore"):
                erased |= self._fold_function(graph, fn, stats)
        still_read = graph.params()
        for name in sorted(erased):
            if name not in still_read and name in graph.weights:
                del graph.weights[name]  # a folded version replaced it
                stats["weights replaced"] += 1

    # -- evaluation ------------------------------------------------------------------------
    def _leaf(self, graph, op: Operation) -> _Known | None:
        if op.name == "sc.constant" and _static_tensor(op.result.type):
            v = op.attrs["value"]
            return _Known(v, None, (), v.size)
        if op.name == "sc.param" and self.fold_params and _static_tensor(op.result.type):
            w = graph.weights.get(op.attrs["name"])
            t = op.result.type
            if w is not None and tuple(w.shape) == t.shape and w.dtype == t.dtype.np:
                return _Known(np.asarray(w), op.attrs["name"], (), w.size)
        return None

    def _evaluate(self, op: Operation, known: dict[int, _Known], weights) -> list[_Known] | None:
        """The op's results when it folds, else None."""
        d = op.opdef
        if (d is None or "pure" not in d.traits or op.regions or not op.operands or d.declared_result
                or not all(id(v) in known for v in op.operands)
                or not all(_static_tensor(r.type) for r in op.results)):
            return None
        ins = [known[id(v)] for v in op.operands]
        # a stack/concat of weights is as big as its inputs together; a broadcast is bigger
        source_size = sum(k.source_size for k in ins)
        if any(math.prod(r.type.shape) > max(self.max_constant_elements, source_size) for r in op.results):
            return None  # would expand into a weight bigger than everything it came from
        env = {id(v): k.array for v, k in zip(op.operands, ins)}
        try:
            outs = run_op(op, env, weights)
        except InterpretError:
            return None  # leave it to fail at run time, where the user sees the error
        # named after the biggest weight it reads (after constants only if it reads no weight)
        main = max(ins, key=lambda k: (k.source is not None, k.source_size))
        return [_Known(o, main.source, main.suffixes + (_suffix(op),), source_size) for o in outs]

    def _fold_function(self, graph, fn, stats: Statistics) -> set[str]:
        """Fold the top level of ``fn``; returns the names of the sc.param ops it erased."""
        known: dict[int, _Known] = {}
        leaves: list[Operation] = []
        folded: list[Operation] = []
        for op in fn.ops:
            leaf = self._leaf(graph, op)
            if leaf is not None:
                known[id(op.result)] = leaf
                leaves.append(op)
                continue
            outs = self._evaluate(op, known, graph.weights)
            if outs is not None:
                folded.append(op)
                for r, k in zip(op.results, outs):
                    known[id(r)] = k
        if not folded:
            return set()
        folded_ids = {id(op) for op in folded}
        read_by_folded = {id(v.owner) for op in folded for v in op.operands}
        for op in folded:
            for r in op.results:
                if any(id(u) not in folded_ids for u in r.users):
                    self._materialize(graph, op, r, known[id(r)], stats)
        for op in reversed(folded):
            if all(not r.uses for r in op.results):
                op.erase()
                stats["ops folded"] += 1
        erased_params = set()
        for op in reversed(leaves):  # constants and weights that only folded ops read are dead now
            if id(op) in read_by_folded and not op.result.uses:
                if op.name == "sc.param":
                    erased_params.add(op.attrs["name"])
                op.erase()
        return erased_params

    def _materialize(self, graph, op: Operation, value, k: _Known, stats: Statistics) -> None:
        b = Builder.before_op(op)
        array = np.array(k.array, copy=True)  # own the data (a reference may return a view of a weight)
        if array.size <= self.max_constant_elements:
            new = b.create("sc.constant", [], {"value": array}, loc=op.loc, result_hints=[value.name_hint])
            stats["constants created"] += 1
        else:
            name = self._same_weight(graph, k, value.name_hint, array)
            if name is None:
                name = self._weight_name(graph, k, value.name_hint)
                graph.weights[name] = array
            else:
                stats["weights shared"] += 1
            new = b.create("sc.param", [], {"name": name}, result_types=[value.type], loc=op.loc,
                           result_hints=[name])
            stats["weights created"] += 1
        value.replace_all_uses_with(new.result)

    @staticmethod
    def _same_weight(graph, k: _Known, hint: str | None, array: np.ndarray) -> str | None:
        """The name of an existing weight equal to ``array`` under the name this value would get
        (another function of the graph folded the same stack: ``main`` and ``decode`` of a causal
        LM), so the weight is stored once."""
        for name in (hint, _derived_name(k)):
            w = graph.weights.get(name) if name else None
            if (isinstance(w, np.ndarray) and w.shape == array.shape and w.dtype == array.dtype
                    and np.array_equal(w, array)):
                return name
        return None

    @staticmethod
    def _weight_name(graph, k: _Known, hint: str | None = None) -> str:
        taken = set(graph.weights) | set(graph.params())
        if hint and not hint[0].isdigit() and hint not in taken:
            return hint  # a name a pass gave the value (e.g. experts.gate_proj.weight for a stack)
        name = _derived_name(k)
        if name not in taken:
            return name
        n = 1
        while f"{name}.{n}" in taken:
            n += 1
        return f"{name}.{n}"


def _derived_name(k: _Known) -> str:
    """``lm_head.weight.T``: the weight it came from and the ops applied (``folded`` past a few)."""
    suffixes = k.suffixes if len(k.suffixes) <= _MAX_NAME_SUFFIXES else ("folded",)
    return ".".join((k.source or "constant", *suffixes))
