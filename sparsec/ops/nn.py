"""Neural-network ops of the sc dialect: RMS and layer normalization, rotary position
embedding (RoPE) and scaled-dot-product attention with grouped-query heads.

Numerics follow the Hugging Face reference models: statistics, angles and softmax are computed
in float32 (float64 for f64 inputs) and the result is rounded once to the input dtype.

Layouts (chosen once, used by ``sc.nn.Attention`` and the kernels):

- ``rope``: ``x`` is ``[..., seq, head_dim]``, normally ``[batch, heads, seq, head_dim]``;
  ``positions`` is ``[seq]`` (shared by the batch) or ``[batch, seq]`` (aligned with x's first
  and second-to-last dims).
- ``attention``: ``q [B, Hq, S, D]``, ``k [B, Hkv, L, D]``, ``v [B, Hkv, L, Dv]`` ->
  ``[B, Hq, S, Dv]``; query head ``h`` reads kv head ``h // (Hq / Hkv)``.
"""
from __future__ import annotations

import math

import numpy as np

from ..frontend.tracer import as_tensor, emit
from ..ir import Bool, Float, Int, TensorType, as_dtype, broadcast_shapes, dim_div, register
from ..ir.dtypes import result_dtype
from ._util import require_float, require_int, same_dtype, tensor

__all__ = ["rms_norm", "layer_norm", "rope", "attention", "kv_write"]


def _compute_dtype(dt: np.dtype) -> type:
    """float64 stays float64; everything else (f32, f16, bf16) is computed in float32."""
    return np.float64 if dt == np.float64 else np.float32


def _check_dim(a, b, what: str) -> None:
    if a != b:
        raise ValueError(f"{what}: {a} != {b}")


def _check_last_dim_param(x: TensorType, w: TensorType | None, what: str) -> None:
    if w is None:
        return
    tensor(w, what)
    require_float(w, what)
    if w.rank != 1:
        raise ValueError(f"{what} must be 1-d [{x.shape[-1]}], got {w.pretty()}")
    _check_dim(w.shape[0], x.shape[-1], f"{what} length vs the last dim of x")


# ---------------------------------------------------------------------------------------------
# normalization

@register
class RMSNorm:
    """``x * rsqrt(mean(x**2, -1) + eps) * w`` over the last axis (Llama's RMSNorm): the
    normalization is computed in f32, rounded to x's dtype, then multiplied by ``w``; the result
    has the promoted dtype of x and w (like ``weight * hidden.to(input_dtype)`` in HF)."""
    name = "sc.rms_norm"
    operands = ("x", "w")
    attrs = {"eps": Float(1e-6, doc="added to the mean square")}
    traits = ("pure",)

    def infer(x, w, *, eps):
        tensor(x, "x")
        require_float(x, "x")
        if x.rank == 0:
            raise ValueError("x must have at least one dim")
        _check_last_dim_param(x, w, "weight")
        return x.with_dtype(result_dtype(x.dtype, w.dtype))

    def reference(x, w, *, eps):
        ct = _compute_dtype(x.dtype)
        xf = x.astype(ct)
        var = np.mean(xf * xf, axis=-1, keepdims=True)
        normed = (xf / np.sqrt(var + ct(eps))).astype(x.dtype)
        out_dt = result_dtype(as_dtype(x.dtype), as_dtype(w.dtype)).np
        ct2 = _compute_dtype(out_dt)
        return (w.astype(ct2) * normed.astype(ct2)).astype(out_dt)


@register
class LayerNorm:
    """``(x - mean) / sqrt(var + eps) * w + b`` over the last axis (biased variance, like
    ``torch.nn.LayerNorm``); computed in f32, result in x's dtype. ``w`` and ``b`` are optional
    (a bias needs a weight)."""
    name = "sc.layer_norm"
    operands = ("x", "w?", "b?")
    attrs = {"eps": Float(1e-5, doc="added to the variance")}
    traits = ("pure",)

    def infer(x, w, b, *, eps):
        tensor(x, "x")
        require_float(x, "x")
        if x.rank == 0:
            raise ValueError("x must have at least one dim")
        _check_last_dim_param(x, w, "weight")
        _check_last_dim_param(x, b, "bias")
        return x

    def reference(x, w, b, *, eps):
        ct = _compute_dtype(x.dtype)
        xf = x.astype(ct)
        mu = np.mean(xf, axis=-1, keepdims=True)
        d = xf - mu
        var = np.mean(d * d, axis=-1, keepdims=True)
        y = d / np.sqrt(var + ct(eps))
        if w is not None:
            y = y * w.astype(ct)
        if b is not None:
            y = y + b.astype(ct)
        return y.astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# rotary position embedding

