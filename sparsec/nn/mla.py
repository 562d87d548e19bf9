"""Multi-head latent attention (MLA, DeepSeek-V2/V3) with Hugging Face parameter names, and a
causal LM whose KV cache holds MLA's compressed latent.

MLA (``transformers``' ``DeepseekV3Attention`` / ``DeepseekV2Attention``):

- queries: ``q_proj`` (``q_lora_rank=None``) or ``q_b_proj(q_a_layernorm(q_a_proj(x)))``, split
  per head into ``q_nope [qk_nope_head_dim]`` and ``q_rope [qk_rope_head_dim]``;
- keys/values: ``kv_a_proj_with_mqa(x)`` gives the latent ``[kv_lora_rank]`` and one shared
  ``k_rope [qk_rope_head_dim]``; ``c = kv_a_layernorm(latent)``; ``kv_b_proj(c)`` expands it to
  per-head ``k_nope`` and ``v``;
- decoupled RoPE on ``q_rope`` and ``k_rope`` only (DeepSeek's interleaved pairs, or HF's
  ``rotate_half`` halves with ``rope_interleave=False``), with YaRN scaling (frequencies and the
  cos/sin ``attention_factor``) when configured;
- ``softmax(q k^T * scale) v`` with ``scale = qk_head_dim ** -0.5`` (times ``mscale**2`` for
  YaRN with ``mscale_all_dim``), then ``o_proj``.

Without a cache (the main function) it computes exactly that, expanding the keys and values.
With a cache (the ``decode`` function) it stores per position only ``[c | k_rope]``
(``kv_lora_rank + qk_rope_head_dim`` floats, shared by all heads) and uses the *absorbed* form:
the key part of ``kv_b_proj`` is folded into the query (``q_lat = q_nope @ W_UK``, per head
``[kv_lora_rank]``), so attention is multi-query attention with a single key head
``[c | k_rope]`` whose value is ``c``; the value part ``W_UV`` is applied to the attention output
afterwards. Same scores and outputs up to float rounding.
"""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from .attention import merge_heads
from .layers import Linear
from .module import Module
from .norm import RMSNorm
from .transformer import CausalLM, DecoderLayer, DecoderModel

#: rope types MLA implements (``rope_parameters["rope_type"]``)
ROPE_TYPES = ("default", "yarn")
#: keys a YaRN ``rope_parameters`` dict may hold
YARN_KEYS = {"rope_type", "type", "rope_theta", "factor", "original_max_position_embeddings", "beta_fast",
             "beta_slow", "mscale", "mscale_all_dim", "attention_factor", "truncate", "partial_rotary_factor"}


