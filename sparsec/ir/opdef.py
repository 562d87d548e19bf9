"""The op-definition registry: each op is declared once with operands, attributes,
shape rule (``infer``) and NumPy reference; targets register their lowerings on it.

An op is declared as a class body read by ``@register``::

    @register
    class Softmax:
        '''softmax along ``axis``'''
        name = "sc.softmax"
        operands = ("x",)
        attrs = {"axis": Int(-1)}
        traits = ("pure",)
        def infer(x, *, axis): return x
        def reference(x, *, axis): ...

Operand names ending in ``?`` are optional (trailing), a single name ending in ``*`` is
variadic. ``infer`` receives operand *types* (None for an absent optional, a list for a
variadic) and the attributes; ``reference`` receives NumPy arrays the same way. Both return
one value or a tuple (one per result).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import VerifyError
from .attributes import AttrKind


@dataclass(frozen=True)
class OperandSpec:
    name: str
    kind: str  # "one" | "optional" | "variadic"

    @staticmethod
    def parse(s: str) -> "OperandSpec":
        if s.endswith("?"):
            return OperandSpec(s[:-1], "optional")
        if s.endswith("*"):
            return OperandSpec(s[:-1], "variadic")
        return OperandSpec(s, "one")


@dataclass
class OpDef:
    name: str
    operands: tuple[OperandSpec, ...]
    attrs: dict[str, AttrKind]
    infer: Callable[..., Any] | None
    reference: Callable[..., Any] | None
    doc: str = ""
    regions: int = 0
    traits: frozenset[str] = frozenset()
    #: result types are given by whoever creates the op (``sc.param``), not inferred
    declared_result: bool = False
    #: "operands": each region's block arguments have the operands' types (``sc.fused``)
    region_args: str | None = None
    #: target name -> lowering rule; filled in by the target packages
    lowerings: dict[str, Callable[..., Any]] = field(default_factory=dict)
    #: rewrite patterns (``sparsec.passes.Pattern``) the ``canonicalize`` pass applies to this op;
    #: filled in by ``@canonicalization`` in ``passes/canonicalize.py``
    canonicalizers: list = field(default_factory=list)

    # -- operands --------------------------------------------------------------------------
    def operand_count_ok(self, n: int) -> bool:
        fixed = sum(1 for o in self.operands if o.kind == "one")
        opt = sum(1 for o in self.operands if o.kind == "optional")
        if any(o.kind == "variadic" for o in self.operands):
            return n >= fixed
        return fixed <= n <= fixed + opt

    def expected_operands(self) -> str:
        parts = [o.name + {"one": "", "optional": "?", "variadic": "..."}[o.kind] for o in self.operands]
        return f"({', '.join(parts)})"

    def bind(self, values: list) -> list:
        """Group a flat operand list per spec: absent optionals -> None, variadic -> list."""
        fixed = sum(1 for o in self.operands if o.kind == "one")
        extra = len(values) - fixed
        out, i = [], 0
        for spec in self.operands:
            if spec.kind == "one":
                out.append(values[i])
                i += 1
            elif spec.kind == "optional":
                if extra > 0:
                    out.append(values[i])
                    i += 1
                    extra -= 1
                else:
                    out.append(None)
            else:
                out.append(list(values[i:i + extra]))
                i += extra
                extra = 0
        return out

    # -- attributes ------------------------------------------------------------------------
    def normalize_attrs(self, attrs: dict | None, where: str = "") -> dict:
        attrs = dict(attrs or {})
        unknown = sorted(set(attrs) - set(self.attrs))
        loc = f" ({where})" if where else ""
        if unknown:
            raise VerifyError(f"{self.name}{loc}: unknown attribute {', '.join(map(repr, unknown))}; "
                              f"expected {', '.join(self.attrs) or 'none'}")
        out = {}
        for key, kind in self.attrs.items():
            if key not in attrs:
                if kind.required:
                    raise VerifyError(f"{self.name}{loc}: missing required attribute {key!r} ({kind.kind})")
                out[key] = kind.default
                continue
            v = attrs[key]
            if v is None and kind.default is None:
                out[key] = None
                continue
            try:
                out[key] = kind.coerce(v)
            except (TypeError, ValueError) as e:
                raise VerifyError(f"{self.name}{loc}: attribute {key!r}: {e}") from None
        return out

    # -- rules -----------------------------------------------------------------------------
    def infer_types(self, operand_types: list, attrs: dict, regions: list | None = None) -> tuple:
        if self.regions:  # ops with regions see them (results may come from a terminator)
            res = self.infer(*self.bind(operand_types), regions=regions or [], **attrs)
        else:
            res = self.infer(*self.bind(operand_types), **attrs)
        return tuple(res) if isinstance(res, (tuple, list)) else (res,)

    def run_reference(self, arrays: list, attrs: dict) -> tuple:
        res = self.reference(*self.bind(arrays), **attrs)
        return tuple(res) if isinstance(res, (tuple, list)) else (res,)


REGISTRY: dict[str, OpDef] = {}


def register(cls) -> OpDef:
    """Class decorator turning an op declaration into an ``OpDef`` in the registry."""
    body = vars(cls)
    name = body["name"]
    if name in REGISTRY:
        raise ValueError(f"op {name} is declared twice")
    opdef = OpDef(
        name=name,
        operands=tuple(OperandSpec.parse(s) for s in body.get("operands", ())),
        attrs=dict(body.get("attrs", {})),
        infer=body.get("infer"),
        reference=body.get("reference"),
        doc=(cls.__doc__ or "").strip(),
        regions=body.get("regions", 0),
        traits=frozenset(body.get("traits", ())),
        declared_result=body.get("declared_result", False),
        region_args=body.get("region_args"),
    )
    kinds = [o.kind for o in opdef.operands]
    if kinds.count("variadic") > 1 or ("variadic" in kinds and "optional" in kinds):
        raise ValueError(f"{name}: at most one variadic operand group, not mixed with optionals")
    REGISTRY[name] = opdef
    return opdef


def define(name: str, **kw) -> OpDef:
    """Functional form of ``register`` for families of similar ops (elementwise)."""
    ns = {"name": name, **kw}
    cls = type(name.replace(".", "_"), (), ns)
    cls.__doc__ = kw.get("doc", "")
    return register(cls)


def get_opdef(name: str) -> OpDef | None:
    return REGISTRY.get(name)
