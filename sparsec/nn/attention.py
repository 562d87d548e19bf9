"""Multi-head self-attention with Hugging Face Llama/Qwen names (``q_proj``, ``k_proj``, ``v_proj``,
``o_proj``, optional ``q_norm``/``k_norm``): grouped-query heads, rotary positions, causal or
bidirectional."""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..errors import SparsecError
from .layers import Linear
from .module import Module
from .norm import RMSNorm


def split_heads(x, heads: int, head_dim: int):
    """``[batch, seq, heads*head_dim]`` -> ``[batch, heads, seq, head_dim]``."""
    b, s = x.shape[0], x.shape[1]
    return ops.transpose(ops.reshape(x, (b, s, heads, head_dim)), (0, 2, 1, 3))


def merge_heads(x):
    """``[batch, heads, seq, head_dim]`` -> ``[batch, seq, heads*head_dim]``."""
    b, h, s, d = x.shape
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (b, s, h * d))


class Attention(Module):
    """Self-attention over ``x [batch, seq, hidden]`` -> ``[batch, seq, hidden]``.

    ``num_kv_heads < num_heads`` is grouped-query attention (query head ``h`` reads kv head
    ``h // (num_heads / num_kv_heads)``, as HF's ``repeat_kv``). ``bias`` puts biases on q/k/v
    (``o_bias`` on o_proj, default: same as ``bias``; Llama ``attention_bias`` sets both, Qwen2 is
    ``bias=True, o_bias=False``). ``qk_norm`` adds Qwen3's per-head RMSNorm on q and k before
    RoPE. ``rope_theta=None`` disables rotary embedding. Positions default to ``0..seq-1``.
    """

    def __init__(self, hidden: int, num_heads: int, num_kv_heads: int | None = None, head_dim: int | None = None,
                 rope_theta: float | None = 10000.0, bias: bool = False, o_bias: bool | None = None,
                 qk_norm: bool = False, norm_eps: float = 1e-6, causal: bool = True, rotary_dim: int = 0,
                 rope_interleaved: bool = False, scale: float | None = None, rope_scaling: dict | None = None,
                 seed: int | None = None):
        super().__init__()
        num_kv_heads = num_kv_heads or num_heads
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads {num_heads} must be a multiple of num_kv_heads {num_kv_heads}")
        if head_dim is None:
            if hidden % num_heads:
                raise ValueError(f"hidden {hidden} is not divisible by num_heads {num_heads}; pass head_dim")
            head_dim = hidden // num_heads
        self.hidden, self.num_heads, self.num_kv_heads, self.head_dim = hidden, num_heads, num_kv_heads, head_dim
        self.rope_theta, self.rotary_dim, self.rope_interleaved = rope_theta, rotary_dim, rope_interleaved
        self.causal, self.scale = causal, scale
        s = (lambda k: None if seed is None else seed * 11 + k)
        self.q_proj = Linear(hidden, num_heads * head_dim, bias, s(0))
        self.k_proj = Linear(hidden, num_kv_heads * head_dim, bias, s(1))
        self.v_proj = Linear(hidden, num_kv_heads * head_dim, bias, s(2))
        self.o_proj = Linear(num_heads * head_dim, hidden, bias if o_bias is None else o_bias, s(3))
        if qk_norm not in (False, True, "head", "full"):
            raise ValueError(f"qk_norm must be False, True/'head' (per head) or 'full', got {qk_norm!r}")
        if qk_norm == "full":
            self.q_norm = RMSNorm(num_heads * head_dim, norm_eps)
            self.k_norm = RMSNorm(num_kv_heads * head_dim, norm_eps)
        elif qk_norm:
            self.q_norm = RMSNorm(head_dim, norm_eps)
            self.k_norm = RMSNorm(head_dim, norm_eps)
        self.qk_norm = "head" if qk_norm is True else qk_norm
        self.rope_scaling = None
        self._inv_freq = None
        rtype = (rope_scaling or {}).get("rope_type", (rope_scaling or {}).get("type", "default"))
        if rtype != "default" and rope_theta is not None:
            if rotary_dim not in (0, head_dim) or rope_interleaved:
                raise ValueError("rope_scaling needs full-width, non-interleaved rotary embedding")
            self.rope_scaling = dict(rope_scaling)
            self._inv_freq = rope_inv_freq(head_dim, rope_theta, self.rope_scaling)

    def forward(self, x, positions=None, mask=None, cache=None):
        """``cache=(k_cache, v_cache)``, each ``[batch, kv_heads, ctx, head_dim]`` with the earlier
        positions first: the new keys/values fill its last ``seq`` positions (``sc.kv_write``),
        attention reads all ``ctx``, and ``(out, (k_cache', v_cache'))`` is returned."""
        b, s = x.shape[0], x.shape[1]
        q, k = self.q_proj(x), self.k_proj(x)
        if self.qk_norm == "full":  # over the whole projection, before the head split (OLMoE)
            q, k = self.q_norm(q), self.k_norm(k)
        q = ops.reshape(q, (b, s, self.num_heads, self.head_dim))
        k = ops.reshape(k, (b, s, self.num_kv_heads, self.head_dim))
        v = ops.reshape(self.v_proj(x), (b, s, self.num_kv_heads, self.head_dim))
        if self.qk_norm == "head":  # per head, over head_dim, before RoPE (Qwen3)
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))
        if self.rope_theta is not None:
            if positions is None:
                positions = ops.iota(x, axis=1)
            if self._inv_freq is not None:
                q, k = self._scaled_rope(q, positions), self._scaled_rope(k, positions)
            else:
                q = ops.rope(q, positions, self.rope_theta, self.rotary_dim, self.rope_interleaved)
                k = ops.rope(k, positions, self.rope_theta, self.rotary_dim, self.rope_interleaved)
        if cache is not None:
            k, v = ops.kv_write(cache[0], k, axis=2), ops.kv_write(cache[1], v, axis=2)
        o = ops.attention(q, k, v, mask, causal=self.causal, scale=self.scale)
        out = self.o_proj(merge_heads(o))
        return out if cache is None else (out, (k, v))

    def _scaled_rope(self, x, positions):
        """``x * cos + rotate_half(x) * sin`` at angles ``positions * inv_freq`` (f32, as HF's
        rotary embedding: ``freqs = inv_freq @ positions``, ``emb = cat(freqs, freqs)``)."""
        half = self.head_dim // 2
        pos = ops.expand_dims(ops.cast(positions, "float32"), -1)                # [..., seq, 1]
        freqs = pos * ops.constant(self._inv_freq)                               # [..., seq, half]
        emb = ops.concat([freqs, freqs], -1)                                     # [..., seq, head_dim]
        if len(emb.shape) == 3:                                                  # [batch, seq, d] positions
            emb = ops.expand_dims(emb, 1)
        cos, sin = ops.cos(emb), ops.sin(emb)
        if x.dtype.name != "f32":
            cos, sin = ops.cast(cos, x.dtype), ops.cast(sin, x.dtype)
        x1, x2 = ops.slice(x, -1, 0, half), ops.slice(x, -1, half, None)
        rotated = ops.concat([ops.neg(x2), x1], -1)
        return x * cos + rotated * sin