def _yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_parameters(rope_dim: int, rope: dict | None, max_position_embeddings: int | None = None):
    """``(inv_freq [rope_dim/2] f32, attention_factor, softmax_mscale)`` for a rope dict as
    ``transformers`` keeps it (``rope_type``, ``rope_theta``, and YaRN's ``factor``,
    ``original_max_position_embeddings``, ``beta_fast``, ``beta_slow``, ``mscale``,
    ``mscale_all_dim``, ``attention_factor``, ``truncate``), computed as ``transformers`` 5
    computes them (``_compute_yarn_parameters``, ``yarn_apply_mscale``). ``softmax_mscale``
    multiplies the softmax scale. Other rope types raise ``ValueError`` naming them."""
    rope = dict(rope or {})
    rtype = rope.get("rope_type", rope.get("type", "default"))
    theta = float(rope.get("rope_theta", 10000.0))
    if rtype not in ROPE_TYPES:
        raise ValueError(f"rope type {rtype!r} is not supported for multi-head latent attention "
                         f"(supported: {', '.join(ROPE_TYPES)})")
    if float(rope.get("partial_rotary_factor", 1.0) or 1.0) != 1.0:
        raise ValueError(f"partial_rotary_factor={rope['partial_rotary_factor']} is not supported "
                         f"(MLA rotates the whole qk_rope_head_dim)")
    exps = np.arange(0, rope_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(rope_dim)
    pos_freqs = (np.float32(theta) ** exps).astype(np.float32)
    if rtype == "default":
        return (np.float32(1.0) / pos_freqs).astype(np.float32), 1.0, 1.0
    unknown = sorted(set(rope) - YARN_KEYS)
    if unknown:
        raise ValueError(f"yarn rope parameters {unknown} are not supported")
    orig = rope.get("original_max_position_embeddings") or max_position_embeddings
    if orig is None:
        raise ValueError("yarn rope needs original_max_position_embeddings")
    factor = rope.get("factor")
    if factor is None:
        if max_position_embeddings is None:
            raise ValueError("yarn rope needs a factor (or max_position_embeddings)")
        factor = max_position_embeddings / orig
    factor = float(factor)
    mscale, mscale_all_dim = rope.get("mscale"), rope.get("mscale_all_dim")
    attention_factor = rope.get("attention_factor")
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = _yarn_get_mscale(factor, mscale) / _yarn_get_mscale(factor, mscale_all_dim)
        else:
            attention_factor = _yarn_get_mscale(factor)
    beta_fast = rope.get("beta_fast") or 32
    beta_slow = rope.get("beta_slow") or 1

    def correction_dim(rotations):
        return (rope_dim * math.log(orig / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rope.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, rope_dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(rope_dim // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low),
                   0, 1).astype(np.float32)
    extrapolation = np.float32(1) - ramp
    inv_extra = (np.float32(1.0) / pos_freqs).astype(np.float32)
    inv_inter = (np.float32(1.0) / (np.float32(factor) * pos_freqs)).astype(np.float32)
    inv_freq = (inv_inter * (np.float32(1) - extrapolation) + inv_extra * extrapolation).astype(np.float32)
    softmax_mscale = 1.0
    if rope.get("mscale_all_dim"):
        m = _yarn_get_mscale(factor, rope["mscale_all_dim"])
        softmax_mscale = m * m
    return inv_freq, float(attention_factor), softmax_mscale


class MLA(Module):
    """Multi-head latent attention over ``x [batch, seq, hidden]`` (see the module docstring).

    Parameters (Hugging Face names): ``q_proj`` or ``q_a_proj``/``q_a_layernorm``/``q_b_proj``,
    ``kv_a_proj_with_mqa``, ``kv_a_layernorm``, ``kv_b_proj``, ``o_proj``. ``bias`` (HF
    ``attention_bias``) puts biases on ``q_a_proj``, ``kv_a_proj_with_mqa`` and ``o_proj``, as HF
    does. ``rope`` is a ``transformers`` rope dict (``rope_type`` ``"default"`` or ``"yarn"``);
    ``rope_interleave`` rotates the pairs ``(2i, 2i+1)`` (DeepSeek's layout; V2 always) instead of
    the halves. ``norm_eps`` is the eps of the two latent norms (HF: the default 1e-6).
    """

    def __init__(self, hidden: int, num_heads: int, q_lora_rank: int | None, kv_lora_rank: int,
                 qk_nope_head_dim: int, qk_rope_head_dim: int, v_head_dim: int, rope: dict | None = None,
                 rope_interleave: bool = True, max_position_embeddings: int | None = None, bias: bool = False,
                 norm_eps: float = 1e-6, seed: int | None = None):
        super().__init__()
        if qk_rope_head_dim % 2:
            raise ValueError(f"qk_rope_head_dim must be even, got {qk_rope_head_dim}")
        self.hidden, self.num_heads = hidden, num_heads
        self.q_lora_rank, self.kv_lora_rank = q_lora_rank, kv_lora_rank
        self.qk_nope_head_dim, self.qk_rope_head_dim, self.v_head_dim = qk_nope_head_dim, qk_rope_head_dim, v_head_dim
        self.qk_head_dim = qk_nope_head_dim + qk_rope_head_dim
        self.rope_interleave = rope_interleave
        self.inv_freq, self.attention_factor, mscale = rope_parameters(qk_rope_head_dim, rope, max_position_embeddings)
        self.scaling = self.qk_head_dim ** -0.5 * mscale
        s = (lambda k: None if seed is None else seed * 13 + k)
        if q_lora_rank is None:
            self.q_proj = Linear(hidden, num_heads * self.qk_head_dim, False, s(0))
        else:
            self.q_a_proj = Linear(hidden, q_lora_rank, bias, s(1))
            self.q_a_layernorm = RMSNorm(q_lora_rank, norm_eps)
            self.q_b_proj = Linear(q_lora_rank, num_heads * self.qk_head_dim, False, s(2))
        self.kv_a_proj_with_mqa = Linear(hidden, kv_lora_rank + qk_rope_head_dim, bias, s(3))
        self.kv_a_layernorm = RMSNorm(kv_lora_rank, norm_eps)
        self.kv_b_proj = Linear(kv_lora_rank, num_heads * (qk_nope_head_dim + v_head_dim), False, s(4))
        self.o_proj = Linear(num_heads * v_head_dim, hidden, bias, s(5))

    # -- the KV cache --------------------------------------------------------------------------
    @property
    def cache_dim(self) -> int:
        """Floats cached per position (all heads together): ``kv_lora_rank + qk_rope_head_dim``."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    def cache_layout(self, i: int) -> list[tuple[str, tuple, str]]:
        """Layer ``i``'s cache input: one single-head key ``[batch, 1, ctx, kv_lora_rank + qk_rope_head_dim]``
        holding ``[kv_a_layernorm(latent) | rotated k_rope]`` per position."""
        return [(f"past_key.{i}", ("batch", 1, "ctx", self.cache_dim), "float32")]

    # -- forward -------------------------------------------------------------------------------
    def _rope(self, x, positions):
        """Rotary embedding of ``x [batch, heads, seq, rope_dim]`` at ``positions`` ``[seq]`` or
        ``[batch, seq]``. Output in the halves layout (first the pairs' first elements rotated, then
        the second ones), as HF's ``apply_rotary_pos_emb_interleave`` returns; V2's interleaved
        output is a permutation of it, which leaves q.k unchanged."""
        d = self.qk_rope_head_dim
        ang = ops.cast(positions, "float32")
        ang = ops.reshape(ang, tuple(ang.shape) + (1,)) * ops.constant(self.inv_freq)     # [.., S, d/2]
        if len(positions.shape) == 2:
            ang = ops.reshape(ang, (ang.shape[0], 1, ang.shape[1], d // 2))              # [B, 1, S, d/2]
        cos, sin = ops.cos(ang), ops.sin(ang)
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        if self.rope_interleave:
            a, b = ops.slice(x, 3, 0, d, 2), ops.slice(x, 3, 1, d, 2)
        else:
            a, b = ops.slice(x, 3, 0, d // 2), ops.slice(x, 3, d // 2, d)
        return ops.concat([a * cos - b * sin, b * cos + a * sin], 3)

    def forward(self, x, positions=None, mask=None, cache=None):
        """``cache``: ``[batch, 1, ctx, kv_lora_rank + qk_rope_head_dim]`` with the earlier
        positions first; the new positions fill its last ``seq`` entries (``sc.kv_write``) and
        ``(out, cache')`` is returned. ``mask`` is not supported (causal attention only)."""
        if mask is not None:
            raise ValueError("MLA: an attention mask is not supported (causal attention only)")
        b, s = x.shape[0], x.shape[1]
        H, nope, rd, r, vd = self.num_heads, self.qk_nope_head_dim, self.qk_rope_head_dim, self.kv_lora_rank, \
            self.v_head_dim
        if positions is None:
            positions = ops.iota(x, axis=1)
        if self.q_lora_rank is None:
            q = self.q_proj(x)
        else:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q = ops.transpose(ops.reshape(q, (b, s, H, self.qk_head_dim)), (0, 2, 1, 3))      # [B, H, S, qk]
        q_nope, q_rope = ops.slice(q, 3, 0, nope), ops.slice(q, 3, nope, nope + rd)
        ckv = self.kv_a_proj_with_mqa(x)                                                 # [B, S, r + rd]
        c = ops.reshape(self.kv_a_layernorm(ops.slice(ckv, 2, 0, r)), (b, 1, s, r))       # [B, 1, S, r]
        k_rope = ops.reshape(ops.slice(ckv, 2, r, r + rd), (b, 1, s, rd))                 # [B, 1, S, rd]
        q_rope, k_rope = self._rope(q_rope, positions), self._rope(k_rope, positions)
        if cache is None:  # expanded, exactly as transformers
            kv = ops.reshape(self.kv_b_proj(c), (b, s, H, nope + vd))
            kv = ops.transpose(kv, (0, 2, 1, 3))                                         # [B, H, S, nope + v]
            k_nope, v = ops.slice(kv, 3, 0, nope), ops.slice(kv, 3, nope, nope + vd)
            k = ops.concat([k_nope, ops.broadcast_to(k_rope, (b, H, s, rd))], 3)
            o = ops.attention(ops.concat([q_nope, q_rope], 3), k, v, causal=True, scale=self.scaling)
            return self.o_proj(merge_heads(o))
        # absorbed: MQA over the latent cache
        cache = ops.kv_write(cache, ops.concat([c, k_rope], 3), axis=2)                   # [B, 1, L, r + rd]
        w = ops.reshape(self.kv_b_proj.weight, (H, nope + vd, r))
        w_uk, w_uv = ops.slice(w, 1, 0, nope), ops.slice(w, 1, nope, nope + vd)          # [H, nope, r], [H, v, r]
        q_lat = ops.matmul(q_nope, w_uk)                                                 # [B, H, S, r]
        o_lat = ops.attention(ops.concat([q_lat, q_rope], 3), cache, ops.slice(cache, 3, 0, r),
                              causal=True, scale=self.scaling)                           # [B, H, S, r]
        o = ops.matmul(o_lat, w_uv, transpose_b=True)                                    # [B, H, S, v]
        return self.o_proj(merge_heads(o)), cache


class MLACausalLM(CausalLM):
    """A causal LM (``CausalLM``'s names and interface) over decoder layers whose attention is
    ``MLA``: the decode function's caches are each layer's latent cache
    (``past_key.{i}`` ``[batch, 1, ctx, kv_lora_rank + qk_rope_head_dim]``, see
    ``MLA.cache_layout``) instead of per-head keys and values.

    ``layers`` are built ``DecoderLayer``s; ``config`` is stored (with ``vocab``, ``hidden``,
    ``layers``) in ``self.config``.
    """

    def __init__(self, vocab: int, hidden: int, layers: list[DecoderLayer], norm_eps: float = 1e-6,
                 tie_word_embeddings: bool = False, config: dict | None = None, seed: int | None = 0):
        Module.__init__(self)
        for i, layer in enumerate(layers):
            if not hasattr(layer.self_attn, "cache_layout"):
                raise ValueError(f"MLACausalLM: layer {i}'s attention ({type(layer.self_attn).__name__}) "
                                 f"does not define cache_layout")
        self.config = dict(config or {}, vocab=vocab, hidden=hidden, layers=len(layers), norm_eps=norm_eps,
                           tie_word_embeddings=tie_word_embeddings)
        self.model = DecoderModel(vocab, hidden, layers, norm_eps, seed=seed)
        self.lm_head = Linear(hidden, vocab, bias=False, seed=None if seed is None else seed * 1000 + 1)
        if tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids):
        return ops.cast(self.lm_head(self.model(input_ids)), "float32")

    def cache_layout(self) -> list[tuple[str, tuple, str]]:
        out = []
        for i, layer in enumerate(self.model.layers):
            out += layer.self_attn.cache_layout(i)
        return out

    def forward_cached(self, input_ids, positions, *caches):
        """One decoding step over one latent cache per layer (see ``MLA``); returns ``logits``
        and ``present_key.{i}``."""
        n = len(self.model.layers)
        if len(caches) != n:
            raise ValueError(f"forward_cached: expected {n} caches (one latent cache per layer), got {len(caches)}")
        h, new = self.model(input_ids, positions, list(caches))
        out = {"logits": ops.cast(self.lm_head(h), "float32")}
        for i, c in enumerate(new):
            out[f"present_key.{i}"] = c
        return out
