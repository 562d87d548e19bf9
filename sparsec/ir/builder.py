"""Builder: creates ops through their definitions (attributes normalized, result types inferred)."""
from __future__ import annotations

from ..errors import VerifyError
from .core import Block, Operation, Region, Value
from .opdef import get_opdef
from .types import Type


def infer_result_types(name: str, operands: list[Value], attrs: dict, where: str = "",
                       regions: list | None = None) -> tuple[Type, ...]:
    """Apply the op's shape rule; errors name the op, its operand types and attributes."""
    opdef = get_opdef(name)
    try:
        return opdef.infer_types([v.type for v in operands], attrs, regions)
    except (ValueError, TypeError, IndexError, KeyError) as e:
        types = ", ".join(getattr(v.type, "pretty", lambda: str(v.type))() for v in operands)
        loc = f" ({where})" if where else ""
        raise VerifyError(f"{name}{loc}: {e} [operand types: ({types})]") from None


class Builder:
    """Inserts new ops into a block, at the end or before a given op."""

    def __init__(self, block: Block, before: Operation | None = None):
        self.block = block
        self.before = before

    @classmethod
    def before_op(cls, op: Operation) -> "Builder":
        return cls(op.parent, before=op)

    def insert(self, op: Operation) -> Operation:
        if self.before is None:
            return self.block.append(op)
        return self.block.insert_before(self.before, op)

    def create(self, name: str, operands=(), attrs: dict | None = None, result_types: list[Type] | None = None,
               regions: list[Region] | None = None, loc: str | None = None,
               result_hints: list[str | None] | None = None) -> Operation:
        opdef = get_opdef(name)
        operands = list(operands)
        where = loc or ""
        if opdef is None:
            if name in ("func.return", "sc.yield"):
                return self.insert(Operation(name, operands, [], attrs, regions, loc))
            raise VerifyError(f"unknown op {name!r}")
        if not opdef.operand_count_ok(len(operands)):
            raise VerifyError(f"{name}: got {len(operands)} operands, expected {opdef.expected_operands()}")
        attrs = opdef.normalize_attrs(attrs, where)
        if opdef.declared_result:
            if result_types is None:
                raise VerifyError(f"{name}: result types must be given")
            types = tuple(result_types)
        else:
            types = infer_result_types(name, operands, attrs, where, regions)
            if result_types is not None and tuple(result_types) != types:
                raise VerifyError(f"{name}: declared result types {[str(t) for t in result_types]} "
                                  f"differ from inferred {[str(t) for t in types]}")
        op = Operation(name, operands, list(types), attrs, regions, loc, result_hints)
        return self.insert(op)

    def emit(self, name: str, *operands: Value, loc: str | None = None, **attrs):
        """``create`` returning the result value (or tuple of values)."""
        op = self.create(name, operands, attrs, loc=loc)
        return op.results[0] if len(op.results) == 1 else tuple(op.results)
