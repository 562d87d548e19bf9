"""MoE ops of the sparse dispatch form: tokens grouped per expert, no padding.

The sparse-activation pass rewrites the dense formulation (every expert on every token, masked
by a dense ``[T, E]`` routing-weight matrix) into this chain, as llama.cpp (``mul_mat_id``) and
vLLM (fused MoE) run it::

    order, offsets = sc.moe_dispatch(topk_ids, num_experts=E)   # counting sort of (token, slot) by expert
    x_perm = sc.moe_permute(x, order, top_k=k)                   # [T*k, H]: row p is token order[p] // k
    h      = sc.grouped_matmul(x_perm, w_stacked, offsets)       # rows of expert e times w[e].T
    y      = sc.moe_combine(h, order, topk_weights)              # [T, H]: weighted sum over each token's k rows

``sc.moe_gated_grouped_matmul`` is the fused first half of a gated expert MLP
(``act(x @ w_gate[e].T) * (x @ w_up[e].T)`` per expert), for the expert-fusion pass.

The dispatch is one step a distributed variant can replace (permute -> exchange -> compute ->
exchange back -> combine): ``grouped_matmul`` only needs ``offsets`` for the experts it holds.
"""
from __future__ import annotations

import numpy as np

from ..frontend.tracer import as_tensor, emit
from ..ir import Bool, Int, Str, TensorType, dim_mul, register
from ._util import I64, require_float, require_int, tensor, weight

__all__ = ["softmax_topk", "moe_dispatch", "moe_permute", "grouped_matmul", "moe_gated_grouped_matmul", "moe_combine"]


def _rows(t: TensorType, what: str, rank: int = 2) -> TensorType:
    if tensor(t, what).rank != rank:
        raise ValueError(f"{what} must have rank {rank}, got {t.pretty()}")
    return t


def _check_offsets(offsets: np.ndarray, rows: int) -> None:
    """Run-time check: offsets start at 0, never decrease and end at the number of rows."""
    if offsets[0] != 0 or offsets[-1] != rows or np.any(np.diff(offsets) < 0):
        raise ValueError(f"offsets must rise from 0 to {rows} (the row count), got {offsets.tolist()}")


def _acc(a: np.ndarray) -> np.ndarray:
    """Accumulation precision: f16/bf16 in f32 (what kernels do), wider types as they are."""
    return a.astype(np.float32) if a.dtype.itemsize < 4 else a


def _weight_type(w, x: TensorType, what: str) -> tuple:
    """``w`` ``[E, N, K]`` as a tensor (same dtype as ``x``) or a quantized weight; returns (E, N, K)."""
    weight(w, what)
    if w.rank != 3:
        raise ValueError(f"{what} must be [experts, out, in] (rank 3), got {w.pretty()}")
    if isinstance(w, TensorType) and w.dtype != x.dtype:
        raise TypeError(f"{what} dtype {w.dtype} differs from the activations' {x.dtype} (insert sc.cast)")
    if isinstance(w, TensorType) and not all(isinstance(d, int) for d in w.shape):
        raise ValueError(f"{what} must have static dims, got {w.pretty()}")
    return w.shape


@register
class SoftmaxTopK:
    """The softmax router's weights and expert ids in one op (vLLM's ``topk_softmax``):
    ``p = softmax(x, axis=-1)``, then its ``k`` largest probabilities and their int64 indices
    along the last axis as ``sc.topk`` orders them (descending, ties to the lower index, NaN
    first); with ``normalize`` the ``k`` values are divided by their sum (Mixtral, Qwen3-MoE).
    Exactly ``sc.softmax`` -> ``sc.topk`` (-> ``sc.sum(axes=[-1], keepdims)`` -> ``sc.div``): the
    reference is that composition, and the ``fuse-router`` pass forms the op from it."""
    name = "sc.softmax_topk"
    operands = ("x",)
    attrs = {"k": Int(doc="experts per token, 1 <= k <= the last dim"),
             "normalize": Bool(False, doc="divide the k weights by their sum")}
    traits = ("pure",)

    def infer(x, *, k, normalize):
        tensor(x, "x")
        require_float(x, "x")
        if x.rank == 0:
            raise ValueError("softmax_topk needs a tensor of rank >= 1")
        n = x.shape[-1]
        if not isinstance(n, int):
            raise ValueError(f"softmax_topk needs a static last dim, got symbolic {n}")
        if not 1 <= k <= n:
            raise ValueError(f"k={k} must be in [1, {n}] (the last dim)")
        shape = tuple(x.shape[:-1]) + (k,)
        return TensorType(shape, x.dtype), TensorType(shape, I64)

    def reference(x, *, k, normalize):
        from ..ir.opdef import REGISTRY
        p = REGISTRY["sc.softmax"].reference(x, axis=-1)
        vals, ids = REGISTRY["sc.topk"].reference(p, k=k, axis=-1, largest=True)
        if normalize:
            total = REGISTRY["sc.sum"].reference(vals, axes=(-1,), keepdims=True)
            vals = REGISTRY["sc.div"].reference(vals, total)
        return vals, ids


