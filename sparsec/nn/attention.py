"""Multi-head self-attention with Hugging Face Llama/Qwen names (``q_proj``, ``k_proj``, ``v_proj``,
``o_proj``, optional ``q_norm``/``k_norm``): grouped-query heads, rotary positions, causal or
bidirectional."""
from __future__ import annotations

from .. import ops
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
                 rope_interleaved: bool = False, scale: float | None = None, seed: int | None = None):
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
        if qk_norm:
            self.q_norm = RMSNorm(head_dim, norm_eps)
            self.k_norm = RMSNorm(head_dim, norm_eps)
        self.qk_norm = qk_norm

    def forward(self, x, positions=None, mask=None, cache=None):
        """``cache=(k_cache, v_cache)``, each ``[batch, kv_heads, ctx, head_dim]`` with the earlier
        positions first: the new keys/values fill its last ``seq`` positions (``sc.kv_write``),
        attention reads all ``ctx``, and ``(out, (k_cache', v_cache'))`` is returned."""
        b, s = x.shape[0], x.shape[1]
        q = ops.reshape(self.q_proj(x), (b, s, self.num_heads, self.head_dim))
        k = ops.reshape(self.k_proj(x), (b, s, self.num_kv_heads, self.head_dim))
        v = ops.reshape(self.v_proj(x), (b, s, self.num_kv_heads, self.head_dim))
        if self.qk_norm:  # per head, over head_dim, before RoPE (Qwen3)
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))
        if self.rope_theta is not None:
            if positions is None:
                positions = ops.iota(x, axis=1)
            q = ops.rope(q, positions, self.rope_theta, self.rotary_dim, self.rope_interleaved)
            k = ops.rope(k, positions, self.rope_theta, self.rotary_dim, self.rope_interleaved)
        if cache is not None:
            k, v = ops.kv_write(cache[0], k, axis=2), ops.kv_write(cache[1], v, axis=2)
        o = ops.attention(q, k, v, mask, causal=self.causal, scale=self.scale)
        out = self.o_proj(merge_heads(o))
        return out if cache is None else (out, (k, v))
