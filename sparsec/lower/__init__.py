"""Lowering: IR -> kernel plan for a target. ``lower_function(graph)`` gives the runtime's
``Plan``; the CPU rules live in ``sparsec.lower.cpu``, the CUDA rules (``target="cuda"``) in
``sparsec.lower.cuda`` (imported only when that target is lowered: it loads numba.cuda)."""
from .lowering import lower_function  # noqa: F401
