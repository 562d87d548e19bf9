"""LLaVA vision-language models (``llava``) as ``sc.nn.LlavaForConditionalGeneration``: a CLIP or
SigLIP vision tower (``vision_config``), the ``multi_modal_projector`` and a language model
(``text_config``: any causal LM model type sparsec imports as an ``sc.nn.CausalLM``, e.g.
``llama``, ``qwen2``, ``qwen3``, ``mixtral``).

Parameter names are the ones ``save_pretrained`` writes (and published llava-hf checkpoints use):
``vision_tower.*``, ``multi_modal_projector.*``, ``language_model.model.*``,
``language_model.lm_head.weight``. Also read: transformers 4's ``vision_tower.vision_model.*``
and transformers 5's in-memory names (``model.vision_tower.*``, ``model.multi_modal_projector.*``,
``model.language_model.*``, ``lm_head.weight``). The language model's own ``rename_weight``
applies under ``language_model.``.
"""
from __future__ import annotations

import inspect

from ...nn import CausalLM
from ...nn.llava import LlavaForConditionalGeneration
from ..config import HFConfigError, expect, get, refuse
from . import clip, siglip
from ._vision import VISION_ACTS, sub_config

MODEL_TYPES = ("llava",)

TOWERS = {"clip_vision_model": clip.build_tower, "siglip_vision_model": siglip.build_tower}


def _text_arch(config: dict):
    from .. import architectures
    tc = sub_config(config, "text_config", "llama")
    # as LlavaConfig: the model ties lm_head to the embeddings when either config asks for it
    tc["tie_word_embeddings"] = bool(get(config, "tie_word_embeddings", False) or get(tc, "tie_word_embeddings", False))
    found, _ = architectures()
    mt = tc["model_type"]
    if mt not in found or mt == "llava":
        raise HFConfigError(f"config.json (model_type 'llava'): text_config model_type {mt!r} is not supported by "
                            f"sparsec (supported: {', '.join(sorted(k for k in found if k != 'llava'))})")
    return tc, found[mt]


def _text_names(weight_names):
    """The language model's tensor names (``model.layers...``, ``lm_head.weight``) in the checkpoint."""
    out = []
    for n in weight_names or ():
        r = _canonical(n)
        if r.startswith("language_model."):
            out.append(r[len("language_model."):])
    return out


def build(config: dict, weight_names=None) -> LlavaForConditionalGeneration:
    vc = sub_config(config, "vision_config", "clip_vision_model")
    if vc["model_type"] not in TOWERS:
        raise HFConfigError(f"config.json (model_type 'llava'): vision_config model_type {vc['model_type']!r} is not "
                            f"supported by sparsec (supported: {', '.join(TOWERS)})")
    tower = TOWERS[vc["model_type"]](vc)
    tc, arch = _text_arch(config)
    if "weight_names" in inspect.signature(arch.build).parameters:
        lm = arch.build(tc, weight_names=_text_names(weight_names))
    else:
        lm = arch.build(tc)
    if type(lm).forward_cached is not CausalLM.forward_cached:
        raise HFConfigError(f"config.json (model_type 'llava'): a {tc['model_type']!r} language model (its own cache "
                            f"layout) is not supported inside LLaVA by sparsec")
    strategy = expect(config, "vision_feature_select_strategy", ("default", "full"), "default")
    layer = get(config, "vision_feature_layer", -2)
    refuse(config, "image_grid_pinpoints", ok=(None,), why="LLaVA-NeXT any-resolution tiling")
    token = get(config, "image_token_id", get(config, "image_token_index", 32000))
    act = expect(config, "projector_hidden_act", VISION_ACTS, "gelu")
    try:
        model = LlavaForConditionalGeneration(tower, lm, token, layer, strategy, act,
                                              bool(get(config, "multimodal_projector_bias", True)))
    except ValueError as e:
        raise HFConfigError(f"config.json (model_type 'llava'): {e}") from None
    return model


_PREFIXES = (("model.vision_tower.vision_model.", "vision_tower."), ("model.vision_tower.", "vision_tower."),
             ("vision_tower.vision_model.", "vision_tower."),
             ("model.multi_modal_projector.", "multi_modal_projector."),
             ("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."))


def _canonical(name: str) -> str:
    for old, new in _PREFIXES:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def rename_weight(name: str, config: dict):
    name = _canonical(name)
    if name.startswith("language_model."):
        tc, arch = _text_arch(config)
        rename = getattr(arch, "rename_weight", None)
        inner = name[len("language_model."):]
        inner = inner if rename is None else rename(inner, tc)
        return None if inner is None else "language_model." + inner
    return name
