"""SigLIP image encoders as ``sc.nn.SiglipVisionModel``: ``forward(pixel_values)`` ->
``last_hidden_state`` (after ``post_layernorm``) and, with ``vision_use_head`` (the default),
``pooler_output`` from the multi-head attention-pool ``head``.

- ``siglip_vision_model``: a ``SiglipVisionModel`` checkpoint (with or without the
  ``vision_model.`` prefix).
- ``siglip``: the image half of a full ``SiglipModel`` checkpoint (``vision_config``); its image
  features are the ``pooler_output`` (``SiglipModel.get_image_features`` has no projection). The
  text tower, ``logit_scale`` and ``logit_bias`` are ignored.
"""
from __future__ import annotations

from ...nn.vision import SiglipVisionModel
from ..config import expect, get, refuse
from ._vision import VISION_ACTS, check_heads, sub_config

MODEL_TYPES = ("siglip_vision_model", "siglip")


def build_tower(vc: dict) -> SiglipVisionModel:
    """A ``SiglipVisionModel`` from a ``siglip_vision_model`` config dict (transformers' defaults)."""
    act = expect(vc, "hidden_act", VISION_ACTS, "gelu_pytorch_tanh")
    refuse(vc, "is_encoder_decoder", ok=(None, False))
    hidden, heads = get(vc, "hidden_size", 768), get(vc, "num_attention_heads", 12)
    check_heads(vc, hidden, heads)
    return SiglipVisionModel(hidden=hidden, layers=get(vc, "num_hidden_layers", 12), heads=heads,
                             intermediate=get(vc, "intermediate_size", 3072), image_size=get(vc, "image_size", 224),
                             patch_size=get(vc, "patch_size", 16), channels=get(vc, "num_channels", 3),
                             eps=float(get(vc, "layer_norm_eps", 1e-6)), activation=act,
                             use_head=bool(get(vc, "vision_use_head", True)), seed=None)


def build(config: dict) -> SiglipVisionModel:
    if config["model_type"] == "siglip":
        return build_tower(sub_config(config, "vision_config", "siglip_vision_model"))
    return build_tower(config)


def rename_weight(name: str, config: dict):
    if name.startswith("text_model.") or name in ("logit_scale", "logit_bias"):
        return None  # the text tower of a full SiglipModel
    return name[len("vision_model."):] if name.startswith("vision_model.") else name
