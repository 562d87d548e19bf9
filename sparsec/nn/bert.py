"""BERT-style encoder with Hugging Face ``BertModel`` names (``embeddings.word_embeddings``,
``encoder.layer.{i}.attention.self.query``, ``...attention.output.LayerNorm``,
``intermediate.dense``, ``output.dense``, ``pooler.dense``): post-norm blocks, erf GELU,
bidirectional attention with a padding mask."""
from __future__ import annotations

import numpy as np

from .. import ops
from .attention import merge_heads, split_heads
from .layers import ACTIVATIONS, Embedding, Linear
from .module import Module, ModuleList
from .norm import LayerNorm

#: the additive value for padded keys, as HF's ``(1 - mask) * finfo(float32).min``
MASK_MIN = float(np.finfo(np.float32).min)


class BertEmbeddings(Module):
    """``LayerNorm(word[ids] + position[0..seq-1] + token_type[type_ids])`` (type ids default to 0)."""

    def __init__(self, vocab: int, hidden: int, max_position: int = 512, type_vocab: int = 2,
                 eps: float = 1e-12, seed: int | None = None):
        super().__init__()
        s = (lambda k: None if seed is None else seed * 5 + k)
        self.word_embeddings = Embedding(vocab, hidden, s(0))
        self.position_embeddings = Embedding(max_position, hidden, s(1))
        self.token_type_embeddings = Embedding(type_vocab, hidden, s(2))
        self.LayerNorm = LayerNorm(hidden, eps)

    def forward(self, input_ids, token_type_ids=None):
        if token_type_ids is None:
            token_type_ids = input_ids * 0
        h = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        h = h + self.position_embeddings(ops.iota(input_ids, axis=1))
        return self.LayerNorm(h)


class BertSelfAttention(Module):
    """``query``/``key``/``value`` projections and bidirectional multi-head attention."""

    def __init__(self, hidden: int, heads: int, seed: int | None = None):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden {hidden} is not divisible by heads {heads}")
        self.heads, self.head_dim = heads, hidden // heads
        s = (lambda k: None if seed is None else seed * 3 + k)
        self.query = Linear(hidden, hidden, True, s(0))
        self.key = Linear(hidden, hidden, True, s(1))
        self.value = Linear(hidden, hidden, True, s(2))

    def forward(self, x, mask=None):
        q, k, v = (split_heads(p(x), self.heads, self.head_dim) for p in (self.query, self.key, self.value))
        return merge_heads(ops.attention(q, k, v, mask, causal=False))


class BertSelfOutput(Module):
    """``LayerNorm(dense(h) + residual)``."""

    def __init__(self, hidden: int, eps: float = 1e-12, seed: int | None = None):
        super().__init__()
        self.dense = Linear(hidden, hidden, True, seed)
        self.LayerNorm = LayerNorm(hidden, eps)

    def forward(self, h, residual):
        return self.LayerNorm(self.dense(h) + residual)


class BertAttention(Module):
    def __init__(self, hidden: int, heads: int, eps: float = 1e-12, seed: int | None = None):
        super().__init__()
        s = (lambda k: None if seed is None else seed * 2 + k)
        self.self = BertSelfAttention(hidden, heads, s(0))
        self.output = BertSelfOutput(hidden, eps, s(1))

    def forward(self, x, mask=None):
        return self.output(self.self(x, mask), x)


class BertIntermediate(Module):
    def __init__(self, hidden: int, intermediate: int, activation: str = "gelu", seed: int | None = None):
        super().__init__()
        self.activation = activation
        self.dense = Linear(hidden, intermediate, True, seed)

    def forward(self, x):
        return ACTIVATIONS[self.activation](self.dense(x))


class BertOutput(BertSelfOutput):
    """``LayerNorm(dense(intermediate) + residual)`` with ``dense`` ``[hidden, intermediate]``."""

    def __init__(self, hidden: int, intermediate: int, eps: float = 1e-12, seed: int | None = None):
        Module.__init__(self)
        self.dense = Linear(intermediate, hidden, True, seed)
        self.LayerNorm = LayerNorm(hidden, eps)


class BertLayer(Module):
    """Post-norm encoder block: attention + residual + LayerNorm, then FFN + residual + LayerNorm."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float = 1e-12, activation: str = "gelu",
                 seed: int | None = None):
        super().__init__()
        s = (lambda k: None if seed is None else seed * 3 + k)
        self.attention = BertAttention(hidden, heads, eps, s(0))
        self.intermediate = BertIntermediate(hidden, intermediate, activation, s(1))
        self.output = BertOutput(hidden, intermediate, eps, s(2))

    def forward(self, x, mask=None):
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(Module):
    def __init__(self, layers: list[BertLayer]):
        super().__init__()
        self.layer = ModuleList(layers)

    def forward(self, x, mask=None):
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(Module):
    """``tanh(dense(h[:, 0]))``; kept for checkpoint compatibility, not part of ``BertModel``'s output."""

    def __init__(self, hidden: int, seed: int | None = None):
        super().__init__()
        self.dense = Linear(hidden, hidden, True, seed)

    def forward(self, h):
        return ops.tanh(self.dense(h[:, 0]))


class BertModel(Module):
    """A BERT encoder: ``forward(input_ids, attention_mask=None, token_type_ids=None)`` ->
    ``last_hidden_state [batch, seq, hidden]``. ``attention_mask`` is int64 1 (token) / 0 (padding)
    ``[batch, seq]``, turned into HF's additive mask ``(1 - mask) * finfo(float32).min`` over keys.
    ``add_pooling_layer`` (HF's default) holds the ``pooler.dense`` weights checkpoints carry.
    """

    def __init__(self, vocab: int, hidden: int, layers: int, heads: int, intermediate: int | None = None,
                 max_position: int = 512, type_vocab: int = 2, eps: float = 1e-12, activation: str = "gelu",
                 add_pooling_layer: bool = True, seed: int | None = 0):
        super().__init__()
        intermediate = intermediate or 4 * hidden
        self.config = dict(vocab=vocab, hidden=hidden, layers=layers, heads=heads, intermediate=intermediate,
                           max_position=max_position, type_vocab=type_vocab, eps=eps, activation=activation)
        s = (lambda k: None if seed is None else seed * 1000 + k)
        self.embeddings = BertEmbeddings(vocab, hidden, max_position, type_vocab, eps, s(0))
        self.encoder = BertEncoder([BertLayer(hidden, heads, intermediate, eps, activation, s(10 * i + 1))
                                    for i in range(layers)])
        if add_pooling_layer:
            self.pooler = BertPooler(hidden, s(2))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        h = self.embeddings(input_ids, token_type_ids)
        mask = None
        if attention_mask is not None:
            b, s = attention_mask.shape
            keep = ops.cast(attention_mask, "float32")
            mask = ops.reshape((1.0 - keep) * MASK_MIN, (b, 1, 1, s))
        return self.encoder(h, mask)
