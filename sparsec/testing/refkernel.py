"""A CPU "kernel" that runs an op's NumPy reference, for testing the runtime (memory planning,
argument passing) independently of the real kernels. Never used by ``sc.compile``."""
from __future__ import annotations

from ..lower.cpu import Kernel


def reference_kernel(op) -> Kernel:
    d = op.opdef
    n_in = len(op.operands)
    attrs = dict(op.attrs)
    if op.regions:
        attrs.update(regions=op.regions, weights={})
    reshape_like = "view" in d.traits

    if reshape_like:
        def view(*ins):
            return tuple(d.run_reference(list(ins), attrs))
        return Kernel(view, f"reference {op.name}", view=True, impl="reference")

    def fn(*arrays):
        outs = d.run_reference(list(arrays[:n_in]), attrs)
        for o, r in zip(arrays[n_in:], outs):
            o[...] = r
    return Kernel(fn, f"reference {op.name}", impl="reference")
