"""DeepSeek-V3 and DeepSeek-V2 (``model_type`` ``deepseek_v3`` / ``deepseek_v2``) as
``transformers`` 5 defines them: multi-head latent attention (``sc.nn.MLA``, with a latent KV
cache), dense MLPs in the first ``first_k_dense_replace`` layers (and where ``layer %
moe_layer_freq != 0``), MoE layers elsewhere:

- V3: sigmoid router with ``e_score_correction_bias`` for selection, ``n_group``/``topk_group``
  group-limited selection (group score = sum of its top-2 biased scores, experts of other groups
  masked to -inf), ``norm_topk_prob``, ``routed_scaling_factor``;
- V2: softmax router, ``topk_method`` ``"greedy"`` or ``"group_limited_greedy"`` (group score
  = its best expert's probability, other groups masked to 0), weights times
  ``routed_scaling_factor``, never renormalised (``norm_topk_prob=true`` is refused: transformers
  ignores it, DeepSeek's own code does not);
- ``n_shared_experts * moe_intermediate_size`` shared expert (``mlp.shared_experts``).

``build(config)`` returns an ``sc.nn.MLACausalLM`` whose ``state_dict()`` names are the
checkpoint's (``model.layers.{i}.self_attn.kv_a_proj_with_mqa.weight``,
``model.layers.{i}.mlp.experts.{e}.gate_proj.weight``, ...); ``sc.load_hf`` also reads
transformers' fused ``mlp.experts.gate_up_proj [E, 2I, H]`` / ``mlp.experts.down_proj [E, H, I]``
(``sparsec.hf.weights``), and ``rename_weight`` drops DeepSeek's multi-token-prediction layers
(``model.layers.{num_hidden_layers}...``, which transformers ignores too).

Config fields that would change the model and are not implemented (FP8 ``quantization_config``,
other rope types, ``mlp_bias``, unknown fields) raise ``UnsupportedConfig`` (an
``HFConfigError``) naming them.
"""
from __future__ import annotations

import re

import numpy as np

from ... import ops
from ...nn.layers import MLP
from ...nn.mla import MLA, MLACausalLM, rope_parameters
from ...nn.moe import MoE, _full, _zeros
from ...nn.transformer import DecoderLayer
from ..config import HFConfigError
from ._common import ACTIVATIONS

MODEL_TYPES = ("deepseek_v3", "deepseek_v2")

#: fields that do not change the inference model (metadata, training, generation settings)
IGNORED = {
    "architectures", "model_type", "transformers_version", "auto_map", "_name_or_path", "torch_dtype", "dtype",
    "bos_token_id", "eos_token_id", "pad_token_id", "use_cache", "initializer_range", "attention_dropout",
    "output_router_logits", "router_aux_loss_coef", "aux_loss_alpha", "seq_aux", "ep_size", "pretraining_tp",
    "num_nextn_predict_layers", "num_mtp_layers", "max_position_embeddings",
    # MLA expands the latent to every query head; DeepSeek's code never reads this (transformers
    # gives the same model when it is >= num_attention_heads and fails otherwise)
    "num_key_value_heads",
    "output_attentions", "output_hidden_states", "return_dict", "id2label", "label2id", "chunk_size_feed_forward",
    "is_encoder_decoder", "problem_type", "tokenizer_class", "task_specific_params", "generation_config",
}
#: fields this builder reads (and checks)
HANDLED = {
    "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
    "num_attention_heads", "n_shared_experts", "n_routed_experts", "routed_scaling_factor",
    "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "v_head_dim", "qk_nope_head_dim", "qk_head_dim", "head_dim",
    "n_group", "topk_group", "num_experts_per_tok", "first_k_dense_replace", "moe_layer_freq", "norm_topk_prob",
    "hidden_act", "rms_norm_eps", "rope_parameters", "rope_scaling", "rope_theta", "rope_interleave",
    "attention_bias", "mlp_bias", "topk_method", "scoring_func", "quantization_config", "tie_word_embeddings",
}


#: transformers 5.24's config defaults, used for fields a config.json leaves out (as transformers does)
DEFAULTS = {
    "deepseek_v3": dict(vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
                        num_hidden_layers=61, num_attention_heads=128, n_shared_experts=1, n_routed_experts=256,
                        routed_scaling_factor=2.5, kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64,
                        v_head_dim=128, qk_nope_head_dim=128, n_group=8, topk_group=4, num_experts_per_tok=8,
                        first_k_dense_replace=3, norm_topk_prob=True, hidden_act="silu", max_position_embeddings=4096,
                        rms_norm_eps=1e-6, tie_word_embeddings=False, rope_interleave=True, attention_bias=False),
    "deepseek_v2": dict(vocab_size=102400, hidden_size=4096, intermediate_size=11008, moe_intermediate_size=1407,
                        num_hidden_layers=32, num_attention_heads=32, n_shared_experts=2, n_routed_experts=64,
                        routed_scaling_factor=1.0, kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64,
                        v_head_dim=128, qk_nope_head_dim=128, n_group=None, topk_group=None, num_experts_per_tok=None,
                        first_k_dense_replace=0, norm_topk_prob=False, hidden_act="silu", max_position_embeddings=2048,
                        rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                        topk_method="greedy"),
}


