"""Printer: MLIR generic operation syntax, deterministic, so ``parse(print(g))`` prints the same."""
from __future__ import annotations

import re

from .attributes import format_attr, format_key, format_string
from .core import Block, Function, Graph, Operation, Value
from .types import TensorType

_VALID = re.compile(r"[A-Za-z_$.\-][A-Za-z0-9_$.\-]*$")


def sanitize_hint(hint: str | None) -> str | None:
    """A name hint made into a valid MLIR suffix-id; pure digits are not hints (numbers are ours)."""
    if not hint:
        return None
    h = re.sub(r"[^A-Za-z0-9_$.\-]", "_", hint)
    if h.isdigit():
        return None
    if h[0].isdigit():
        h = "v" + h
    return h


class _Namer:
    def __init__(self):
        self.names: dict[int, str] = {}
        self.used: set[str] = set()
        self.counter = 0

    def _fresh_number(self) -> str:
        while str(self.counter) in self.used:
            self.counter += 1
        s = str(self.counter)
        self.counter += 1
        return s

    def define(self, v: Value, default: str | None = None) -> str:
        hint = sanitize_hint(v.name_hint) or default
        if hint is None:
            name = self._fresh_number()
        elif hint not in self.used:
            name = hint
        else:
            k = 1
            while f"{hint}_{k}" in self.used:
                k += 1
            name = f"{hint}_{k}"
        self.used.add(name)
        self.names[id(v)] = name
        return name

    def define_results(self, op: Operation) -> str:
        if len(op.results) == 1:
            return "%" + self.define(op.results[0])
        base = self.define(op.results[0])
        for i, r in enumerate(op.results):
            self.names[id(r)] = f"{base}#{i}"
        return f"%{base}:{len(op.results)}"

    def use(self, v: Value) -> str:
        try:
            return "%" + self.names[id(v)]
        except KeyError:
            owner = v.owner
            what = owner.name if isinstance(owner, Operation) else "a block argument"
            raise ValueError(f"value {v!r} (from {what}) is used before it is defined or outside its scope") from None


def _types(ts) -> str:
    return ", ".join(str(t) for t in ts)


def _result_types(ts) -> str:
    ts = list(ts)
    return str(ts[0]) if len(ts) == 1 else f"({_types(ts)})"


def _format_attrs(op: Operation) -> str:
    opdef = op.opdef
    items = []
    for key in sorted(op.attrs):
        v = op.attrs[key]
        if v is None:
            continue
        kind = opdef.attrs.get(key) if opdef is not None else None
        items.append(f"{format_key(key)} = {kind.format(v) if kind is not None else format_attr(v)}")
    return " {" + ", ".join(items) + "}" if items else ""


class Printer:
    def __init__(self, locations: bool = False):
        self.locations = locations
        self.lines: list[str] = []

    def print_block(self, block: Block, namer: _Namer, indent: int, label: bool = True) -> None:
        pad = "  " * indent
        if label:
            args = ", ".join(f"%{namer.define(a, f'arg{a.index}')}: {a.type}" for a in block.args)
            self.lines.append(f"{pad[:-2] if len(pad) >= 2 else pad}^bb0({args}):")
        for op in block.ops:
            self.print_op(op, namer, indent)

    def print_op(self, op: Operation, namer: _Namer, indent: int) -> None:
        pad = "  " * indent
        operands = ", ".join(namer.use(v) for v in op.operands)
        lhs = (namer.define_results(op) + " = ") if op.results else ""
        head = f'{pad}{lhs}"{op.name}"({operands})'
        sig = f" : ({_types(v.type for v in op.operands)}) -> {_result_types(r.type for r in op.results)}"
        loc = f" loc({format_string(op.loc)})" if self.locations and op.loc else ""
        if not op.regions:
            self.lines.append(f"{head}{_format_attrs(op)}{sig}{loc}")
            return
        self.lines.append(f"{head} ({{")
        for i, r in enumerate(op.regions):
            if i:
                self.lines.append(f"{pad}}}, {{")
            for b in r.blocks:
                self.print_block(b, namer, indent + 1)
        self.lines.append(f"{pad}}}){_format_attrs(op)}{sig}{loc}")

    def print_function(self, f: Function, indent: int) -> None:
        pad = "  " * indent
        namer = _Namer()
        props = []
        arg_attrs = []
        for a, n in zip(f.args, f.arg_names):
            entry = {}
            if isinstance(a.type, TensorType) and not a.type.is_static:
                entry["sc.dims"] = "[" + ", ".join(f"{d} : i64" if isinstance(d, int) else format_string(d)
                                                   for d in a.type.shape) + "]"
            if n:
                entry["sc.name"] = format_string(n)
            arg_attrs.append(entry)
        if any(arg_attrs):
            props.append("arg_attrs = [" + ", ".join(
                "{" + ", ".join(f"{k} = {v}" for k, v in e.items()) + "}" for e in arg_attrs) + "]")
        ftype = f"({_types(f.input_types)}) -> {_fn_results(f.output_types)}"
        props.append(f"function_type = {ftype}")
        if any(f.result_names):
            props.append("res_attrs = [" + ", ".join(
                ("{sc.name = " + format_string(n) + "}") if n else "{}" for n in f.result_names) + "]")
        props.append(f"sym_name = {format_string(f.name)}")
        self.lines.append(f'{pad}"func.func"() <{{{", ".join(props)}}}> ({{')
        self.print_block(f.body, namer, indent + 1)
        self.lines.append(f"{pad}}}) : () -> ()")


def _fn_results(ts) -> str:
    ts = list(ts)
    if len(ts) == 1 and not str(ts[0]).startswith("("):
        return str(ts[0])
    return f"({_types(ts)})"


def print_graph(g: Graph, locations: bool = False) -> str:
    p = Printer(locations)
    p.lines.append('"builtin.module"() ({')
    for f in g.functions.values():
        p.print_function(f, 1)
    p.lines.append("}) : () -> ()")
    return "\n".join(p.lines) + "\n"
