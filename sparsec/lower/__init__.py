"""Lowering: IR -> kernel plan for a target. ``lower_function(graph)`` gives the runtime's
``Plan``; the CPU rules live in ``sparsec.lower.cpu``."""
from .lowering import lower_function  # noqa: F401
