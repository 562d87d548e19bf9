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
knows which ops to revisit). The driver stops at a fixpoint (a sweep in which nothing fires);
if it has not reached one after ``max_iterations`` sweeps it raises ``RewriteError`` naming the
patterns that kept firing.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import SparsecError
from ..ir import Block, Builder, Operation, OpResult, Value
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
        # id -> erased op; holding the op keeps its id from being reused by a new op in this sweep
        self.erased: dict[int, Operation] = {}

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
            raise RewriteError(f"replacing {op.describe()}: {len(values)} values for {len(op.results)} results")
        for r, v in zip(op.results, values):
            if r.type != v.type:
                raise RewriteError(f"replacing {op.describe()}: result {r.index} has type {_pretty(r.type)}, "
                                   f"the replacement has {_pretty(v.type)}")
            if isinstance(v, OpResult) and v.op is op:
                raise RewriteError(f"replacing {op.describe()} by its own result {v.index}: the op would be "
                                   f"erased while still in use")
        for r, v in zip(op.results, values):
            self.replace_uses(r, v)
        self.erase(op)

    def replace_uses(self, old: Value, new: Value) -> None:
        """Make every user of ``old`` use ``new`` instead (same type); the users are revisited."""
        if old.type != new.type:
            raise RewriteError(f"replacing the uses of a {_pretty(old.type)} value by a {_pretty(new.type)} value")
        for user in old.users:
            self.changed.append(user)
        old.replace_all_uses_with(new)

    def erase(self, op: Operation) -> None:
        """Erase ``op`` (its results must be unused) with the ops nested in its regions; the
        producers of their operands are revisited, as they may have become dead."""
        ops = list(op.walk())
        for inner in ops:
            for v in inner.operands:
                if isinstance(v.owner, Operation):
                    self.changed.append(v.owner)
        for inner in ops:
            self.erased[id(inner)] = inner
        op.erase()


class _TrackingBuilder(Builder):
    def __init__(self, block: Block, before: Operation, rw: Rewriter):
        super().__init__(block, before)
        self.rw = rw

    def insert(self, op: Operation) -> Operation:
        self.rw.changed.append(op)
        return super().insert(op)


def _pretty(t: Type) -> str:
    return t.pretty() if hasattr(t, "pretty") else str(t)


def producer(v: Value, *names: str) -> Operation | None:
    """The op defining ``v`` when it is one of ``names`` (any op when none are given); None for
    a block argument."""
    if isinstance(v, OpResult) and (not names or v.op.name in names):
        return v.op
    return None


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

    Each sweep visits all ops (nested regions included) in order, then the ops a rewrite
    touched (created ops, users of replaced values, producers of erased ops' operands). Pure
    ops whose results are unused are erased on the way (``erase_dead``). Per op, the patterns
    registered for its name are tried before the generic ones (``op=None``), in list order;
    the first that fires wins. A sweep in which nothing fires ends the rewriting; a sweep that
    keeps rewriting (more than 50 rewrites per op it started with) is cut short, so cycling
    patterns end in ``RewriteError`` after ``max_iterations`` sweeps.

    Returns whether anything changed; counts in ``stats`` ``"rewrites by <pattern label>"``
    per pattern and ``"dead ops erased"``.
    """
    if max_iterations < 1:
        raise ValueError(f"apply_patterns: max_iterations must be >= 1, got {max_iterations}")
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
            queued = {id(o) for o in work}
            budget = 50 * len(work) + 1000  # a sweep that keeps rewriting is cycling
            while work:
                op = work.popleft()
                queued.discard(id(op))
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
                    # revisit what the rewrite touched (once each), after the ops already queued
                    for o in rw.changed:
                        if id(o) not in rw.erased and o.parent is not None and id(o) not in queued:
                            work.append(o)
                            queued.add(id(o))
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