def rope_inv_freq(rotary_dim: int, theta: float) -> np.ndarray:
    """``1 / theta ** (2i / rotary_dim)`` for ``i < rotary_dim / 2``, in float32 as HF computes it."""
    exps = np.arange(0, rotary_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(rotary_dim)
    return (1.0 / (np.float32(theta) ** exps)).astype(np.float32)


@register
class Rope:
    """Rotary position embedding of ``x [..., seq, head_dim]`` at integer ``positions``
    (``[seq]``, or ``[batch, seq]`` aligned with x's first dim). Only the first ``rotary_dim`` dims
    (0 = all) rotate; the rest pass through. ``interleaved=False`` rotates the halves
    ``(x[i], x[i + r/2])`` (HF Llama / GPT-NeoX ``rotate_half``); ``interleaved=True`` rotates the
    pairs ``(x[2i], x[2i+1])`` (GPT-J). Pair ``i`` turns by ``pos * theta ** (-2i / r)``; angles,
    cos and sin are f32 and the result is rounded once to x's dtype."""
    name = "sc.rope"
    operands = ("x", "positions")
    attrs = {"theta": Float(10000.0, doc="frequency base"),
             "rotary_dim": Int(0, doc="leading dims of head_dim that rotate; 0 = all"),
             "interleaved": Bool(False, doc="GPT-J pairs (2i, 2i+1) instead of halves (i, i+r/2)")}
    traits = ("pure",)

    def infer(x, positions, *, theta, rotary_dim, interleaved):
        tensor(x, "x")
        require_float(x, "x")
        tensor(positions, "positions")
        require_int(positions, "positions")
        if x.rank < 2:
            raise ValueError(f"x must be [..., seq, head_dim], got {x.pretty()}")
        head_dim = x.shape[-1]
        if not isinstance(head_dim, int):
            raise ValueError(f"head_dim (last dim of x) must be static, got {head_dim!r}")
        r = rotary_dim or head_dim
        if r < 0 or r > head_dim or r % 2:
            raise ValueError(f"rotary_dim {rotary_dim} must be even and in [0, head_dim={head_dim}]")
        if not theta > 0:
            raise ValueError(f"theta must be > 0, got {theta}")
        if positions.rank == 1:
            _check_dim(positions.shape[0], x.shape[-2], "positions [seq] vs the seq dim of x")
        elif positions.rank == 2:
            if x.rank < 3:
                raise ValueError(f"positions [batch, seq] need x [batch, ..., seq, head_dim], got {x.pretty()}")
            _check_dim(positions.shape[1], x.shape[-2], "positions [batch, seq] vs the seq dim of x")
            if positions.shape[0] not in (1, x.shape[0]):
                raise ValueError(f"positions batch {positions.shape[0]} vs the first dim of x {x.shape[0]}")
        else:
            raise ValueError(f"positions must be [seq] or [batch, seq], got {positions.pretty()}")
        return x

    def reference(x, positions, *, theta, rotary_dim, interleaved):
        r = rotary_dim or x.shape[-1]
        inv = rope_inv_freq(r, theta)                                   # [r/2]
        pos = positions.astype(np.float32)
        if positions.ndim == 2:                                         # [B, S] -> [B, 1.., S]
            pos = pos.reshape((pos.shape[0],) + (1,) * (x.ndim - 3) + (pos.shape[1],))
        ang = (pos[..., None] * inv).astype(np.float32)                 # [..., S, r/2]
        cos, sin = np.cos(ang), np.sin(ang)
        ct = _compute_dtype(x.dtype)
        xf = x.astype(ct)
        out = xf.copy()
        if interleaved:
            a, b = xf[..., 0:r:2], xf[..., 1:r:2]
            out[..., 0:r:2] = a * cos - b * sin
            out[..., 1:r:2] = b * cos + a * sin
        else:
            h = r // 2
            a, b = xf[..., :h], xf[..., h:r]
            out[..., :h] = a * cos - b * sin
            out[..., h:r] = b * cos + a * sin
        return out.astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# attention

@register
class Attention:
    """Scaled-dot-product attention ``softmax(q k^T * scale + mask) v`` with grouped-query heads.

    ``q [B, Hq, S, D]``, ``k [B, Hkv, L, D]``, ``v [B, Hkv, L, Dv]`` -> ``[B, Hq, S, Dv]``;
    ``Hq % Hkv == 0`` and query head ``h`` uses kv head ``h // (Hq / Hkv)``. ``mask`` (optional)
    broadcasts to ``[B, Hq, S, L]``: boolean (True = may attend) or float (added to the scores).
    ``causal``: query ``i`` sees keys ``j <= i + (L - S)`` (the last query sees every key, as in
    decoding with a KV cache). ``scale = 0`` means ``1/sqrt(D)``. Scores and softmax are f32; a
    query that may see no key at all yields zeros.
    """
    name = "sc.attention"
    operands = ("q", "k", "v", "mask?")
    attrs = {"causal": Bool(False, doc="mask keys after the query's position (offset L - S)"),
             "scale": Float(0.0, doc="score scale; 0 = 1/sqrt(head_dim)")}
    traits = ("pure",)

    def infer(q, k, v, mask, *, causal, scale):
        for n, t in (("q", q), ("k", k), ("v", v)):
            tensor(t, n)
            require_float(t, n)
            if t.rank != 4:
                raise ValueError(f"{n} must be rank 4 [batch, heads, seq, head_dim], got {t.pretty()}")
        same_dtype(q, k, v)
        B, Hq, S, D = q.shape
        _check_dim(k.shape[0], B, "batch of k vs q")
        _check_dim(v.shape[0], B, "batch of v vs q")
        _check_dim(k.shape[3], D, "head_dim of k vs q")
        _check_dim(v.shape[1], k.shape[1], "kv heads of v vs k")
        _check_dim(v.shape[2], k.shape[2], "key length of v vs k")
        Hkv = k.shape[1]
        if dim_div(Hq, Hkv) is None:
            raise ValueError(f"query heads {Hq} must be a multiple of kv heads {Hkv}")
        out = (B, Hq, S, v.shape[3])
        if mask is not None:
            tensor(mask, "mask")
            if not (mask.dtype.is_bool or mask.dtype.is_float):
                raise TypeError(f"mask must be boolean (True = attend) or float (additive), got {mask.dtype}")
            full = (B, Hq, S, k.shape[2])
            try:
                ok = mask.rank <= 4 and broadcast_shapes(mask.shape, full) == full
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"mask {mask.pretty()} does not broadcast to [batch, q_heads, seq, keys] = "
                                 f"{TensorType(full, mask.dtype).pretty()}")
        return TensorType(out, q.dtype)

    def reference(q, k, v, mask, *, causal, scale):
        B, Hq, S, D = q.shape
        Hkv, L = k.shape[1], k.shape[2]
        group = Hq // Hkv
        ct = _compute_dtype(q.dtype)
        qf, kf, vf = q.astype(ct), k.astype(ct), v.astype(ct)
        if group > 1:  # kv head j serves query heads j*group .. j*group+group-1
            kf, vf = np.repeat(kf, group, axis=1), np.repeat(vf, group, axis=1)
        s = ct(scale) if scale else ct(1.0 / math.sqrt(D))
        scores = np.matmul(qf, np.swapaxes(kf, -1, -2)) * s          # [B, Hq, S, L]
        allowed = np.ones((1, 1, S, L), dtype=bool)
        if causal:
            allowed = allowed & (np.arange(L)[None, :] <= np.arange(S)[:, None] + (L - S))
        if mask is not None:
            if mask.dtype == np.bool_:
                allowed = allowed & mask
            else:
                scores = scores + mask.astype(ct)
        scores = np.where(allowed, scores, ct(-np.inf))
        m = np.max(scores, axis=-1, keepdims=True)
        dead = np.isneginf(m)                                           # no visible key (NaN propagates)
        e = np.exp(scores - np.where(dead, ct(0), m))
        e = np.where(dead, ct(0), e)
        denom = np.sum(e, axis=-1, keepdims=True)
        p = e / np.where(denom == 0, ct(1), denom)
        return np.matmul(p, vf).astype(q.dtype)


