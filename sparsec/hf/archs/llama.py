"""Dense decoders: Llama (``llama``), Mistral (``mistral``: Llama without biases; a sliding window
that would take effect is refused), Qwen2 (``qwen2``: q/k/v bias) and Qwen3 (``qwen3``:
per-head QK-norm). Checkpoint names are the models' own (``model.layers.{i}.self_attn.q_proj``...)."""
from __future__ import annotations

from ...nn import CausalLM
from ..config import get, require
from ._common import decoder_sizes

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def build(config: dict) -> CausalLM:
    mt = config["model_type"]
    kw = decoder_sizes(config)
    ffn = require(config, "intermediate_size")
    if mt == "llama":
        bias = bool(get(config, "attention_bias", False))
        kw.update(attention_bias=bias, o_bias=bias)
        mlp_bias = bool(get(config, "mlp_bias", False))
    elif mt == "mistral":  # no biases anywhere
        kw.update(attention_bias=False, o_bias=False)
        mlp_bias = False
    elif mt == "qwen2":  # q/k/v always carry a bias, o_proj never
        kw.update(attention_bias=True, o_bias=False)
        mlp_bias = False
    else:  # qwen3
        bias = bool(get(config, "attention_bias", False))
        kw.update(attention_bias=bias, o_bias=bias, qk_norm="head")
        mlp_bias = False
    mlp = None
    if mlp_bias:
        from ...nn import MLP
        mlp = (lambda i: MLP(kw["hidden"], ffn, kw["activation"], gated=True, bias=True))
    return CausalLM(ffn=ffn, mlp=mlp, seed=None, **kw)
