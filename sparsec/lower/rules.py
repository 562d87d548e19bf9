"""Registering lowering rules on op definitions: shared by every target (a target is a set of
rules in ``OpDef.lowerings[target]``)."""
from __future__ import annotations

from ..ir import get_opdef


def lowering_decorator(target: str, label: str):
    """``@decorator("sc.x", ...)`` registering ``rule(op) -> kernel`` as the ``target`` lowering of
    the ops named (``label`` names the target in errors: "CPU", "CUDA")."""
    def register(*names: str):
        def deco(rule):
            for n in names:
                d = get_opdef(n)
                if d is None:
                    raise ValueError(f"{target}_lowering: no op named {n!r}")
                if target in d.lowerings:
                    raise ValueError(f"{n} already has a {label} lowering")
                d.lowerings[target] = rule
            return rule
        deco.__doc__ = f"registers the {label} lowering of {', '.join(names)}"
        return deco
    register.__doc__ = f"Decorator registering ``rule(op)`` as the {label} lowering of the ops named."
    return register


def has_lowering(target: str, name: str, not_lowered=()) -> bool:
    """``name`` has a ``target`` rule (and is not one the target refuses on purpose)."""
    d = get_opdef(name)
    return d is not None and target in d.lowerings and name not in not_lowered
