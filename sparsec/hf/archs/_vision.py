"""Shared pieces of the vision encoder importers (``vit``, ``clip``, ``siglip``, ``llava``)."""
from __future__ import annotations

from ...nn.vision import VISION_ACTIVATIONS
from ..config import HFConfigError, get

#: transformers ``hidden_act`` values the vision encoders implement
VISION_ACTS = tuple(VISION_ACTIVATIONS)


def check_heads(config: dict, hidden: int, heads: int) -> None:
    if hidden % heads:
        raise HFConfigError(f"config.json (model_type {config.get('model_type')!r}): hidden_size {hidden} is not "
                            f"divisible by num_attention_heads {heads}")


def sub_config(config: dict, key: str, model_type: str) -> dict:
    """A nested config (``vision_config``...) as a dict with its ``model_type`` (default ``model_type``)."""
    sub = get(config, key, {})
    if not isinstance(sub, dict):
        raise HFConfigError(f"config.json (model_type {config.get('model_type')!r}): {key} must be an object, "
                            f"got {type(sub).__name__}")
    sub = dict(sub)
    sub.setdefault("model_type", model_type)
    return sub
