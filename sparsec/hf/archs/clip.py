"""CLIP image encoders as ``sc.nn.CLIPVisionModel``: ``forward(pixel_values)`` ->
``last_hidden_state``, ``pooler_output`` (and ``image_embeds`` where there is a projection).

- ``clip_vision_model``: a ``CLIPVisionModel`` checkpoint (tensors with or without the
  ``vision_model.`` prefix: transformers 4 wrote it, transformers 5 does not), or a
  ``CLIPVisionModelWithProjection`` (``visual_projection.weight`` present: adds ``image_embeds``).
- ``clip``: the image half of a full ``CLIPModel`` checkpoint: ``vision_config`` builds the tower,
  ``visual_projection`` gives ``image_embeds = visual_projection(pooler_output)`` (unnormalized,
  as ``CLIPModel.get_image_features``); the text tower, ``text_projection`` and ``logit_scale``
  are ignored (compile the text side as its own model if needed).
"""
from __future__ import annotations

from ...nn.vision import CLIPVisionModel
from ..config import expect, get, refuse
from ._vision import VISION_ACTS, check_heads, sub_config

MODEL_TYPES = ("clip_vision_model", "clip")


def build_tower(vc: dict, projection_dim: int | None = None) -> CLIPVisionModel:
    """A ``CLIPVisionModel`` from a ``clip_vision_model`` config dict (transformers' defaults)."""
    act = expect(vc, "hidden_act", VISION_ACTS, "quick_gelu")
    refuse(vc, "is_encoder_decoder", ok=(None, False))
    hidden, heads = get(vc, "hidden_size", 768), get(vc, "num_attention_heads", 12)
    check_heads(vc, hidden, heads)
    return CLIPVisionModel(hidden=hidden, layers=get(vc, "num_hidden_layers", 12), heads=heads,
                           intermediate=get(vc, "intermediate_size", 3072), image_size=get(vc, "image_size", 224),
                           patch_size=get(vc, "patch_size", 32), channels=get(vc, "num_channels", 3),
                           eps=float(get(vc, "layer_norm_eps", 1e-5)), activation=act,
                           projection_dim=projection_dim, seed=None)


def build(config: dict, weight_names=None) -> CLIPVisionModel:
    if config["model_type"] == "clip":
        return build_tower(sub_config(config, "vision_config", "clip_vision_model"),
                           int(get(config, "projection_dim", 512)))
    projected = weight_names is not None and "visual_projection.weight" in weight_names
    return build_tower(config, int(get(config, "projection_dim", 512)) if projected else None)


def rename_weight(name: str, config: dict):
    if name.startswith(("text_model.", "text_projection.")) or name in ("logit_scale", "logit_bias"):
        return None  # the text tower of a full CLIPModel
    return name[len("vision_model."):] if name.startswith("vision_model.") else name