# ---------------------------------------------------------------------------------------------
# traced API

@register
class KvWrite:
    """The KV-cache update: ``cache`` with its last ``S`` positions along ``axis`` replaced by
    ``new`` (``cache [..., L, ...]``, ``new [..., S, ...]``, all other dims equal, ``S <= L``).

    A decoding step hands the model a cache view of ``L = past + S`` positions whose first
    ``past`` hold earlier keys; the step's new keys fill the rest and attention reads all ``L``.
    The runtime may do the update in place when the cache input is donated to the step.
    """
    name = "sc.kv_write"
    operands = ("cache", "new")
    attrs = {"axis": Int(2, doc="the position axis")}
    traits = ("pure",)

    def infer(cache, new, *, axis):
        tensor(cache, "cache")
        tensor(new, "new")
        same_dtype(cache, new)
        if cache.rank != new.rank:
            raise ValueError(f"cache and new must have the same rank, got {cache.pretty()} and {new.pretty()}")
        if not -cache.rank <= axis < cache.rank:
            raise ValueError(f"axis {axis} out of range for rank {cache.rank}")
        ax = axis % cache.rank
        for i, (a, b) in enumerate(zip(cache.shape, new.shape)):
            if i != ax:
                _check_dim(b, a, f"dim {i} of new vs cache")
        L, S = cache.shape[ax], new.shape[ax]
        if isinstance(L, int) and isinstance(S, int) and S > L:
            raise ValueError(f"new has {S} positions, more than the cache's {L}")
        return cache

    def reference(cache, new, *, axis):
        ax = axis % cache.ndim
        L, S = cache.shape[ax], new.shape[ax]
        if S > L:
            raise ValueError(f"new has {S} positions, more than the cache's {L}")
        out = cache.copy()
        idx = [slice(None)] * cache.ndim
        idx[ax] = slice(L - S, L)
        out[tuple(idx)] = new
        return out


