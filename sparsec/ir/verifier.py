"""Verifier: SSA dominance, use lists, op signatures, attributes and shape rules.

Every failure is a ``VerifyError`` that names the function, the op (with its source line
when traced), the types involved and what was expected.
"""
from __future__ import annotations

import numpy as np

from ..errors import VerifyError
from .builder import infer_result_types
from .core import Block, Graph, Operation
from .dtypes import as_dtype
from .types import QuantType, TensorType, dim_symbols

TERMINATORS = ("func.return", "sc.yield")


def _fail(fn: str, op: Operation, msg: str) -> VerifyError:
    return VerifyError(f"@{fn}: {op.describe()}: {msg}")


def verify_block(fn: str, block: Block, defined: set[int], terminator: str | None) -> None:
    for a in block.args:
        defined.add(id(a))
    for k, op in enumerate(block.ops):
        verify_op(fn, op, defined)
        if op.name in TERMINATORS and k != len(block.ops) - 1:
            raise _fail(fn, op, "a terminator must be the last op of its block")
        for r in op.results:
            defined.add(id(r))
    if terminator is not None:
        last = block.terminator
        if last is None or last.name != terminator:
            raise VerifyError(f"@{fn}: block must end with {terminator}")


def verify_op(fn: str, op: Operation, defined: set[int]) -> None:
    for i, v in enumerate(op.operands):
        if id(v) not in defined:
            raise _fail(fn, op, f"operand {i} ({v.type}) is used before it is defined (or outside its scope)")
        if (op, i) not in v.uses:
            raise _fail(fn, op, f"operand {i}: use list is out of date")
    for r in op.results:
        for user, i in r.uses:
            if not 0 <= i < len(user.operands) or user.operands[i] is not r:
                raise _fail(fn, op, f"result {r.index}: stale use by {user.name}")
    if op.name in TERMINATORS:
        if op.results or op.regions or op.attrs:
            raise _fail(fn, op, "terminators take only operands")
        return
    opdef = op.opdef
    if opdef is None:
        raise _fail(fn, op, "unknown op (not declared in the sc dialect)")
    if not opdef.operand_count_ok(len(op.operands)):
        raise _fail(fn, op, f"{len(op.operands)} operands, expected {opdef.expected_operands()}")
    if len(op.regions) != opdef.regions:
        raise _fail(fn, op, f"{len(op.regions)} regions, expected {opdef.regions}")
    try:
        norm = opdef.normalize_attrs(op.attrs)
    except VerifyError as e:
        raise VerifyError(f"@{fn}: {e}") from None
    if set(norm) != set(op.attrs):
        raise _fail(fn, op, f"attributes {sorted(op.attrs)} differ from the declared {sorted(norm)}")
    if opdef.declared_result:
        for r in op.results:
            if isinstance(r.type, TensorType) and not r.type.is_static:
                raise _fail(fn, op, f"declared result type {r.type} must be static")
    else:
        try:
            types = infer_result_types(op.name, list(op.operands), op.attrs, op.loc or "", op.regions)
        except VerifyError as e:
            raise VerifyError(f"@{fn}: {e}") from None
        got = tuple(r.type for r in op.results)
        if types != got:
            raise _fail(fn, op, f"result types ({', '.join(t.pretty() for t in got)}) differ from the shape rule "
                                f"({', '.join(t.pretty() for t in types)})")
    for region in op.regions:
        if len(region.blocks) != 1:
            raise _fail(fn, op, "regions must have exactly one block")
        if opdef.region_args == "operands":
            got = [a.type for a in region.block.args]
            want = [v.type for v in op.operands]
            if got != want:
                raise _fail(fn, op, f"region arguments ({', '.join(map(str, got))}) must have the operand "
                                    f"types ({', '.join(map(str, want))})")
        verify_block(fn, region.block, set(defined), "sc.yield")


def verify_defined_dims(f) -> None:
    """Ops that define a symbolic dim (trait ``defines_dim``: ``sc.nonzero``'s data-dependent
    ``size``) must each name a fresh symbol: not a dim of an input, not one another op defines
    (two ops defining one symbol would claim that their results have equal lengths)."""
    used = {s for a in f.args if isinstance(a.type, TensorType) for d in a.type.shape for s in dim_symbols(d)}
    defined: set[str] = set()
    for op in f.walk():
        d = op.opdef
        if d is None or "defines_dim" not in d.traits:
            continue
        size = op.attrs.get("size")
        if size in used:
            raise _fail(f.name, op, f"size {size!r} is a dim of a function input; a data-dependent size "
                                    f"needs a symbol of its own")
        if size in defined:
            raise _fail(f.name, op, f"size {size!r} is defined by another op too; each data-dependent size "
                                    f"needs a symbol of its own")
        defined.add(size)


def verify(g: Graph) -> Graph:
    """Check every function of ``g``; raises ``VerifyError``, returns ``g`` when sound."""
    params: dict[str, tuple] = {}
    for f in g.functions.values():
        for i, a in enumerate(f.args):
            if not isinstance(a.type, (TensorType, QuantType)):
                raise VerifyError(f"@{f.name}: argument {i} has non-tensor type {a.type}")
        verify_block(f.name, f.body, set(), "func.return")
        verify_defined_dims(f)
        for op in f.walk():
            if op.name == "sc.param":
                name, t = op.attrs["name"], op.result.type
                if name in params and params[name][0] != t:
                    raise _fail(f.name, op, f"param {name!r} has type {t} here but {params[name][0]} elsewhere")
                params[name] = (t, op)
    for name, (t, op) in params.items():
        w = g.weights.get(name)
        if w is None:
            continue
        if isinstance(t, QuantType) or hasattr(w, "fmt"):  # a quantized type / QuantizedTensor weight
            held = (f"a {w.fmt} weight of shape {tuple(w.shape)}" if hasattr(w, "fmt")
                    else f"an unquantized {np.dtype(w.dtype).name} array of shape {tuple(w.shape)}")
            if not (isinstance(t, QuantType) and hasattr(w, "fmt") and w.fmt == t.format
                    and tuple(w.shape) == t.shape):
                raise VerifyError(f"param {name!r}: the IR declares {t} but the weight store holds {held}")
            continue
        if not isinstance(t, TensorType):
            continue
        if tuple(w.shape) != t.shape or as_dtype(w.dtype) != t.dtype:
            raise VerifyError(f"param {name!r}: the IR declares {t} but the weight store holds "
                              f"shape {tuple(w.shape)} dtype {np.dtype(w.dtype).name}")
    return g
