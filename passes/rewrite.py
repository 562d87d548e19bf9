"""Pattern rewriting: patterns are data (an op kind to match and a function that inspects the
op and rewrites it), applied by a greedy driver until nothing changes.

    def fold_double_neg(op, rw):
        inner = op.operands[0].owner
        if isinstance(inner, Operation) and inner.name == "sc.neg":
            rw.replace(op, [inner.operands[0]])
            return True
        return False

    PATTERNS = [Pattern("sc.neg", fold_double_neg)]
    apply_patterns(graph, PATTERNS, stats)

A pattern function returns True when it changed the IR (through ``rw`` only, so the driver
knows which ops to revisit). The driver stops at a fixpoint; if it has not converged after
``max_iterations`` sweeps it raises ``RewriteError`` naming the patterns that kept firing.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import SparsecError
from ..ir import Block, Builder, Operation, Value
from ..ir.types import Type


class RewriteError(SparsecError):
    """The greedy driver did not reach a fixpoint."""


@dataclass(frozen=True)
class Pattern:
    """Match ops named ``op`` (a name, a tuple of names, or None for every op) with ``fn``."""
    op: str | tuple[str, ...] | None
    fn: Callable[[Operation, "Rewriter"], bool]
    name: str = ""

    def matches(self, op: Operation) -> bool:
        return self.op is None or op.name == self.op or (isinstance(self.op, tuple) and op.name in self.op)

    @property
    def label(self) -> str:
        return self.name or getattr(self.fn, "__name__", "pattern")


class Rewriter:
    """The only way patterns change the IR: creates ops before the matched op, replaces and erases."""

    def __init__(self):
        self.changed: list[Operation] = []   # ops created or whose operands changed: revisit them
        self.erased: set[int] = set()

    def builder(self, op: Operation) -> Builder:
        return _TrackingBuilder(op.parent, op, self)

    def create(self, before: Operation, name: str, operands=(), attrs: dict | None = None,
               result_types: list[Type] | None = None, regions=None) -> Operation:
        """A new op (through its definition: attributes normalized, types inferred) before ``before``."""
        return self.builder(before).create(name, operands, attrs, result_types=result_types, regions=regions,
                                           loc=before.loc)

    def replace(self, op: Operation, values: Iterable[Value]) -> None:
        """Replace every use of ``op``'s results with ``values`` (same types) and erase ``op``."""
        values = list(values)
        if len(values) != len(op.results):
            raise RewriteError(f"replacing {op.name}: {len(values)} values for {len(op.results)} results")
        for r, v in zip(op.results, values):
            if r.type != v.type:
                raise RewriteError(f"replacing {op.describe()}: result {r.index} has type {r.type}, "
                                   f"the replacement has {v.type}")
            if r is v:
                continue
            for user in r.users:
                self.changed.append(user)
            r.replace_all_uses_with(v)
        self.erase(op)

    def replace_uses(self, old: Value, new: Value) -> None:
        for user in old.users:
            self.changed.append(user)
        old.replace_all_uses_with(new)

    def erase(self, op: Operation) -> None:
        for v in op.operands:
            owner = v.owner
            if isinstance(owner, Operation):
                self.changed.append(owner)  # may have become dead
        for inner in op.walk():
            self.erased.add(id(inner))
        op.erase()


class _TrackingBuilder(Builder):
    def __init__(self, block: Block, before: Operation, rw: Rewriter):
        super().__init__(block, before)
        self.rw = rw

    def insert(self, op: Operation) -> Operation:
        self.rw.changed.append(op)
        return super().insert(op)


def is_trivially_dead(op: Operation) -> bool:
    return (op.opdef is not None and "pure" in op.opdef.traits and op.results
            and all(not r.uses for r in op.results))


def _all_ops(block: Block) -> list[Operation]:
    out = []
    for op in block.ops:
        out.extend(op.walk())
    return out


def apply_patterns(graph, patterns: list[Pattern], stats: Counter | None = None, max_iterations: int = 10,
                   erase_dead: bool = True) -> bool:
    """Apply ``patterns`` to every op of every function until none fires.

    Each sweep visits all ops (nested regions included) in order, plus the ops a rewrite touched.
    Pure ops whose results are unused are erased on the way (``erase_dead``). Returns whether
    anything changed; counts rewrites per pattern in ``stats`` as ``"<pattern> applied"``.
    """
    by_kind: dict[str | None, list[Pattern]] = {}
    for p in patterns:
        for k in (p.op if isinstance(p.op, tuple) else (p.op,)):
            by_kind.setdefault(k, []).append(p)
    generic = by_kind.get(None, [])
    any_change = False
    for fn in graph.functions.values():
        fired: Counter = Counter()
        for _sweep in range(max_iterations):
            rw = Rewriter()
            changed = False
            work = deque(_all_ops(fn.body))
            budget = 50 * len(work) + 1000  # a sweep that keeps rewriting is cycling
            while work:
                op = work.popleft()
                budget -= 1
                if budget < 0:
                    break
                if id(op) in rw.erased or op.parent is None:
                    continue
                if erase_dead and is_trivially_dead(op):
                    rw.erase(op)
                    changed = True
                    fired["dead ops erased"] += 1
                else:
                    for p in by_kind.get(op.name, []) + generic:
                        if p.fn(op, rw):
                            changed = True
                            fired[p.label] += 1
                            break
                if rw.changed:
                    # revisit what the rewrite touched, in block order, after the current op
                    seen = {id(o) for o in work}
                    for o in rw.changed:
                        if id(o) not in rw.erased and o.parent is not None and id(o) not in seen:
                            work.append(o)
                            seen.add(id(o))
                    rw.changed = []
            if not changed:
                break
            any_change = True
        else:
            top = ", ".join(f"{k} ({n}x)" for k, n in fired.most_common(5))
            raise RewriteError(f"@{fn.name}: pattern rewriting did not converge after {max_iterations} sweeps; "
                               f"patterns that kept firing: {top}")
        if stats is not None:
            for k, n in fired.items():
                stats[k if k == "dead ops erased" else f"rewrites by {k}"] += n
    return any_change