class UnsupportedConfig(HFConfigError, ValueError):
    """A DeepSeek config this importer cannot build exactly."""


def _fail(model_type: str, msg: str):
    raise UnsupportedConfig(f"config.json (model_type {model_type!r}): {msg}")


def rope_dict(config: dict) -> dict:
    """The rope parameters as transformers 5 standardizes them: ``rope_parameters``, or the
    legacy ``rope_scaling`` (``type`` -> ``rope_type``) plus ``rope_theta``."""
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    rope.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    rope.setdefault("rope_type", rope.get("type", "default"))
    rope.pop("type", None)
    return rope


def with_defaults(config: dict) -> dict:
    """``config`` with transformers' defaults for the fields it leaves out."""
    return {**DEFAULTS[config["model_type"]], **config}


def check_config(config: dict) -> str:
    """Refuse what ``build`` cannot reproduce exactly; returns the model type."""
    mt = config.get("model_type")
    if mt not in MODEL_TYPES:
        raise UnsupportedConfig(f"model_type {mt!r} is not a DeepSeek MLA model ({', '.join(MODEL_TYPES)})")
    unknown = sorted(k for k in config if k not in IGNORED and k not in HANDLED)
    if unknown:
        _fail(mt, f"config fields not supported (they may change the model): {', '.join(unknown)}")
    config = with_defaults(config)
    if config.get("quantization_config"):
        q = config["quantization_config"]
        _fail(mt, f"quantization_config {q.get('quant_method', q) if isinstance(q, dict) else q!r} is not supported "
                  f"(dequantize the checkpoint to bf16/fp32 first)")
    act = config.get("hidden_act", "silu")
    if act not in ACTIVATIONS:
        _fail(mt, f"hidden_act {act!r} is not supported (supported: {', '.join(ACTIVATIONS)})")
    rd = config.get("qk_rope_head_dim", 64)
    if config.get("head_dim") not in (None, rd):
        _fail(mt, f"head_dim={config['head_dim']} differs from qk_rope_head_dim={rd}")
    qk = config.get("qk_nope_head_dim", 128) + rd
    if config.get("qk_head_dim") not in (None, qk):
        _fail(mt, f"qk_head_dim={config['qk_head_dim']} differs from qk_nope_head_dim + qk_rope_head_dim = {qk}")
    if config.get("mlp_bias"):
        _fail(mt, "mlp_bias=true is not supported")
    if (config.get("moe_layer_freq") or 1) < 1:
        _fail(mt, f"moe_layer_freq={config['moe_layer_freq']} must be >= 1")
    try:
        rope_parameters(rd, rope_dict(config), config.get("max_position_embeddings"))
    except ValueError as e:
        _fail(mt, str(e))
    if config.get("n_routed_experts"):
        if not config.get("num_experts_per_tok"):
            _fail(mt, "num_experts_per_tok is missing (needed with n_routed_experts)")
        method, scoring = config.get("topk_method"), config.get("scoring_func")
        if mt == "deepseek_v3":
            if scoring not in (None, "sigmoid"):
                _fail(mt, f"scoring_func {scoring!r} is not supported (DeepSeek-V3 routes with 'sigmoid')")
            if method not in (None, "noaux_tc"):
                _fail(mt, f"topk_method {method!r} is not supported (DeepSeek-V3 routes with 'noaux_tc')")
        else:
            if scoring not in (None, "softmax"):
                _fail(mt, f"scoring_func {scoring!r} is not supported (DeepSeek-V2 routes with 'softmax')")
            if (method or "greedy") not in ("greedy", "group_limited_greedy"):
                _fail(mt, f"topk_method {method!r} is not supported (supported: 'greedy', 'group_limited_greedy')")
            if config.get("norm_topk_prob"):
                _fail(mt, "norm_topk_prob=true is not supported (transformers' DeepSeek-V2 ignores it while "
                          "DeepSeek's own code renormalises: the model would be ambiguous)")
    return mt


