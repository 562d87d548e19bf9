"""LLaVA-style vision-language models: a vision tower (``CLIPVisionModel``, ``SiglipVisionModel``),
a ``multi_modal_projector`` (``linear_1``, activation, ``linear_2``) and a causal language model
(``sc.nn.CausalLM``), with the Hugging Face ``LlavaForConditionalGeneration`` names as
``save_pretrained`` writes them: ``vision_tower.*``, ``multi_modal_projector.*``,
``language_model.model.*``, ``language_model.lm_head.weight``.

The prompt holds one image token (``image_token_id``) per image feature row; as transformers'
``masked_scatter``, the image features (all images, flattened in order) replace the embeddings
at the image-token positions in order: the exclusive cumulative sum of the image-token mask is
each image token's feature row, ``sc.where`` merges. A prompt whose image-token count differs
from the number of feature rows (transformers raises) makes every merged embedding NaN, so the
logits are NaN rather than silently wrong (``generate`` turns that into an error).

Functions: ``forward(pixel_values, input_ids)`` -> ``{"logits"}``; ``forward_prefill(pixel_values,
input_ids, positions, *caches)`` is the prompt step of ``generate`` with an image (``sc.compile``
adds it as function ``prefill``); the following tokens are the language model's own
``forward_cached`` (function ``decode``), as transformers passes ``pixel_values`` only at the
first step.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from .layers import Linear
from .module import Module
from .vision import VISION_ACTIVATIONS, _layer_count


class LlavaMultiModalProjector(Module):
    """``linear_2(act(linear_1(features)))``: vision hidden (times the feature layers) -> text hidden."""

    def __init__(self, vision_hidden: int, text_hidden: int, activation: str = "gelu", bias: bool = True,
                 seed: int | None = None):
        super().__init__()
        if activation not in VISION_ACTIVATIONS:
            raise ValueError(f"unknown projector activation {activation!r}; expected one of "
                             f"{', '.join(VISION_ACTIVATIONS)}")
        self.act = VISION_ACTIVATIONS[activation]
        s = (lambda k: None if seed is None else seed * 2 + k)
        self.linear_1 = Linear(vision_hidden, text_hidden, bias, s(0))
        self.linear_2 = Linear(text_hidden, text_hidden, bias, s(1))

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class LlavaForConditionalGeneration(Module):
    """``vision_tower`` (a model with ``hidden_states(pixel_values, indices)`` and ``input_specs``),
    ``multi_modal_projector``, ``language_model`` (a ``CausalLM``).

    ``vision_feature_layer``: an index (or list of indices, concatenated) into the tower's hidden
    states as transformers numbers them (``-2``: the output of the second-to-last layer);
    ``vision_feature_select_strategy``: ``"default"`` drops the first (CLS) token, ``"full"`` keeps
    every token."""

    def __init__(self, vision_tower: Module, language_model: Module, image_token_id: int,
                 vision_feature_layer=-2, vision_feature_select_strategy: str = "default",
                 projector_act: str = "gelu", projector_bias: bool = True, seed: int | None = None):
        super().__init__()
        if vision_feature_select_strategy not in ("default", "full"):
            raise ValueError(f"vision_feature_select_strategy must be 'default' or 'full', "
                             f"got {vision_feature_select_strategy!r}")
        layers = [vision_feature_layer] if isinstance(vision_feature_layer, int) else list(vision_feature_layer)
        if not layers:
            raise ValueError("vision_feature_layer: give at least one layer index")
        for i in layers:  # refused now rather than when traced
            _layer_count(i, len(vision_tower.encoder), type(vision_tower).__name__)
        self.feature_layers, self.select_strategy = layers, vision_feature_select_strategy
        self.image_token_id = int(image_token_id)
        self.vision_tower = vision_tower
        v_hidden, t_hidden = vision_tower.config["hidden"], language_model.config["hidden"]
        self.multi_modal_projector = LlavaMultiModalProjector(v_hidden * len(layers), t_hidden, projector_act,
                                                              projector_bias, seed)
        self.language_model = language_model
        grid = vision_tower.grid
        self.image_tokens = grid.num_patches + _has_cls(vision_tower) - (vision_feature_select_strategy == "default")
        self.config = dict(language_model.config, image_token_id=self.image_token_id,
                           image_tokens=self.image_tokens, vision_feature_layer=vision_feature_layer,
                           vision_feature_select_strategy=vision_feature_select_strategy)

    def input_specs(self, batch="batch") -> list:
        from ..frontend.tracer import TensorSpec
        return self.vision_tower.input_specs(batch) + [TensorSpec((batch, "seq"), "int64", name="input_ids")]

    def sample_inputs(self, samples: int = 4, tokens: int = 16, seed: int = 0) -> list:
        """Random ``(pixel_values, input_ids)`` batches with exactly ``image_tokens`` image tokens
        (after a first text token), for the quantization accuracy report: uniformly random ids
        would almost never hold the right count, and the merge turns a wrong count into NaN."""
        rng = np.random.default_rng(seed)
        (pix,) = [s.shape for s in self.vision_tower.input_specs(1)]
        vocab = int(self.language_model.config["vocab"])
        out = []
        for _ in range(samples):
            ids = rng.integers(0, vocab - 1, size=(1, tokens + self.image_tokens)).astype(np.int64)
            ids[ids >= self.image_token_id] += 1                     # text tokens: any id but the image's
            ids[0, 1:1 + self.image_tokens] = self.image_token_id
            out.append((rng.standard_normal(pix).astype(np.float32), ids))
        return out

    # -- pieces ----------------------------------------------------------------------------
    def image_features(self, pixel_values):
        """``[batch, image_tokens, text_hidden]``: the selected tower states through the projector."""
        states = self.vision_tower.hidden_states(pixel_values, self.feature_layers)
        if self.select_strategy == "default":
            states = [ops.slice(h, 1, 1, None) for h in states]
        x = states[0] if len(states) == 1 else ops.concat(states, -1)
        return self.multi_modal_projector(x)

    def merge(self, embeds, input_ids, features):
        """``embeds [B, S, D]`` with the image-token rows replaced by the feature rows in order."""
        b, s, d = embeds.shape
        flat_mask = ops.reshape(input_ids == self.image_token_id, (-1,))            # [B*S]
        rows = ops.reshape(features, (-1, d))                                        # [B*P, D]
        last_row = ops.max(ops.iota(rows, axis=0))                                   # B*P - 1
        order = ops.cumsum(flat_mask, 0, exclusive=True)                             # image token ordinal
        idx = ops.where(flat_mask, ops.minimum(order, last_row), 0)
        merged = ops.where(ops.expand_dims(flat_mask, -1), ops.take(rows, idx, 0), ops.reshape(embeds, (-1, d)))
        # the image-token count must equal the feature rows (transformers raises): else NaN
        count_ok = ops.cast(ops.sum(ops.cast(flat_mask, "int64")) == last_row + 1, "float32")
        merged = merged + ops.sqrt(count_ok - 1.0)
        return ops.reshape(merged, (b, s, d))

    def _text(self, h, positions=None, caches=None):
        """The language model's decoder layers and final norm over embeddings ``h``."""
        body = self.language_model.model
        if positions is None:
            positions = ops.iota(h, axis=1)
        new = []
        for i, layer in enumerate(body.layers):
            if caches is None:
                h = layer(h, positions)
            else:
                h, c = layer(h, positions, None, caches[i])
                new.append(c)
        h = body.norm(h)
        return ops.cast(self.language_model.lm_head(h), "float32"), new

    def _embeds(self, pixel_values, input_ids):
        embeds = self.language_model.model.embed_tokens(input_ids)
        return self.merge(embeds, input_ids, self.image_features(pixel_values))

    # -- traced functions ------------------------------------------------------------------
    def forward(self, pixel_values, input_ids):
        logits, _ = self._text(self._embeds(pixel_values, input_ids))
        return {"logits": logits}

    def cache_layout(self):
        return self.language_model.cache_layout()

    def forward_cached(self, input_ids, positions, *caches):
        return self.language_model.forward_cached(input_ids, positions, *caches)

    def forward_prefill(self, pixel_values, input_ids, positions, *caches):
        """The prompt step with the image: as ``forward_cached`` (same caches and outputs), with
        the image features merged into the prompt embeddings."""
        layout = self.cache_layout()
        n = len(self.language_model.model.layers)
        if len(caches) != len(layout) or len(layout) % n:
            raise ValueError(f"forward_prefill: expected {len(layout)} caches, got {len(caches)}")
        per = len(layout) // n
        grouped = [caches[i] if per == 1 else tuple(caches[i * per:(i + 1) * per]) for i in range(n)]
        logits, new = self._text(self._embeds(pixel_values, input_ids), positions, grouped)
        out = {"logits": logits}
        flat = [c for layer in new for c in (layer if isinstance(layer, tuple) else (layer,))]
        for (name, _, _), c in zip(layout, flat):
            out[name.replace("past_", "present_", 1)] = c
        return out


def _has_cls(tower) -> int:
    return int("class_embedding" in tower.embeddings._params or "cls_token" in tower.embeddings._params)