def rms_norm(x, weight, eps: float = 1e-6):
    """Llama RMSNorm of ``x`` over its last axis, scaled by ``weight``."""
    return emit("sc.rms_norm", as_tensor(x), as_tensor(weight), eps=eps)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """LayerNorm over the last axis; ``weight``/``bias`` optional (a bias needs a weight)."""
    if bias is not None and weight is None:
        raise ValueError("layer_norm: a bias needs a weight (pass ones)")
    return emit("sc.layer_norm", as_tensor(x), weight, bias, eps=eps)


def rope(x, positions, theta: float = 10000.0, rotary_dim: int = 0, interleaved: bool = False):
    """Rotary embedding of ``x [batch, heads, seq, head_dim]`` at ``positions`` ``[seq]`` or ``[batch, seq]``."""
    return emit("sc.rope", as_tensor(x), as_tensor(positions), theta=theta, rotary_dim=rotary_dim,
                interleaved=interleaved)


def attention(q, k, v, mask=None, causal: bool = False, scale: float | None = None):
    """Scaled-dot-product attention (see ``sc.attention``); ``scale=None`` means ``1/sqrt(head_dim)``."""
    return emit("sc.attention", as_tensor(q), as_tensor(k), as_tensor(v), mask, causal=causal,
                scale=0.0 if scale is None else scale)


def kv_write(cache, new, axis: int = 2):
    """``cache`` with its last positions along ``axis`` replaced by ``new`` (see ``sc.kv_write``)."""
    return emit("sc.kv_write", as_tensor(cache), as_tensor(new), axis=axis)