class DeepseekMoE(MoE):
    """``sc.nn.MoE`` with the DeepSeek routers exactly as transformers 5 writes them: V3's
    group-limited selection masks the other groups' experts to -inf (as ``MoE`` does),
    and V2's ``group_limited_greedy`` ranks groups by their best softmax probability."""

    def __init__(self, *args, v2_groups: tuple[int, int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if v2_groups is not None:
            g, kg = v2_groups
            if g < 1 or self.num_experts % g:
                raise ValueError(f"DeepseekMoE: n_group={g} must divide n_routed_experts={self.num_experts}")
            if not 1 <= kg <= g or kg * (self.num_experts // g) < self.top_k:
                raise ValueError(f"DeepseekMoE: topk_group={kg} of n_group={g} cannot supply top_k={self.top_k}")
        self.v2_groups = v2_groups

    def _groups_kept(self, group_scores, topk_group):
        t, g = group_scores.shape
        _, group_ids = ops.topk(group_scores, topk_group)
        keep = ops.scatter(_zeros((t, g), group_scores.dtype), group_ids,
                           _full((t, topk_group), 1.0, group_scores.dtype), -1)
        return ops.reshape(keep, (t, g, 1)) > 0.5

    def _limit_to_groups(self, choice):
        t, g = choice.shape[0], self.n_group
        grouped = ops.reshape(choice, (t, g, self.num_experts // g))
        best2, _ = ops.topk(grouped, 2)
        kept = ops.where(self._groups_kept(ops.sum(best2, -1), self.topk_group), grouped, -np.inf)
        return ops.reshape(kept, (t, self.num_experts))

    def route(self, x):
        if self.v2_groups is None:
            return super().route(x)
        g, kg = self.v2_groups
        probs = ops.softmax(self.gate(x), -1)
        t = probs.shape[0]
        grouped = ops.reshape(probs, (t, g, self.num_experts // g))
        kept = ops.where(self._groups_kept(ops.max(grouped, -1), kg), grouped, 0.0)
        weights, ids = ops.topk(ops.reshape(kept, (t, self.num_experts)), self.top_k)
        if self.routed_scaling_factor != 1.0:
            weights = weights * self.routed_scaling_factor
        return weights, ids


def is_moe_layer(config: dict, i: int) -> bool:
    """DeepSeek's rule: routed experts from ``first_k_dense_replace`` on, every ``moe_layer_freq``-th layer."""
    return bool(config.get("n_routed_experts")) and i >= (config.get("first_k_dense_replace") or 0) \
        and i % (config.get("moe_layer_freq") or 1) == 0


def build(config: dict, seed: int | None = None) -> MLACausalLM:
    """An ``sc.nn`` model of a ``deepseek_v3`` / ``deepseek_v2`` ``config.json`` (dict); weights
    are random until loaded (``sc.load_hf`` does both)."""
    mt = check_config(config)
    c = with_defaults(config)
    try:
        layers = _layers(c, mt, seed)
    except ValueError as e:  # sizes the modules refuse (groups that do not divide the experts, ...)
        _fail(mt, str(e))
    return MLACausalLM(c["vocab_size"], c["hidden_size"], layers, c["rms_norm_eps"], bool(c["tie_word_embeddings"]),
                       config=dict(heads=c["num_attention_heads"], kv_heads=c["num_attention_heads"], model_type=mt,
                                   kv_lora_rank=c["kv_lora_rank"], qk_rope_head_dim=c["qk_rope_head_dim"],
                                   activation=ACTIVATIONS[c["hidden_act"]]),
                       seed=None if seed is None else seed * 1000)


def _layers(c: dict, mt: str, seed: int | None) -> list[DecoderLayer]:
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    eps = c["rms_norm_eps"]
    act = ACTIVATIONS[c["hidden_act"]]
    rope = rope_dict(c)
    interleave = True if mt == "deepseek_v2" else bool(c["rope_interleave"])
    s = (lambda k: None if seed is None else seed * 1000 + k)
    layers = []
    for i in range(c["num_hidden_layers"]):
        attn = MLA(hidden, heads, c["q_lora_rank"], c["kv_lora_rank"], c["qk_nope_head_dim"],
                   c["qk_rope_head_dim"], c["v_head_dim"], rope=rope, rope_interleave=interleave,
                   max_position_embeddings=c["max_position_embeddings"], bias=bool(c["attention_bias"]),
                   seed=s(10 * i + 1))
        if is_moe_layer(c, i):
            shared = (c["n_shared_experts"] or 0) * c["moe_intermediate_size"]
            common = dict(hidden=hidden, ffn=c["moe_intermediate_size"], num_experts=c["n_routed_experts"],
                          top_k=c["num_experts_per_tok"], shared_ffn=shared, naming="deepseek", activation=act,
                          routed_scaling_factor=c["routed_scaling_factor"], seed=s(10 * i + 2))
            if mt == "deepseek_v3":
                mlp = DeepseekMoE(router="sigmoid", score_bias=True, n_group=c["n_group"] or 1,
                                  topk_group=c["topk_group"] or 1, norm_topk_prob=bool(c["norm_topk_prob"]),
                                  **common)
            else:
                grouped = c["topk_method"] == "group_limited_greedy"
                mlp = DeepseekMoE(router="softmax", norm_topk_prob=False,
                                  v2_groups=(c["n_group"] or 1, c["topk_group"] or 1) if grouped else None,
                                  **common)
        else:
            mlp = MLP(hidden, c["intermediate_size"], act, gated=True, seed=s(10 * i + 2))
        layers.append(DecoderLayer(hidden, attn, mlp, eps))
    return layers


_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


def rename_weight(name: str, config: dict) -> str | None:
    """Checkpoint name -> parameter name (``sc.load_hf``'s hook): the same, except that the
    multi-token-prediction modules DeepSeek-V3 publishes as layers ``num_hidden_layers`` and up
    are dropped (None), as transformers drops them."""
    m = _LAYER.match(name)
    if m and int(m.group(1)) >= config["num_hidden_layers"]:
        return None
    return name
