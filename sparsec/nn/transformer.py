"""Decoder-only language models with Hugging Face Llama/Qwen/Mixtral names:
``model.embed_tokens``, ``model.layers.{i}.{input_layernorm,self_attn,post_attention_layernorm,mlp}``,
``model.norm``, ``lm_head``."""
from __future__ import annotations

from typing import Callable

from .. import ops
from .attention import Attention
from .layers import MLP, Embedding, Linear
from .module import Module, ModuleList
from .norm import RMSNorm


class DecoderLayer(Module):
    """Pre-norm residual block: ``h = x + self_attn(input_layernorm(x))``,
    ``out = h + mlp(post_attention_layernorm(h))``. ``mlp`` is any Module mapping
    ``[batch, seq, hidden]`` to the same shape (an ``MLP``, a ``MoE``, ...); ``mlp_name`` is the
    attribute (and checkpoint name) it is registered under (Mixtral publishes ``block_sparse_moe``)."""

    def __init__(self, hidden: int, self_attn: Attention, mlp: Module, norm_eps: float = 1e-6,
                 mlp_name: str = "mlp"):
        super().__init__()
        self.hidden = hidden
        self.input_layernorm = RMSNorm(hidden, norm_eps)
        self.self_attn = self_attn
        self.post_attention_layernorm = RMSNorm(hidden, norm_eps)
        setattr(self, mlp_name, mlp)
        if mlp_name != "mlp":
            object.__setattr__(self, "mlp", mlp)  # an alias: not registered twice

    def forward(self, x, positions=None, mask=None, cache=None):
        a = self.self_attn(self.input_layernorm(x), positions, mask, cache) if cache is not None else \
            self.self_attn(self.input_layernorm(x), positions, mask)
        if cache is not None:
            a, cache = a
        h = x + a
        m = self.mlp(self.post_attention_layernorm(h))
        if isinstance(m, tuple):  # a MoE may also return its router logits
            m = m[0]
        return h + m if cache is None else (h + m, cache)


class DecoderModel(Module):
    """The transformer body (HF ``LlamaModel``): embeddings, decoder layers, final norm.
    ``forward(input_ids [batch, seq])`` returns the normed hidden states ``[batch, seq, hidden]``."""

    def __init__(self, vocab: int, hidden: int, layers: list[DecoderLayer], norm_eps: float = 1e-6,
                 seed: int | None = None):
        super().__init__()
        self.embed_tokens = Embedding(vocab, hidden, seed)
        self.layers = ModuleList(layers)
        self.norm = RMSNorm(hidden, norm_eps)

    def forward(self, input_ids, positions=None, caches=None):
        """``caches``: one ``(k_cache, v_cache)`` per layer (see ``Attention``); then returns
        ``(hidden, new_caches)``."""
        if positions is None:
            positions = ops.iota(input_ids, axis=1)
        h = self.embed_tokens(input_ids)
        new_caches = []
        for i, layer in enumerate(self.layers):
            if caches is None:
                h = layer(h, positions)
            else:
                h, c = layer(h, positions, None, caches[i])
                new_caches.append(c)
        return self.norm(h) if caches is None else (self.norm(h), new_caches)


