"""Mixture-of-Experts decoders: Mixtral (``mixtral``), Qwen2-MoE (``qwen2_moe``: shared expert
with a sigmoid gate, q/k/v bias), Qwen3-MoE (``qwen3_moe``: per-head QK-norm) and OLMoE
(``olmoe``: QK-norm over the whole q/k projections). All route with softmax top-k.

Published checkpoints name experts per expert (Mixtral
``block_sparse_moe.experts.{e}.w1/w3/w2``, the others ``mlp.experts.{e}.gate_proj/up_proj/down_proj``);
transformers 5 models hold them fused (``mlp.experts.gate_up_proj [E, 2I, H]``,
``mlp.experts.down_proj [E, H, I]``), which the loader splits per expert. Mixtral tensors under
``mlp.`` (transformers 5 naming) are renamed to the published ``block_sparse_moe.`` names.
"""
from __future__ import annotations

import re

from ...nn import MLP, CausalLM, MoE
from ..config import HFConfigError, get, refuse, require
from ._common import decoder_sizes

MODEL_TYPES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe")


def _num_experts(config):
    n = get(config, "num_experts", get(config, "num_local_experts"))
    if n is None:
        raise HFConfigError(f"config.json (model_type {config['model_type']!r}): missing required field "
                            f"'num_experts' (or 'num_local_experts')")
    return int(n)


def sparse_layers(config: dict, layers: int) -> list[bool]:
    """Which layers are MoE: Qwen's ``decoder_sparse_step`` and ``mlp_only_layers`` (every layer
    for Mixtral and OLMoE)."""
    if config["model_type"] in ("mixtral", "olmoe"):
        return [True] * layers
    step = int(get(config, "decoder_sparse_step", 1))
    only = set(get(config, "mlp_only_layers", []))
    bad = sorted(i for i in only if not 0 <= i < layers)
    if bad:
        raise HFConfigError(f"config.json: mlp_only_layers {bad} outside 0..{layers - 1}")
    if step < 1:
        raise HFConfigError(f"config.json: decoder_sparse_step = {step} (expected >= 1)")
    return [i not in only and (i + 1) % step == 0 for i in range(layers)]


def build(config: dict) -> CausalLM:
    mt = config["model_type"]
    kw = decoder_sizes(config)
    hidden, act = kw["hidden"], kw["activation"]
    experts, top_k = _num_experts(config), int(require(config, "num_experts_per_tok"))
    refuse(config, "router_jitter_noise", ok=(None, 0, 0.0), why="training-time noise")
    shared_ffn, shared_gate, mlp_name, naming = 0, False, "mlp", "qwen"
    dense_ffn = get(config, "intermediate_size")
    if mt == "mixtral":
        ffn, norm_topk, naming, mlp_name = require(config, "intermediate_size"), True, "mixtral", "block_sparse_moe"
        kw.update(attention_bias=False)
    elif mt == "qwen2_moe":
        ffn = require(config, "moe_intermediate_size")
        norm_topk = bool(get(config, "norm_topk_prob", False))
        shared_ffn, shared_gate = int(require(config, "shared_expert_intermediate_size")), True
        if shared_ffn <= 0:
            raise HFConfigError(f"config.json (model_type 'qwen2_moe'): shared_expert_intermediate_size = "
                                f"{shared_ffn} is not supported by sparsec (expected > 0)")
        kw.update(attention_bias=bool(get(config, "qkv_bias", True)), o_bias=False)
    elif mt == "qwen3_moe":
        ffn = require(config, "moe_intermediate_size")
        norm_topk = bool(get(config, "norm_topk_prob", False))
        bias = bool(get(config, "attention_bias", False))
        kw.update(attention_bias=bias, o_bias=bias, qk_norm="head")
    else:  # olmoe
        ffn = require(config, "intermediate_size")
        norm_topk = bool(get(config, "norm_topk_prob", False))
        refuse(config, "clip_qkv", ok=(None,), why="q/k/v clipping")
        bias = bool(get(config, "attention_bias", False))
        kw.update(attention_bias=bias, o_bias=bias, qk_norm="full")
    if not 1 <= top_k <= experts:
        raise HFConfigError(f"config.json (model_type {mt!r}): num_experts_per_tok = {top_k} must be in "
                            f"1..{experts}")
    sparse = sparse_layers(config, kw["layers"])

    def mlp(i):
        if not sparse[i]:
            return MLP(hidden, require(config, "intermediate_size") if dense_ffn is None else dense_ffn, act)
        return MoE(hidden, ffn, experts, top_k, router="softmax", norm_topk_prob=norm_topk, shared_ffn=shared_ffn,
                   shared_expert_gate=shared_gate, naming=naming, activation=act)

    return CausalLM(ffn=ffn, mlp=mlp, mlp_name=mlp_name, seed=None, **kw)


_MIXTRAL_RENAME = re.compile(r"^(model\.layers\.\d+)\.mlp\.(gate\.weight|experts\.\d+\.(gate_proj|up_proj|down_proj)"
                             r"\.weight)$")
_MIXTRAL_EXPERT = {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}


def rename_weight(name: str, config: dict) -> str:
    """Mixtral under transformers 5 names (``mlp.gate``, ``mlp.experts.{e}.gate_proj``, after the
    fused split) -> the published ``block_sparse_moe.gate``, ``block_sparse_moe.experts.{e}.w1``."""
    if config["model_type"] != "mixtral":
        return name
    m = _MIXTRAL_RENAME.match(name)
    if not m:
        return name
    rest = m.group(2)
    if m.group(3):
        rest = rest.replace(m.group(3), _MIXTRAL_EXPERT[m.group(3)])
    return f"{m.group(1)}.block_sparse_moe.{rest}"
