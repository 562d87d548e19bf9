"""The dataflow of a function as a networkx DiGraph (topological order, liveness, dot export)."""
from __future__ import annotations

import networkx as nx

from .core import Function, Operation


def to_networkx(fn: Function) -> nx.DiGraph:
    """Nodes are top-level ops (keyed by ``id(op)``, attribute ``op``) plus one node per input
    (``("arg", i)``); an edge ``u -> v`` carries the operand indices of ``v`` fed by ``u``."""
    g = nx.DiGraph()
    for i, a in enumerate(fn.args):
        g.add_node(("arg", i), op=None, label=fn.input_names()[i])
    producer = {id(a): ("arg", i) for i, a in enumerate(fn.args)}
    for op in fn.ops:
        g.add_node(id(op), op=op, label=op.name)
        for k, v in enumerate(_operands_with_nested(op)):
            src = producer.get(id(v))
            if src is not None:
                if g.has_edge(src, id(op)):
                    g.edges[src, id(op)]["operands"].append(k)
                else:
                    g.add_edge(src, id(op), operands=[k])
        for r in op.results:
            producer[id(r)] = id(op)
    return g


def _operands_with_nested(op: Operation):
    """Operands of ``op`` and values its regions capture from outside."""
    yield from op.operands
    inner = set()
    for nested in op.walk():
        if nested is op:
            continue
        for r in nested.regions:
            for b in r.blocks:
                inner.update(id(a) for a in b.args)
        inner.update(id(r) for r in nested.results)
    for r in op.regions:
        for b in r.blocks:
            inner.update(id(a) for a in b.args)
    for nested in op.walk():
        if nested is op:
            continue
        for v in nested.operands:
            if id(v) not in inner:
                yield v


def topological_ops(fn: Function) -> list[Operation]:
    """Top-level ops in a topological order of the dataflow (stable: ties keep block order)."""
    g = to_networkx(fn)
    order = {n: i for i, n in enumerate(g.nodes)}
    return [g.nodes[n]["op"] for n in nx.lexicographical_topological_sort(g, key=order.__getitem__)
            if g.nodes[n]["op"] is not None]


def to_dot(fn: Function) -> str:
    """Graphviz text of the dataflow, op names as labels, tensor types on the edges."""
    g = to_networkx(fn)
    d = nx.DiGraph()
    for n, data in g.nodes(data=True):
        op = data["op"]
        label = data["label"]
        if op is not None and op.name == "sc.param":
            label = f"param {op.attrs['name']}"
        d.add_node(_key(n), label=label, shape="box" if op is not None else "ellipse")
    for u, v, data in g.edges(data=True):
        op = g.nodes[v]["op"]
        t = op.operands[data["operands"][0]].type if data["operands"][0] < len(op.operands) else ""
        d.add_edge(_key(u), _key(v), label=str(t))
    for i, v in enumerate(fn.outputs):
        out = f"out{i}"
        d.add_node(out, label=fn.output_names()[i], shape="ellipse")
        src = _key(("arg", v.index)) if v.owner is fn.body else _key(id(v.owner))
        d.add_edge(src, out, label=str(v.type))
    return nx.nx_pydot.to_pydot(d).to_string()


def _key(n) -> str:
    return f"arg{n[1]}" if isinstance(n, tuple) else f"op{n}"
