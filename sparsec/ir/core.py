"""SSA values with use lists, operations, blocks, regions, functions and the module (Graph)."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import VerifyError
from .opdef import OpDef, get_opdef
from .types import Type


class Value:
    """An SSA value: the result of an op or a block argument. ``uses`` lists (op, operand index)."""

    __slots__ = ("type", "name_hint", "uses")

    def __init__(self, type: Type, name_hint: str | None = None):
        self.type = type
        self.name_hint = name_hint
        self.uses: list[tuple[Operation, int]] = []

    @property
    def users(self) -> list["Operation"]:
        seen, out = set(), []
        for op, _ in self.uses:
            if id(op) not in seen:
                seen.add(id(op))
                out.append(op)
        return out

    def replace_all_uses_with(self, other: "Value") -> None:
        for op, i in list(self.uses):
            op.set_operand(i, other)

    @property
    def owner(self):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name_hint or ''}: {self.type}>"


class OpResult(Value):
    __slots__ = ("op", "index")

    def __init__(self, type: Type, op: "Operation", index: int, name_hint: str | None = None):
        super().__init__(type, name_hint)
        self.op, self.index = op, index

    @property
    def owner(self) -> "Operation":
        return self.op


class BlockArgument(Value):
    __slots__ = ("block", "index")

    def __init__(self, type: Type, block: "Block", index: int, name_hint: str | None = None):
        super().__init__(type, name_hint)
        self.block, self.index = block, index

    @property
    def owner(self) -> "Block":
        return self.block


class Operation:
    """``%r = "sc.name"(%a, %b) ({regions}) {attrs} : (types) -> types``.

    ``loc`` is where the op came from (a user's source line when traced), used in errors.
    """

    def __init__(self, name: str, operands: list[Value], result_types: list[Type], attrs: dict | None = None,
                 regions: list["Region"] | None = None, loc: str | None = None,
                 result_hints: list[str | None] | None = None):
        self.name = name
        self.attrs: dict = dict(attrs or {})
        self.loc = loc
        self.parent: Block | None = None
        self._operands: list[Value] = []
        for v in operands:
            self._add_operand(v)
        hints = result_hints or [None] * len(result_types)
        self.results = [OpResult(t, self, i, h) for i, (t, h) in enumerate(zip(result_types, hints))]
        self.regions: list[Region] = []
        for r in regions or []:
            self.add_region(r)

    # -- operands --------------------------------------------------------------------------
    @property
    def operands(self) -> tuple[Value, ...]:
        return tuple(self._operands)

    def _add_operand(self, v: Value) -> None:
        if not isinstance(v, Value):
            raise VerifyError(f"{self.name}: operand {len(self._operands)} is {type(v).__name__}, not an IR value")
        v.uses.append((self, len(self._operands)))
        self._operands.append(v)

    def set_operand(self, i: int, v: Value) -> None:
        old = self._operands[i]
        old.uses.remove((self, i))
        self._operands[i] = v
        v.uses.append((self, i))

    def set_operands(self, values: list[Value]) -> None:
        self.drop_operands()
        for v in values:
            self._add_operand(v)

    def drop_operands(self) -> None:
        for i, v in enumerate(self._operands):
            v.uses.remove((self, i))
        self._operands = []

    # -- structure -------------------------------------------------------------------------
    def add_region(self, region: "Region") -> None:
        region.parent = self
        self.regions.append(region)

    @property
    def result(self) -> OpResult:
        if len(self.results) != 1:
            raise ValueError(f"{self.name} has {len(self.results)} results, not one")
        return self.results[0]

    @property
    def opdef(self) -> OpDef | None:
        return get_opdef(self.name)

    def walk(self) -> Iterator["Operation"]:
        """This op and every op nested in its regions, in order."""
        yield self
        for r in self.regions:
            for b in r.blocks:
                for op in list(b.ops):
                    yield from op.walk()

    def erase(self) -> None:
        """Remove this op from its block; its results must be unused."""
        for r in self.results:
            if r.uses:
                raise VerifyError(f"cannot erase {self.name}: result {r.index} still has {len(r.uses)} uses")
        for r in self.regions:
            for b in r.blocks:
                for op in reversed(list(b.ops)):
                    op.drop_operands()
        self.drop_operands()
        if self.parent is not None:
            self.parent.remove(self)

    def describe(self) -> str:
        """``sc.add (from model.py:12)`` for error messages."""
        return self.name + (f" (from {self.loc})" if self.loc else "")

    def __repr__(self) -> str:
        return f"<Operation {self.name} {len(self._operands)} operands -> {[str(r.type) for r in self.results]}>"


class Block:
    """A list of operations with typed arguments."""

    def __init__(self, arg_types: list[Type] = (), arg_hints: list[str | None] | None = None):
        hints = arg_hints or [None] * len(arg_types)
        self.args = [BlockArgument(t, self, i, h) for i, (t, h) in enumerate(zip(arg_types, hints))]
        self.ops: list[Operation] = []
        self.parent: Region | None = None

    def add_arg(self, t: Type, hint: str | None = None) -> BlockArgument:
        a = BlockArgument(t, self, len(self.args), hint)
        self.args.append(a)
        return a

    def append(self, op: Operation) -> Operation:
        op.parent = self
        self.ops.append(op)
        return op

    def insert(self, index: int, op: Operation) -> Operation:
        op.parent = self
        self.ops.insert(index, op)
        return op

    def insert_before(self, anchor: Operation, op: Operation) -> Operation:
        return self.insert(self.index_of(anchor), op)

    def index_of(self, op: Operation) -> int:
        for i, o in enumerate(self.ops):
            if o is op:
                return i
        raise ValueError(f"{op.name} is not in this block")

    def remove(self, op: Operation) -> None:
        self.ops.pop(self.index_of(op))
        op.parent = None

    @property
    def terminator(self) -> Operation | None:
        return self.ops[-1] if self.ops else None


class Region:
    def __init__(self, blocks: list[Block] | None = None):
        self.blocks: list[Block] = []
        self.parent: Operation | None = None
        for b in blocks or []:
            self.add_block(b)

    def add_block(self, b: Block) -> Block:
        b.parent = self
        self.blocks.append(b)
        return b

    @property
    def block(self) -> Block:
        return self.blocks[0]


class Function:
    """``func.func``: a name, one body block whose args are the inputs, ``func.return`` last.

    ``arg_names``/``result_names`` are the user-facing names (``input_ids``, ``logits``).
    """

    def __init__(self, name: str, arg_types: list[Type], arg_names: list[str | None] | None = None):
        self.name = name
        self.body = Block(arg_types, arg_hints=arg_names)
        self.arg_names: list[str | None] = list(arg_names or [None] * len(arg_types))
        self.result_names: list[str | None] = []

    @property
    def args(self) -> list[BlockArgument]:
        return self.body.args

    @property
    def ops(self) -> list[Operation]:
        return self.body.ops

    @property
    def return_op(self) -> Operation:
        t = self.body.terminator
        if t is None or t.name != "func.return":
            raise VerifyError(f"function @{self.name} does not end with func.return")
        return t

    @property
    def outputs(self) -> tuple[Value, ...]:
        return self.return_op.operands

    @property
    def input_types(self) -> list[Type]:
        return [a.type for a in self.args]

    @property
    def output_types(self) -> list[Type]:
        return [v.type for v in self.outputs]

    def walk(self) -> Iterator[Operation]:
        for op in list(self.body.ops):
            yield from op.walk()

    def input_names(self) -> list[str]:
        return [n or f"arg{i}" for i, n in enumerate(self.arg_names)]

    def output_names(self) -> list[str]:
        names = self.result_names + [None] * (len(self.outputs) - len(self.result_names))
        return [n or f"out{i}" for i, n in enumerate(names)]


class Graph:
    """A module: functions (``main`` is the entry) plus the weight store for ``sc.param``."""

    def __init__(self, functions: list[Function] | None = None, weights: dict[str, np.ndarray] | None = None):
        self.functions: dict[str, Function] = {}
        for f in functions or []:
            self.add_function(f)
        self.weights: dict[str, np.ndarray] = dict(weights or {})

    def add_function(self, f: Function) -> Function:
        if f.name in self.functions:
            raise VerifyError(f"function @{f.name} defined twice")
        self.functions[f.name] = f
        return f

    @property
    def main(self) -> Function:
        if "main" in self.functions:
            return self.functions["main"]
        if not self.functions:
            raise VerifyError("module has no function")
        return next(iter(self.functions.values()))

    def walk(self) -> Iterator[Operation]:
        for f in self.functions.values():
            yield from f.walk()

    def params(self) -> dict[str, Type]:
        """Every weight the graph refers to: name -> type."""
        return {op.attrs["name"]: op.result.type for op in self.walk() if op.name == "sc.param"}

    def __str__(self) -> str:
        from .printer import print_graph
        return print_graph(self)

    def __repr__(self) -> str:
        n = sum(1 for _ in self.walk())
        return f"<sc.Graph {', '.join('@' + f for f in self.functions)}: {n} ops, {len(self.weights)} weights>"

    def verify(self) -> "Graph":
        from .verifier import verify
        verify(self)
        return self
