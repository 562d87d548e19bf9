"""``fuse-elementwise``: group chains of elementwise ops into ``sc.fused {kind = "elementwise"}``.

Each group becomes one ``sc.fused`` op whose region holds the grouped ops: the region's block
arguments are the group's external inputs (in first-use order) and its ``sc.yield`` gives the
values used outside the group. The CPU backend turns each such op into ONE generated kernel that
loops over the group's *iteration space* and evaluates the region per element.

Contract (what the kernel generator may rely on):

- The region holds only ops with the ``"elementwise"`` trait (``sparsec.ir.opdef.REGISTRY``; includes
  ``sc.cast`` and ``sc.where``), ``sc.broadcast_to``, and small ``sc.constant`` ops (at most
  ``MAX_INLINED_CONSTANT_ELEMENTS`` elements; their shape broadcasts to the iteration space).
  Every region operand is a block argument or a value defined in the region (no captures).
- Every yielded value has the same shape, the group's iteration space ``S`` (dtypes may
  differ). Every value in the region, and every external input, broadcasts to ``S`` by NumPy
  rules; a value smaller than ``S`` that is needed outside the group is never yielded (the op
  computing it stays outside the group). At least one region op is elementwise.
- An op belongs to at most one group. Small constants are duplicated into every group that
  uses them (the original is erased once nothing else uses it). A group needs ``min-ops`` ops
  (constants not counted; default 2, so a single op is never wrapped) and at most ``max-ops``.
- Fusion creates no cycle: two groups merge only if no dataflow path between them leaves the
  merged group (checked on the networkx graph of groups, see ``_GroupGraph``), and every
  value of the group used outside it (or returned) is yielded. The block is re-sorted
  topologically afterwards, so users of a yielded value come after its ``sc.fused``.

Groups form greedily in block order: each fusible op tries to join the groups of the fusible
ops that produce its operands. Only top-level ops of each function are grouped (existing
``sc.fused`` bodies are left alone). Statistics: ``groups formed``, ``ops fused`` (ops moved
into groups, constants not counted), ``constants inlined`` (constant copies put in regions).
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from ..ir import Block, Builder, Operation, Region, TensorType
from ..ir.nxgraph import to_networkx
from ..ir.types import broadcast_shapes
from .registry import Pass, Statistics, option, register_pass

#: constants up to this many elements are copied into the regions that use them
MAX_INLINED_CONSTANT_ELEMENTS = 64


def _is_tensor_op(op: Operation) -> bool:
    return (bool(op.results) and not op.regions
            and all(isinstance(v.type, TensorType) for v in (*op.operands, *op.results)))


def is_fusible(op: Operation) -> bool:
    """An op that may be a member of an elementwise group (an elementwise op or a broadcast)."""
    d = op.opdef
    if d is None or not _is_tensor_op(op):
        return False
    return "elementwise" in d.traits or op.name == "sc.broadcast_to"


def is_inlinable_constant(op: Operation) -> bool:
    """A constant small enough to be copied into a fused region."""
    if op.name != "sc.constant" or not _is_tensor_op(op):
        return False
    return op.attrs["value"].size <= MAX_INLINED_CONSTANT_ELEMENTS


class _GroupGraph:
    """The dataflow between groups: a networkx DiGraph whose nodes are group ids (one per
    top-level op at first; a group's id is the ``id`` of one of its ops). Merging two groups
    contracts their nodes; a merge is refused when a path between them goes through another
    node, since the merged node would then lie on a cycle.

    Groups form while ops are visited in block order, and an op only joins the groups of its
    operands' producers, so when the op at position ``p`` is visited every group has all its
    members at positions <= ``p``, and every op after ``p`` is still alone. A path that reaches
    an op after ``p`` only continues to later ops, so it never comes back to a group: cycle
    checks search only the nodes whose ops all lie at or before ``p``.
    """

    def __init__(self, fn):
        g = to_networkx(fn)
        g.remove_nodes_from([n for n, d in g.nodes(data=True) if d["op"] is None])  # inputs start no paths
        self.graph = nx.DiGraph(g.edges())
        self.graph.add_nodes_from(g.nodes())
        pos = {id(op): i for i, op in enumerate(fn.ops)}
        self.last = {n: pos[n] for n in self.graph.nodes}   # group id -> block position of its last op
        self.group = {n: n for n in self.graph.nodes}       # op id -> group id
        self.members: dict[int, list[Operation]] = {}

    def _path_through_others(self, u, v) -> bool:
        """Is there a path u -> w -> ... -> v with w not in {u, v}?"""
        limit = max(self.last[u], self.last[v])
        view = nx.subgraph_view(self.graph, filter_node=lambda n: self.last[n] <= limit,
                                filter_edge=lambda a, b: not (a == u and b == v))
        return nx.has_path(view, u, v)

    def creates_cycle(self, a, b) -> bool:
        return self._path_through_others(a, b) or self._path_through_others(b, a)

    def merge(self, a, b) -> None:
        """Put group ``b`` into group ``a``."""
        nx.contracted_nodes(self.graph, a, b, self_loops=False, copy=False)
        self.last[a] = max(self.last[a], self.last[b])
        del self.last[b]
        moved = self.members.pop(b)
        for op in moved:
            self.group[id(op)] = a
        self.members[a].extend(moved)


def iteration_space(members: list[Operation]):
    """The broadcast of the members' result shapes, or None when they do not broadcast together."""
    try:
        return broadcast_shapes(*(r.type.shape for op in members for r in op.results))
    except ValueError:
        return None


def outside_values(members: list[Operation]) -> list:
    """Results of ``members`` used by an op outside them (or by func.return), in order."""
    ids = {id(op) for op in members}
    return [r for op in members for r in op.results if any(id(u) not in ids for u in r.users)]


def group_is_valid(members: list[Operation]) -> bool:
    """Every value leaving the group has exactly the group's iteration space as its shape."""
    space = iteration_space(members)
    if space is None:
        return False
    return all(v.type.shape == space for v in outside_values(members))


@register_pass
@dataclass(frozen=True)
class FuseElementwise(Pass):
    """group chains of elementwise ops (with their broadcasts and small constants) into sc.fused ops"""
    name = "fuse-elementwise"
    min_ops: int = option(2, doc="smallest group formed (ops in the region, constants not counted)")
    max_ops: int = option(64, doc="largest group formed")

    def __post_init__(self):
        if self.min_ops < 1:
            raise ValueError(f"min-ops must be at least 1, got {self.min_ops}")
        if self.max_ops < self.min_ops:
            raise ValueError(f"max-ops ({self.max_ops}) must be at least min-ops ({self.min_ops})")

    def run(self, graph, stats: Statistics) -> None:
        for fn in graph.functions.values():
            groups = self.form_groups(fn)
            if not groups:
                continue
            # the block is rebuilt once at the end (erasing ops one by one costs a scan each)
            placed: dict[int, Operation] = {}
            removed: set[int] = set()
            constants: dict[int, Operation] = {}
            for members in groups:
                fused, inlined = outline_group(members, stats)
                placed[id(members[-1])] = fused
                removed.update(id(op) for op in members)
                constants.update((id(c), c) for c in inlined)
            for c in constants.values():
                if not c.result.uses:  # every user was fused: the copies in the regions replace it
                    _detach(c)
                    removed.add(id(c))
            ops = []
            for op in fn.ops:
                if id(op) in placed:
                    ops.append(placed[id(op)])
                if id(op) not in removed:
                    ops.append(op)
            fn.body.ops[:] = ops
            for op in ops:
                op.parent = fn.body
            sort_block(fn)

    def form_groups(self, fn) -> list[list[Operation]]:
        """Greedy grouping in block order; returns each group's ops in block order."""
        gg = _GroupGraph(fn)
        for op in fn.ops:
            if is_fusible(op):
                gg.members[id(op)] = [op]
        for op in fn.ops:
            if id(op) not in gg.group or not is_fusible(op):
                continue
            for v in dict.fromkeys(op.operands):
                p = v.owner
                if not isinstance(p, Operation) or p.parent is not fn.body or not is_fusible(p):
                    continue
                mine, theirs = gg.group[id(op)], gg.group[id(p)]
                if mine == theirs:
                    continue
                merged = gg.members[theirs] + gg.members[mine]
                if len(merged) > self.max_ops or not group_is_valid(merged) or gg.creates_cycle(theirs, mine):
                    continue
                gg.merge(theirs, mine)
        pos = {id(op): i for i, op in enumerate(fn.ops)}
        out = []
        for members in gg.members.values():
            if (len(members) >= self.min_ops and any("elementwise" in m.opdef.traits for m in members)
                    and outside_values(members)):  # a group nothing uses is dead code: left to dce
                out.append(sorted(members, key=lambda m: pos[id(m)]))
        return sorted(out, key=lambda ms: pos[id(ms[0])])


def outline_group(members: list[Operation], stats: Statistics) -> tuple[Operation, list[Operation]]:
    """Build the ``sc.fused`` op for ``members`` (a valid group, in block order), send every
    outside use of the members to its results and detach the members. Returns the new op (not
    yet in a block; it goes where the last member was) and the constants copied into it."""
    ids = {id(op) for op in members}
    inputs: list = []
    seen: set[int] = set()
    consts: dict[int, Operation] = {}
    for op in members:
        for v in op.operands:
            p = v.owner
            if isinstance(p, Operation) and id(p) in ids:
                continue
            if isinstance(p, Operation) and is_inlinable_constant(p):
                consts.setdefault(id(p), p)
            elif id(v) not in seen:
                seen.add(id(v))
                inputs.append(v)
    body = Block([v.type for v in inputs])
    b = Builder(body)
    mapped = {id(v): a for v, a in zip(inputs, body.args)}
    for c in consts.values():
        mapped[id(c.result)] = b.create("sc.constant", [], {"value": c.attrs["value"]}, loc=c.loc).result
    for op in members:
        new = b.create(op.name, [mapped[id(v)] for v in op.operands], dict(op.attrs), loc=op.loc)
        if [r.type for r in new.results] != [r.type for r in op.results]:  # pragma: no cover - a shape rule bug
            raise RuntimeError(f"fuse-elementwise: re-creating {op.describe()} changed its result types")
        for r, nr in zip(op.results, new.results):
            mapped[id(r)] = nr
    yields = outside_values(members)
    b.create("sc.yield", [mapped[id(v)] for v in yields])
    scratch = Block()  # built through the op's definition like any op, then taken out to be placed
    fused = Builder(scratch).create("sc.fused", inputs, {"kind": "elementwise"}, regions=[Region([body])],
                                    loc=members[-1].loc, result_hints=[v.name_hint for v in yields])
    scratch.ops.clear()
    for v, r in zip(yields, fused.results):
        v.replace_all_uses_with(r)
    for op in reversed(members):
        _detach(op)
    stats["groups formed"] += 1
    stats["ops fused"] += len(members)
    if consts:
        stats["constants inlined"] += len(consts)
    return fused, list(consts.values())


def _detach(op: Operation) -> None:
    """``op.erase()`` without taking it out of its block's list (the caller rebuilds the list)."""
    if any(r.uses for r in op.results):  # pragma: no cover - outline_group moved every use
        raise RuntimeError(f"fuse-elementwise: {op.describe()} is still used")
    op.drop_operands()
    op.parent = None


def sort_block(fn) -> None:
    """Re-order the function body topologically, keeping block order where the dataflow allows,
    so that every user of a new ``sc.fused`` result comes after it. (``nxgraph.to_networkx``
    needs the block in dominance order already, so the graph is built here from all producers.)"""
    ops = list(fn.ops)
    producer = {id(r): i for i, op in enumerate(ops) for r in op.results}
    g = nx.DiGraph()
    g.add_nodes_from(range(len(ops)))
    for i, op in enumerate(ops):
        for nested in op.walk():  # values captured by regions count as operands
            for v in nested.operands:
                j = producer.get(id(v))
                if j is not None and j != i:
                    g.add_edge(j, i)
    order = list(nx.lexicographical_topological_sort(g))
    if order[-1] != len(ops) - 1 or ops[-1] is not fn.return_op:  # pragma: no cover - cannot happen on a DAG
        raise RuntimeError("fuse-elementwise: the fused dataflow does not end in func.return")
    fn.body.ops[:] = [ops[i] for i in order]