ROPE_TYPES = ("default", "linear", "llama3")


def rope_inv_freq(head_dim: int, theta: float, rope_scaling: dict | None = None) -> np.ndarray:
    """The rotary inverse frequencies ``1 / theta ** (2i / head_dim)`` (f32, as HF computes them),
    rescaled by a Hugging Face ``rope_scaling`` dict (``linear``, ``llama3``; see ``Attention``)."""
    from ..ops.nn import rope_inv_freq as base
    inv = base(head_dim, theta)
    rs = rope_scaling or {}
    rtype = rs.get("rope_type", rs.get("type", "default"))
    if rtype == "default":
        return inv
    if rtype not in ROPE_TYPES:
        raise SparsecError(f"rope_scaling type {rtype!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
    factor = np.float32(rs["factor"])
    if rtype == "linear":
        return (inv / factor).astype(np.float32)
    low, high = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
    old = float(rs["original_max_position_embeddings"])
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = (np.float32(2 * math.pi) / inv).astype(np.float32)
    scaled = np.where(wavelen > low_wavelen, inv / factor, inv).astype(np.float32)
    smooth = ((np.float32(old) / wavelen - np.float32(low)) / np.float32(high - low)).astype(np.float32)
    smoothed = ((1 - smooth) * scaled / factor + smooth * scaled).astype(np.float32)
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)
