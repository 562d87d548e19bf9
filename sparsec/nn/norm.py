"""Normalization layers: RMSNorm (Llama, Qwen) and LayerNorm (BERT, GPT-2)."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..frontend.tracer import Parameter
from .module import Module


class RMSNorm(Module):
    """``x * rsqrt(mean(x**2, -1) + eps) * weight``; ``weight`` ``[dim]`` starts at ones."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(np.ones((dim,), np.float32))

    def forward(self, x):
        return ops.rms_norm(x, self.weight, eps=self.eps)


class LayerNorm(Module):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last axis (ones / zeros at start)."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = Parameter(np.ones((dim,), np.float32))
        self.bias = Parameter(np.zeros((dim,), np.float32)) if bias else None

    def forward(self, x):
        return ops.layer_norm(x, self.weight, self.bias, eps=self.eps)
