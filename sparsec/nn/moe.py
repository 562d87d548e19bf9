"""``sc.nn.MoE``: a Mixture-of-Experts feed-forward block with the router families of Mixtral,
Qwen2-MoE, Qwen3-MoE / OLMoE and DeepSeek-V3, and their Hugging Face parameter names.

By default it traces to the plain *dense* formulation a user writes: every expert runs on every
token and its output is masked by a dense ``[T, E]`` routing-weight matrix (the top-k weights
scattered into zeros). That is the form the sparse-activation pass recognises and rewrites into
``sc.moe_dispatch -> sc.moe_permute -> sc.grouped_matmul -> sc.moe_combine``;
``formulation="sparse"`` traces that sparse chain directly so the two can be checked equal.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..frontend.tracer import Parameter
from ..ir import dim_prod
from .layers import ACTIVATIONS, MLP, Linear, init_weight
from .module import Module, ModuleList

#: per naming scheme: expert projection names (gate, up, down) and the shared expert's name
NAMINGS = {
    "qwen": (("gate_proj", "up_proj", "down_proj"), "shared_expert"),
    "mixtral": (("w1", "w3", "w2"), "shared_expert"),
    "deepseek": (("gate_proj", "up_proj", "down_proj"), "shared_experts"),
}
ROUTERS = ("softmax", "sigmoid")
FORMULATIONS = ("dense", "sparse")


class Router(Module):
    """The router ``gate``: ``weight`` ``[E, hidden]`` (logits = x @ weight.T) and, for
    DeepSeek-V3, ``e_score_correction_bias`` ``[E]`` (used for expert *selection* only)."""

    def __init__(self, hidden: int, num_experts: int, score_bias: bool = False, seed: int | None = None):
        super().__init__()
        self.weight = Parameter(init_weight((num_experts, hidden), hidden, seed))
        # DeepSeek-V3 starts the correction bias at zero; training (or a checkpoint) moves it
        self.e_score_correction_bias = Parameter(np.zeros(num_experts, np.float32)) if score_bias else None

    def forward(self, x):
        return ops.linear(x, self.weight)


class MoE(Module):
    """Routed experts (SwiGLU MLPs) plus optional shared expert(s).

    ``router="softmax"``: probabilities = softmax(logits) over all experts, top-k of them; with
    ``norm_topk_prob`` the k weights are renormalised to sum to 1 (Mixtral, Qwen3-MoE; Qwen2-MoE
    and OLMoE publish ``norm_topk_prob=False``).

    ``router="sigmoid"`` (DeepSeek-V3): scores = sigmoid(logits); selection uses
    ``scores + gate.e_score_correction_bias`` (``score_bias=True``) restricted to the
    ``topk_group`` best of ``n_group`` expert groups (a group's score is the sum of its two best
    biased scores; experts of other groups are masked to -inf, as transformers 5.x does); the weights
    are the *unbiased* scores of the chosen experts, renormalised (denominator + 1e-20) when
    ``norm_topk_prob``.

    Both: weights are multiplied by ``routed_scaling_factor``. ``shared_ffn > 0`` adds a shared
    SwiGLU expert of that intermediate size to every token, unscaled, or scaled by
    ``sigmoid(shared_expert_gate(x))`` when ``shared_expert_gate`` (Qwen2-MoE).

    ``naming`` picks published checkpoint names: ``"qwen"`` (Qwen2/3-MoE, OLMoE:
    ``experts.{e}.gate_proj/up_proj/down_proj``, ``shared_expert``), ``"mixtral"``
    (``experts.{e}.w1/w3/w2``), ``"deepseek"`` (``shared_experts``); ``expert_names`` (gate, up,
    down) and ``shared_name`` override them. The router is always ``gate.weight``.

    Input ``[tokens, hidden]`` or ``[batch, seq, hidden]`` (flattened to tokens and back).
    """

    def __init__(self, hidden: int, ffn: int, num_experts: int, top_k: int, router: str = "softmax",
                 norm_topk_prob: bool = True, shared_ffn: int = 0, shared_expert_gate: bool = False,
                 n_group: int = 1, topk_group: int = 1, routed_scaling_factor: float = 1.0,
                 score_bias: bool = False, naming: str = "qwen", expert_names: tuple[str, str, str] | None = None,
                 shared_name: str | None = None, activation: str = "silu", formulation: str = "dense",
                 seed: int | None = None):
        super().__init__()
        if router not in ROUTERS:
            raise ValueError(f"MoE: router must be one of {', '.join(ROUTERS)}, got {router!r}")
        if naming not in NAMINGS:
            raise ValueError(f"MoE: naming must be one of {', '.join(NAMINGS)}, got {naming!r}")
        if formulation not in FORMULATIONS:
            raise ValueError(f"MoE: formulation must be one of {', '.join(FORMULATIONS)}, got {formulation!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"MoE: unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"MoE: top_k must be in [1, num_experts={num_experts}], got {top_k}")
        if n_group < 1 or num_experts % n_group:
            raise ValueError(f"MoE: n_group={n_group} must divide num_experts={num_experts}")
        if n_group > 1:
            if router != "sigmoid":
                raise ValueError("MoE: group-limited routing (n_group > 1) is the DeepSeek-V3 sigmoid router")
            if num_experts // n_group < 2:
                raise ValueError(f"MoE: group scores sum each group's top 2 experts; {num_experts} experts in "
                                 f"{n_group} groups leaves {num_experts // n_group} per group")
            if not 1 <= topk_group <= n_group:
                raise ValueError(f"MoE: topk_group must be in [1, n_group={n_group}], got {topk_group}")
            if topk_group * (num_experts // n_group) < top_k:
                raise ValueError(f"MoE: topk_group={topk_group} groups of {num_experts // n_group} experts "
                                 f"cannot supply top_k={top_k} experts")
        if shared_expert_gate and shared_ffn <= 0:
            raise ValueError("MoE: shared_expert_gate needs a shared expert (shared_ffn > 0)")
        self.hidden, self.ffn, self.num_experts, self.top_k = hidden, ffn, num_experts, top_k
        self.router, self.norm_topk_prob = router, norm_topk_prob
        self.n_group, self.topk_group = n_group, topk_group
        self.routed_scaling_factor = float(routed_scaling_factor)
        self.activation, self.formulation = activation, formulation
        default_names, default_shared = NAMINGS[naming]
        self.expert_names = tuple(expert_names or default_names)
        if len(self.expert_names) != 3:
            raise ValueError(f"MoE: expert_names must be (gate, up, down), got {self.expert_names}")
        self.shared_name = shared_name or default_shared

        s = (lambda k: None if seed is None else seed * 1009 + k)
        self.gate = Router(hidden, num_experts, score_bias, s(0))
        self.experts = ModuleList(MLP(hidden, ffn, activation, names=self.expert_names, seed=s(1 + e))
                                  for e in range(num_experts))
        self.shared_ffn = shared_ffn
        if shared_ffn > 0:  # registered only under its published name (shared_expert / shared_experts)
            setattr(self, self.shared_name, MLP(hidden, shared_ffn, activation, names=self.expert_names,
                                                seed=s(num_experts + 1)))
        self.shared_expert_gate = Linear(hidden, 1, seed=s(num_experts + 2)) if shared_expert_gate else None

    # -- routing -----------------------------------------------------------------------------
    def route(self, x):
        """``(topk_weights [T, k], topk_ids [T, k] int64)`` for tokens ``x [T, hidden]``."""
        logits = self.gate(x)
        if self.router == "softmax":
            probs = ops.softmax(logits, -1)
            weights, ids = ops.topk(probs, self.top_k)
            if self.norm_topk_prob:
                weights = weights / ops.sum(weights, -1, True)
        else:
            scores = ops.sigmoid(logits)
            choice = scores
            if self.gate.e_score_correction_bias is not None:
                choice = scores + self.gate.e_score_correction_bias
            if self.n_group > 1:
                choice = self._limit_to_groups(choice)
            _, ids = ops.topk(choice, self.top_k)
            weights = ops.take_along_axis(scores, ids, -1)
            if self.norm_topk_prob:
                weights = weights / (ops.sum(weights, -1, True) + 1e-20)
        if self.routed_scaling_factor != 1.0:
            weights = weights * self.routed_scaling_factor
        return weights, ids

    def _limit_to_groups(self, choice):
        """Keep the experts of the ``topk_group`` best groups; the others' scores become -inf (so a
        negative biased score in a kept group still wins over every expert of a dropped group)."""
        t, g = choice.shape[0], self.n_group
        grouped = ops.reshape(choice, (t, g, self.num_experts // g))            # [T, G, E/G]
        best2, _ = ops.topk(grouped, 2)
        group_scores = ops.sum(best2, -1)                                       # [T, G]
        _, group_ids = ops.topk(group_scores, self.topk_group)                  # [T, topk_group]
        keep = ops.scatter(_zeros((t, g), choice.dtype), group_ids,
                           _full((t, self.topk_group), 1.0, choice.dtype), -1)  # 1.0 for kept groups
        kept = ops.where(ops.reshape(keep, (t, g, 1)) > 0.5, grouped, float("-inf"))
        return ops.reshape(kept, (t, self.num_experts))

    # -- experts -----------------------------------------------------------------------------
    def _dense_experts(self, x, weights, ids):
        """Every expert on every token, masked by the dense routing weights (zeros elsewhere)."""
        dense = ops.scatter(_zeros((x.shape[0], self.num_experts), weights.dtype), ids, weights, -1)  # [T, E]
        out = None
        for e, expert in enumerate(self.experts):
            y = expert(x) * dense[:, e:e + 1]
            out = y if out is None else out + y
        return out

    def _sparse_experts(self, x, weights, ids):
        """Tokens grouped per expert: dispatch, permute, grouped matmuls, weighted combine."""
        order, offsets = ops.moe_dispatch(ids, self.num_experts)
        xp = ops.moe_permute(x, order, self.top_k)
        g, u, d = ([getattr(ex, n).weight for ex in self.experts] for n in self.expert_names)
        w_gate, w_up, w_down = ops.stack(g, 0), ops.stack(u, 0), ops.stack(d, 0)
        h = ACTIVATIONS[self.activation](ops.grouped_matmul(xp, w_gate, offsets)) \
            * ops.grouped_matmul(xp, w_up, offsets)
        return ops.moe_combine(ops.grouped_matmul(h, w_down, offsets), order, weights)

    def forward(self, x):
        lead = tuple(x.shape[:-1])
        if len(lead) != 1:
            x = ops.reshape(x, (dim_prod(lead), x.shape[-1]))
        weights, ids = self.route(x)
        experts = self._dense_experts if self.formulation == "dense" else self._sparse_experts
        out = experts(x, weights, ids)
        if self.shared_ffn > 0:
            shared = getattr(self, self.shared_name)(x)
            if self.shared_expert_gate is not None:
                shared = shared * ops.sigmoid(self.shared_expert_gate(x))
            out = out + shared
        if len(lead) != 1:
            out = ops.reshape(out, lead + (out.shape[-1],))
        return out


def _full(shape, value, dtype):
    """``np.full(shape, value)`` in traced code (a broadcast scalar, so symbolic dims are fine)."""
    return ops.broadcast_to(ops.constant(value, dtype), shape)


def _zeros(shape, dtype):
    return _full(shape, 0.0, dtype)
