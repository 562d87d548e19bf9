"""Shared pieces of the decoder architectures: attention and model sizes from config.json."""
from __future__ import annotations

from ..config import check_no_sliding_window, expect, get, refuse, require, rope_settings

ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh",
               "gelu_new": "gelu_tanh", "relu": "relu"}


def decoder_sizes(config: dict) -> dict:
    """The ``sc.nn.CausalLM`` keyword arguments every Llama-like decoder shares."""
    hidden = require(config, "hidden_size")
    heads = require(config, "num_attention_heads")
    theta, scaling = rope_settings(config)
    check_no_sliding_window(config)
    act = expect(config, "hidden_act", tuple(ACTIVATIONS), "silu")
    refuse(config, "is_encoder_decoder", ok=(None, False))
    refuse(config, "pretraining_tp", ok=(None, 1), why="tensor-parallel pretraining slices")
    refuse(config, "attention_logit_softcapping", ok=(None,))
    refuse(config, "final_logit_softcapping", ok=(None,))
    refuse(config, "partial_rotary_factor", ok=(None, 1, 1.0), why="partial rotary embedding")
    rp = config.get("rope_parameters")
    if isinstance(rp, dict) and rp.get("partial_rotary_factor") not in (None, 1, 1.0):
        refuse({**config, "rope_parameters.partial_rotary_factor": rp["partial_rotary_factor"]},
               "rope_parameters.partial_rotary_factor", ok=(None, 1, 1.0), why="partial rotary embedding")
    return dict(vocab=require(config, "vocab_size"), hidden=hidden, layers=require(config, "num_hidden_layers"),
                heads=heads, kv_heads=get(config, "num_key_value_heads", heads),
                head_dim=get(config, "head_dim", hidden // heads), rope_theta=theta, rope_scaling=scaling,
                norm_eps=float(get(config, "rms_norm_eps", 1e-6)),
                tie_word_embeddings=bool(get(config, "tie_word_embeddings", False)),
                activation=ACTIVATIONS[act])