@register
class MoeDispatch:
    """Group the ``T*k`` (token, slot) pairs by expert: a stable counting sort of
    ``topk_ids.reshape(-1)``. ``order[p]`` is the flat index ``token*k + slot`` of row ``p``;
    rows of expert ``e`` are ``order[offsets[e]:offsets[e+1]]``, in increasing flat index."""
    name = "sc.moe_dispatch"
    operands = ("topk_ids",)
    attrs = {"num_experts": Int(doc="number of experts E; ids must lie in [0, E)")}
    traits = ("pure",)

    def infer(topk_ids, *, num_experts):
        _rows(topk_ids, "topk_ids")
        require_int(topk_ids, "topk_ids")
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        t, k = topk_ids.shape
        return TensorType((dim_mul(t, k),), I64), TensorType((num_experts + 1,), I64)

    def reference(topk_ids, *, num_experts):
        flat = topk_ids.reshape(-1).astype(np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= num_experts):
            bad = flat[(flat < 0) | (flat >= num_experts)][0]
            raise ValueError(f"expert id {bad} is outside [0, {num_experts})")
        counts = np.bincount(flat, minlength=num_experts)
        offsets = np.zeros(num_experts + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        # a stable sort by expert id is the counting sort's result: pairs of one expert keep flat order
        order = np.argsort(flat, kind="stable").astype(np.int64)
        return order, offsets


@register
class MoePermute:
    """Gather token rows into expert order: ``x_perm[p] = x[order[p] // top_k]``."""
    name = "sc.moe_permute"
    operands = ("x", "order")
    attrs = {"top_k": Int(doc="experts per token k; order indexes the T*k (token, slot) pairs")}
    traits = ("pure",)

    def infer(x, order, *, top_k):
        _rows(x, "x")
        _rows(order, "order", 1)
        require_int(order, "order")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        m = dim_mul(x.shape[0], top_k)
        if order.shape[0] != m:
            raise ValueError(f"order has {order.shape[0]} entries, expected tokens*top_k = {m}")
        return TensorType((m, x.shape[1]), x.dtype)

    def reference(x, order, *, top_k):
        return x[order // top_k]


@register
class GroupedMatmul:
    """Per-expert matmul over contiguous row groups: rows ``offsets[e]:offsets[e+1]`` of ``x``
    times ``w[e].T`` (``w`` is ``[E, N, K]``, the Hugging Face ``[out, in]`` layout per expert)."""
    name = "sc.grouped_matmul"
    operands = ("x", "w", "offsets")
    traits = ("pure",)

    def infer(x, w, offsets):
        _rows(x, "x")
        require_float(x, "x")
        e, n, k = _weight_type(w, x, "w")
        if x.shape[1] != k:
            raise ValueError(f"x has {x.shape[1]} columns but each expert weight takes {k} inputs ({w.pretty()})")
        _rows(offsets, "offsets", 1)
        require_int(offsets, "offsets")
        if offsets.shape[0] != e + 1:
            raise ValueError(f"offsets must have experts+1 = {e + 1} entries, got {offsets.pretty()}")
        return TensorType((x.shape[0], n), x.dtype)

    def reference(x, w, offsets):
        _check_offsets(offsets, x.shape[0])
        xa, wa = _acc(x), _acc(np.asarray(w))
        out = np.zeros((x.shape[0], wa.shape[1]), xa.dtype)
        for e in range(wa.shape[0]):
            lo, hi = offsets[e], offsets[e + 1]
            if hi > lo:
                out[lo:hi] = xa[lo:hi] @ wa[e].T
        return out.astype(x.dtype)


_ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu")


@register
class MoeGatedGroupedMatmul:
    """Fused first half of a gated expert MLP over expert-grouped rows:
    ``act(x[r] @ w_gate[e].T) * (x[r] @ w_up[e].T)`` for rows ``r`` of expert ``e``
    (SwiGLU with ``activation="silu"``). The expert-fusion pass forms it from two
    ``sc.grouped_matmul`` sharing ``x`` and ``offsets``; ``sc.grouped_matmul`` with the down
    projection completes the expert."""
    name = "sc.moe_gated_grouped_matmul"
    operands = ("x", "w_gate", "w_up", "offsets")
    attrs = {"activation": Str("silu", choices=_ACTIVATIONS)}
    traits = ("pure",)

    def infer(x, w_gate, w_up, offsets, *, activation):
        out = GroupedMatmul.infer(x, w_gate, offsets)
        if tuple(w_up.shape) != tuple(w_gate.shape) or type(w_up) is not type(w_gate):
            raise ValueError(f"w_up {w_up.pretty()} must match w_gate {w_gate.pretty()}")
        GroupedMatmul.infer(x, w_up, offsets)
        return out

    def reference(x, w_gate, w_up, offsets, *, activation):
        from .elementwise import UNARY
        g = GroupedMatmul.reference(_acc(x), w_gate, offsets)
        u = GroupedMatmul.reference(_acc(x), w_up, offsets)
        return (UNARY[activation].reference(g) * u).astype(x.dtype)


@register
class MoeCombine:
    """Weighted sum of each token's ``k`` expert rows back in token order:
    ``out[t] = sum_j topk_weights[t, j] * y_perm[inv[t*k + j]]`` where ``inv`` inverts ``order``
    (slots summed in order ``j = 0..k-1``). ``T`` and ``k`` come from ``topk_weights``."""
    name = "sc.moe_combine"
    operands = ("y_perm", "order", "topk_weights")
    traits = ("pure",)

    def infer(y_perm, order, topk_weights):
        _rows(y_perm, "y_perm")
        require_float(y_perm, "y_perm")
        _rows(order, "order", 1)
        require_int(order, "order")
        _rows(topk_weights, "topk_weights")
        if topk_weights.dtype != y_perm.dtype:
            raise TypeError(f"topk_weights dtype {topk_weights.dtype} differs from y_perm's {y_perm.dtype} "
                            f"(insert sc.cast)")
        t, k = topk_weights.shape
        m = dim_mul(t, k)
        if y_perm.shape[0] != m or order.shape[0] != m:
            raise ValueError(f"y_perm has {y_perm.shape[0]} rows and order {order.shape[0]} entries; "
                             f"both must be tokens*top_k = {m} (from topk_weights {topk_weights.pretty()})")
        return TensorType((t, y_perm.shape[1]), y_perm.dtype)

    def reference(y_perm, order, topk_weights):
        t, k = topk_weights.shape
        m = order.shape[0]
        if sorted(order.tolist()) != list(range(m)):
            raise ValueError(f"order is not a permutation of 0..{m - 1}")
        inv = np.empty(m, np.int64)
        inv[order] = np.arange(m)
        rows = _acc(y_perm)[inv].reshape(t, k, y_perm.shape[1])
        w = _acc(topk_weights)
        out = np.zeros((t, y_perm.shape[1]), rows.dtype)
        for j in range(k):
            out += w[:, j:j + 1] * rows[:, j]
        return out.astype(y_perm.dtype)


# ---------------------------------------------------------------------------------------------
# traced API

def softmax_topk(x, k: int, normalize: bool = False):
    """``(weights [..., k], ids [..., k] int64)``: the top-k of ``softmax(x, -1)``, renormalized
    to sum to 1 with ``normalize``."""
    return emit("sc.softmax_topk", as_tensor(x), k=k, normalize=normalize)


def moe_dispatch(topk_ids, num_experts: int):
    """``(order, offsets)``: the (token, slot) pairs sorted by expert, and each expert's first row."""
    return emit("sc.moe_dispatch", as_tensor(topk_ids), num_experts=num_experts)


def moe_permute(x, order, top_k: int):
    """Token rows in expert order: ``x[order // top_k]``, ``[T*k, H]``."""
    return emit("sc.moe_permute", as_tensor(x), as_tensor(order), top_k=top_k)


def grouped_matmul(x, w, offsets):
    """Rows ``offsets[e]:offsets[e+1]`` of ``x`` times ``w[e].T``; ``w`` is ``[E, out, in]``."""
    return emit("sc.grouped_matmul", as_tensor(x), as_tensor(w), as_tensor(offsets))


def moe_gated_grouped_matmul(x, w_gate, w_up, offsets, activation: str = "silu"):
    """``act(x @ w_gate[e].T) * (x @ w_up[e].T)`` over each expert's rows (fused gated expert half)."""
    return emit("sc.moe_gated_grouped_matmul", as_tensor(x), as_tensor(w_gate), as_tensor(w_up),
                as_tensor(offsets), activation=activation)


def moe_combine(y_perm, order, topk_weights):
    """``[T, H]``: each token's ``k`` expert rows weighted by ``topk_weights`` and summed."""
    return emit("sc.moe_combine", as_tensor(y_perm), as_tensor(order), as_tensor(topk_weights))