class CausalLM(Module):
    """A Llama-style causal language model: ``input_ids`` int64 ``[batch, seq]`` -> logits f32
    ``[batch, seq, vocab]``.

    ``CausalLM(vocab=..., hidden=..., layers=..., heads=..., kv_heads=..., ffn=..., rope_theta=...)``;
    ``mlp(i) -> Module`` builds layer ``i``'s feed-forward block (default: SwiGLU ``MLP(hidden, ffn)``),
    so MoE layers plug in; ``attention(i) -> Attention`` likewise replaces layer ``i``'s attention
    (its heads and head_dim must match the arguments: they size the KV cache); ``mlp_name`` names
    the feed-forward attribute (``DecoderLayer``). ``o_bias`` (default: ``attention_bias``) puts a
    bias on ``o_proj``; ``qk_norm`` is ``Attention``'s (``True``, ``"head"`` or ``"full"``) and
    ``rope_scaling`` its Hugging Face rope-scaling dict. ``tie_word_embeddings`` shares ``lm_head.weight`` with
    ``model.embed_tokens.weight`` (it then appears once in the state dict, under the embedding's name).
    The settings are kept in ``self.config``.
    """

    def __init__(self, vocab: int, hidden: int, layers: int, heads: int, kv_heads: int | None = None,
                 ffn: int | None = None, rope_theta: float = 10000.0, head_dim: int | None = None,
                 norm_eps: float = 1e-6, tie_word_embeddings: bool = False, attention_bias: bool = False,
                 qk_norm: bool | str = False, activation: str = "silu",
                 mlp: Callable[[int], Module] | None = None, seed: int | None = 0,
                 o_bias: bool | None = None, rope_scaling: dict | None = None,
                 attention: Callable[[int], Attention] | None = None, mlp_name: str = "mlp"):
        super().__init__()
        kv_heads = kv_heads or heads
        ffn = ffn or 4 * hidden
        head_dim = head_dim or hidden // heads
        self.config = dict(vocab=vocab, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, ffn=ffn,
                           rope_theta=rope_theta, head_dim=head_dim, norm_eps=norm_eps,
                           tie_word_embeddings=tie_word_embeddings, attention_bias=attention_bias,
                           qk_norm=qk_norm, activation=activation)
        s = (lambda k: None if seed is None else seed * 1000 + k)
        blocks = []
        for i in range(layers):
            if attention is not None:
                attn = attention(i)
            else:
                attn = Attention(hidden, heads, kv_heads, head_dim, rope_theta, bias=attention_bias, o_bias=o_bias,
                                 qk_norm=qk_norm, norm_eps=norm_eps, causal=True, rope_scaling=rope_scaling,
                                 seed=s(10 * i + 1))
            ff = mlp(i) if mlp is not None else MLP(hidden, ffn, activation, gated=True, seed=s(10 * i + 2))
            blocks.append(DecoderLayer(hidden, attn, ff, norm_eps, mlp_name=mlp_name))
        self.model = DecoderModel(vocab, hidden, blocks, norm_eps, seed=s(0))
        self.lm_head = Linear(hidden, vocab, bias=False, seed=s(1))
        if tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids):
        return ops.cast(self.lm_head(self.model(input_ids)), "float32")

    # -- decoding with a KV cache ----------------------------------------------------------
    def cache_layout(self) -> list[tuple[str, tuple, str]]:
        """The cache inputs of ``forward_cached``: (name, shape with ``batch``/``ctx`` symbols, dtype)."""
        c = self.config
        out = []
        for i in range(c["layers"]):
            for kind in ("key", "value"):
                out.append((f"past_{kind}.{i}", ("batch", c["kv_heads"], "ctx", c["head_dim"]), "float32"))
        return out

    def forward_cached(self, input_ids, positions, *caches):
        """One decoding step: ``input_ids [batch, seq]`` at ``positions [seq]`` with one
        ``[batch, kv_heads, ctx, head_dim]`` key and value cache per layer whose last ``seq``
        positions are free (``ctx = past + seq``). Returns a dict: ``logits [batch, seq, vocab]``
        and every updated cache (``present_key.{i}``, ``present_value.{i}``)."""
        n = self.config["layers"]
        if len(caches) != 2 * n:
            raise ValueError(f"forward_cached: expected {2 * n} caches (key and value per layer), got {len(caches)}")
        pairs = [(caches[2 * i], caches[2 * i + 1]) for i in range(n)]
        h, new = self.model(input_ids, positions, pairs)
        out = {"logits": ops.cast(self.lm_head(h), "float32")}
        for i, (k, v) in enumerate(new):
            out[f"present_key.{i}"] = k
            out[f"present_value.{i}"] = v
        return out
