"""ViT encoders (``vit``) as ``sc.nn.ViTModel``: ``forward(pixel_values)`` -> ``last_hidden_state``
(and ``pooler_output`` when the checkpoint has ``pooler.dense``). Checkpoints saved from a task
model (``ViTForImageClassification``...) prefix the encoder with ``vit.``; the prefix is dropped and
the task heads (``classifier.*``, the masked-image-modeling ``decoder.*`` and ``mask_token``) are
ignored. Defaults are transformers' ``ViTConfig`` ones."""
from __future__ import annotations

from ...nn.vision import ViTModel
from ..config import expect, get, refuse
from ._vision import VISION_ACTS, check_heads

MODEL_TYPES = ("vit",)


def build(config: dict, weight_names=None) -> ViTModel:
    act = expect(config, "hidden_act", VISION_ACTS, "gelu")
    pooler_act = expect(config, "pooler_act", VISION_ACTS, "tanh")
    refuse(config, "is_encoder_decoder", ok=(None, False))
    hidden, heads = get(config, "hidden_size", 768), get(config, "num_attention_heads", 12)
    check_heads(config, hidden, heads)
    pooler = True if weight_names is None else any(n.startswith(("pooler.", "vit.pooler.")) for n in weight_names)
    return ViTModel(hidden=hidden, layers=get(config, "num_hidden_layers", 12), heads=heads,
                    intermediate=get(config, "intermediate_size", 3072), image_size=get(config, "image_size", 224),
                    patch_size=get(config, "patch_size", 16), channels=get(config, "num_channels", 3),
                    eps=float(get(config, "layer_norm_eps", 1e-12)), activation=act,
                    qkv_bias=bool(get(config, "qkv_bias", True)), pooler=pooler,
                    pooler_size=get(config, "pooler_output_size", hidden), pooler_act=pooler_act, seed=None)


def rename_weight(name: str, config: dict):
    if name.startswith(("classifier.", "decoder.")) or name.endswith("embeddings.mask_token"):
        return None  # task heads and the masked-image-modeling token: not part of the encoder outputs
    return name[len("vit."):] if name.startswith("vit.") else name
