"""Basic layers: Linear, Embedding, RMSNorm, LayerNorm, MLP (SwiGLU / GELU)."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..frontend.tracer import Parameter
from .module import Module


def init_weight(shape, fan_in: int, seed: int | None = None, dtype="float32") -> np.ndarray:
    """Deterministic small random init (uniform, 1/sqrt(fan_in)), enough for tests and demos."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(max(fan_in, 1))
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Linear(Module):
    """``y = x @ weight.T + bias`` with ``weight`` ``[out, in]`` (the Hugging Face layout)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, seed: int | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(init_weight((out_features, in_features), in_features, seed))
        self.bias = Parameter(init_weight((out_features,), in_features, None if seed is None else seed + 1)) \
            if bias else None

    def forward(self, x):
        return ops.linear(x, self.weight, self.bias)


class MLP(Module):
    """Feed-forward block. ``activation="silu"`` with ``gated=True`` is SwiGLU
    (``down(silu(gate(x)) * up(x))``); ``gated=False`` is ``fc2(act(fc1(x)))``.

    ``names`` picks the projection names so checkpoints load as published:
    ``("gate_proj", "up_proj", "down_proj")`` (Llama/Qwen), ``("w1", "w3", "w2")`` (Mixtral),
    ``("fc1", "fc2")`` for the ungated form.
    """

    def __init__(self, hidden: int, ffn: int, activation: str = "silu", gated: bool = True,
                 names: tuple[str, ...] | None = None, bias: bool = False, seed: int | None = None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
        self.activation, self.gated = activation, gated
        s = (lambda k: None if seed is None else seed * 7 + k)
        if gated:
            self.names = names or ("gate_proj", "up_proj", "down_proj")
            setattr(self, self.names[0], Linear(hidden, ffn, bias, s(0)))
            setattr(self, self.names[1], Linear(hidden, ffn, bias, s(1)))
            setattr(self, self.names[2], Linear(ffn, hidden, bias, s(2)))
        else:
            self.names = names or ("fc1", "fc2")
            setattr(self, self.names[0], Linear(hidden, ffn, bias, s(0)))
            setattr(self, self.names[1], Linear(ffn, hidden, bias, s(1)))

    def forward(self, x):
        act = ACTIVATIONS[self.activation]
        if self.gated:
            gate, up, down = (getattr(self, n) for n in self.names)
            return down(act(gate(x)) * up(x))
        fc1, fc2 = (getattr(self, n) for n in self.names)
        return fc2(act(fc1(x)))


ACTIVATIONS = {
    "silu": lambda x: ops.silu(x),
    "gelu": lambda x: ops.gelu(x),
    "gelu_tanh": lambda x: ops.gelu_tanh(x),
    "relu": lambda x: ops.relu(x),
    "sigmoid": lambda x: ops.sigmoid(x),
}


class Embedding(Module):
    """Row lookup ``weight[ids]`` with ``weight`` ``[num_embeddings, embedding_dim]`` (HF layout)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, seed: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        # uniform(-1, 1): rows of unit-ish scale, so tiny test models have non-degenerate activations
        self.weight = Parameter(init_weight((num_embeddings, embedding_dim), 1, seed))

    def forward(self, ids):
        return ops.embedding(ids, self.weight)
