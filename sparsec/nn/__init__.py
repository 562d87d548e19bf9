"""``sc.nn``: traceable model building blocks with Hugging Face parameter names."""
from ..frontend.tracer import Parameter  # noqa: F401
from .layers import ACTIVATIONS, MLP, Linear, init_weight  # noqa: F401
from .module import Module, ModuleList  # noqa: F401
