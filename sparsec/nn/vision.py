"""Vision transformer encoders with Hugging Face names: ``ViTModel`` (``vit``), ``CLIPVisionModel``
(``clip_vision_model``, optionally with CLIP's ``visual_projection``) and ``SiglipVisionModel``
(``siglip_vision_model``, with the attention-pool ``head``).

Each takes ``pixel_values`` float32 ``[batch, channels, height, width]`` exactly as the Hugging Face
image processor hands them to transformers (resized, rescaled and normalized: that is the
processor's job, not the model's) and returns a dict: ``last_hidden_state [batch, tokens, hidden]``
and, where the architecture has one, ``pooler_output [batch, hidden]`` (CLIP with a projection
adds ``image_embeds``). The image size is the checkpoint's: position embeddings are not
interpolated, so another size (or channel count) is refused when traced, naming the expected shape.

``hidden_states(pixel_values, indices)`` gives transformers' ``hidden_states[i]`` (the hidden
states after the first ``i`` encoder layers; negatives from the end), which vision-language models
such as LLaVA read.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..errors import SparsecError
from ..frontend.tracer import Parameter
from .attention import merge_heads, split_heads
from .conv import Conv2d
from .layers import Embedding, Linear, init_weight
from .module import Module, ModuleList
from .norm import LayerNorm


class ImageShapeError(SparsecError):
    """``pixel_values`` of another shape or dtype than the vision model was built for."""


class ImageNormalize(Module):
    """The rescale-and-normalize step of a Hugging Face image processor, as a traced module:
    ``(image * rescale_factor - mean[c]) / std[c]`` per channel of ``[batch, C, H, W]`` (an integer
    image, uint8 0..255, is cast to float32 first). Resizing and cropping stay outside (give an
    image of the model's size). ``sc.hf.image_normalizer(folder)`` builds one from the folder's
    ``preprocessor_config.json``; compose it with the encoder::

        norm, vit = sc.hf.image_normalizer(folder), sc.load_hf(folder)
        cm = sc.compile(lambda image: vit(norm(image)), sc.TensorSpec((1, 3, 224, 224), "uint8", name="image"))
    """

    def __init__(self, mean, std, rescale_factor: float | None = 1 / 255):
        super().__init__()
        mean, std = np.asarray(mean, np.float32).reshape(-1), np.asarray(std, np.float32).reshape(-1)
        if mean.shape != std.shape or mean.size == 0:
            raise ValueError(f"image mean and std need one value per channel, got {mean.size} and {std.size}")
        if np.any(std == 0) or not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise ValueError(f"image std must be finite and non-zero, mean finite: mean {mean.tolist()}, "
                             f"std {std.tolist()}")
        self.mean, self.std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
        self.rescale_factor = None if rescale_factor is None else float(rescale_factor)

    def forward(self, image):
        if image.ndim != 4 or image.shape[1] != self.mean.shape[0]:
            raise ImageShapeError(f"ImageNormalize: the image must be [batch, {self.mean.shape[0]}, height, width], "
                                  f"got {list(image.shape)}")
        x = image if image.dtype.is_float else ops.cast(image, "float32")
        if self.rescale_factor is not None:
            x = x * np.float32(self.rescale_factor)
        return (x - self.mean) / self.std


def quick_gelu(x):
    """CLIP's ``x * sigmoid(1.702 x)``."""
    return x * ops.sigmoid(x * 1.702)


#: activation name (transformers' ``hidden_act``) -> traced function
VISION_ACTIVATIONS = {
    "gelu": lambda x: ops.gelu(x),
    "gelu_pytorch_tanh": lambda x: ops.gelu_tanh(x),
    "gelu_new": lambda x: ops.gelu_tanh(x),
    "quick_gelu": quick_gelu,
    "relu": lambda x: ops.relu(x),
    "tanh": lambda x: ops.tanh(x),
    "silu": lambda x: ops.silu(x),
}


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"expected an int or (height, width), got {list(v)}")
    return v


def _act(name: str):
    if name not in VISION_ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(VISION_ACTIVATIONS)}")
    return VISION_ACTIVATIONS[name]


class PatchGrid:
    """The image geometry of a patch-embedding encoder: channels, image and patch size."""

    def __init__(self, channels: int, image_size, patch_size):
        self.channels = int(channels)
        self.image_size, self.patch_size = _pair(image_size), _pair(patch_size)
        (h, w), (ph, pw) = self.image_size, self.patch_size
        if not (0 < ph <= h and 0 < pw <= w):
            raise ValueError(f"patch size {ph}x{pw} does not fit the image size {h}x{w}")
        self.grid = (h // ph, w // pw)  # a remainder is cut off, as the stride-patch convolution does
        self.num_patches = self.grid[0] * self.grid[1]

    def check(self, pixel_values, model: str) -> None:
        """Refuse (at trace time) pixel values of another layout than ``[batch, C, H, W]`` f32."""
        h, w = self.image_size
        want = f"[batch, {self.channels}, {h}, {w}] float32"
        shape = tuple(pixel_values.shape)
        ok = len(shape) == 4 and tuple(shape[1:]) == (self.channels, h, w) and pixel_values.dtype.name == "f32"
        if not ok:
            got = "[" + ", ".join(str(d) for d in shape) + f"] {pixel_values.dtype}"
            raise ImageShapeError(
                f"{model}: pixel_values must be {want} (channels first, resized and normalized by the Hugging "
                f"Face image processor; position embeddings are not interpolated to other sizes), got {got}")

    def patches(self, conv: Conv2d, pixel_values):
        """``[B, C, H, W]`` -> patch embeddings ``[B, num_patches, hidden]`` (row-major patch order)."""
        x = conv(pixel_values)                                     # [B, hidden, gh, gw]
        b, d = x.shape[0], x.shape[1]
        return ops.transpose(ops.reshape(x, (b, d, self.num_patches)), (0, 2, 1))


def _prepend(token, x):
    """``[token; x]`` along the sequence: ``token`` ``[1, 1, D]`` broadcast over the batch."""
    b, _, d = x.shape
    return ops.concat([ops.broadcast_to(token, (b, 1, d)), x], 1)


class SelfAttention(Module):
    """Bidirectional multi-head attention with CLIP/SigLIP names (``q_proj``, ``k_proj``, ``v_proj``,
    ``out_proj``), or ViT's (``query``, ``key``, ``value``; the output projection lives in the
    caller) when ``names=("query", "key", "value")``."""

    def __init__(self, hidden: int, heads: int, bias: bool = True, names=("q_proj", "k_proj", "v_proj", "out_proj"),
                 seed: int | None = None):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by the number of heads {heads}")
        self.heads, self.head_dim, self.names = heads, hidden // heads, tuple(names)
        s = (lambda k: None if seed is None else seed * 5 + k)
        for i, n in enumerate(self.names[:3]):
            setattr(self, n, Linear(hidden, hidden, bias, s(i)))
        if len(self.names) > 3:
            setattr(self, self.names[3], Linear(hidden, hidden, True, s(3)))

    def forward(self, x):
        q, k, v = (split_heads(getattr(self, n)(x), self.heads, self.head_dim) for n in self.names[:3])
        o = merge_heads(ops.attention(q, k, v, None, causal=False))
        return getattr(self, self.names[3])(o) if len(self.names) > 3 else o


class VisionMLP(Module):
    """``fc2(act(fc1(x)))`` with biases (CLIP/SigLIP ``mlp``)."""

    def __init__(self, hidden: int, intermediate: int, activation: str, seed: int | None = None):
        super().__init__()
        self.act = _act(activation)
        s = (lambda k: None if seed is None else seed * 2 + k)
        self.fc1 = Linear(hidden, intermediate, True, s(0))
        self.fc2 = Linear(intermediate, hidden, True, s(1))

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(Module):
    """CLIP/SigLIP pre-norm block: ``h = x + self_attn(layer_norm1(x))``, ``h + mlp(layer_norm2(h))``."""

    def __init__(self, hidden: int, heads: int, intermediate: int, activation: str, eps: float,
                 seed: int | None = None):
        super().__init__()
        s = (lambda k: None if seed is None else seed * 2 + k)
        self.self_attn = SelfAttention(hidden, heads, True, seed=s(0))
        self.layer_norm1 = LayerNorm(hidden, eps)
        self.mlp = VisionMLP(hidden, intermediate, activation, s(1))
        self.layer_norm2 = LayerNorm(hidden, eps)

    def forward(self, x):
        h = x + self.self_attn(self.layer_norm1(x))
        return h + self.mlp(self.layer_norm2(h))


class Encoder(Module):
    """``layers.{i}`` (CLIP/SigLIP) or ``layer.{i}`` (ViT) applied in order; ``forward(x, n)`` runs the first ``n``."""

    def __init__(self, layers: list, attr: str = "layers"):
        super().__init__()
        self.attr = attr
        setattr(self, attr, ModuleList(layers))

    def __len__(self) -> int:
        return len(getattr(self, self.attr))

    def forward(self, x, n: int | None = None):
        layers = getattr(self, self.attr)
        for layer in list(layers)[:len(layers) if n is None else n]:
            x = layer(x)
        return x

    def states(self, x, counts: list[int]) -> list:
        """The hidden states after each of ``counts`` layers (0 = the input), one pass."""
        out, done = {0: x}, 0
        for n in sorted(set(counts)):
            for layer in list(getattr(self, self.attr))[done:n]:
                x = layer(x)
            out[n], done = x, n
        return [out[n] for n in counts]


def _layer_count(n, total: int, model: str) -> int:
    """``n`` as transformers indexes ``hidden_states`` (``total + 1`` entries, negatives from the end)."""
    k = n if n >= 0 else total + 1 + n
    if not 0 <= k <= total:
        raise ValueError(f"{model}: hidden state {n} does not exist (the encoder has {total} layers: "
                         f"indices {-(total + 1)}..{total})")
    return k


# -- ViT --------------------------------------------------------------------------------------

class ViTPatchEmbeddings(Module):
    def __init__(self, grid: PatchGrid, hidden: int, seed: int | None = None):
        super().__init__()
        self.grid = grid
        self.projection = Conv2d(grid.channels, hidden, grid.patch_size, stride=grid.patch_size, seed=seed)

    def forward(self, pixel_values):
        return self.grid.patches(self.projection, pixel_values)


class ViTEmbeddings(Module):
    """``[cls_token; patches] + position_embeddings`` (``cls_token [1, 1, D]``, positions ``[1, N+1, D]``)."""

    def __init__(self, grid: PatchGrid, hidden: int, seed: int | None = None):
        super().__init__()
        s = (lambda k: None if seed is None else seed * 3 + k)
        self.cls_token = Parameter(init_weight((1, 1, hidden), 1, s(0)))
        self.patch_embeddings = ViTPatchEmbeddings(grid, hidden, s(1))
        self.position_embeddings = Parameter(init_weight((1, grid.num_patches + 1, hidden), 1, s(2)))

    def forward(self, pixel_values):
        return _prepend(self.cls_token, self.patch_embeddings(pixel_values)) + self.position_embeddings


class ViTDense(Module):
    """A ``dense`` projection (ViT's ``attention.output`` and ``output``; the residual is added by the layer)."""

    def __init__(self, n_in: int, n_out: int, seed: int | None = None):
        super().__init__()
        self.dense = Linear(n_in, n_out, True, seed)

    def forward(self, x):
        return self.dense(x)


class ViTAttention(Module):
    def __init__(self, hidden: int, heads: int, qkv_bias: bool = True, seed: int | None = None):
        super().__init__()
        s = (lambda k: None if seed is None else seed * 2 + k)
        self.attention = SelfAttention(hidden, heads, qkv_bias, names=("query", "key", "value"), seed=s(0))
        self.output = ViTDense(hidden, hidden, s(1))

    def forward(self, x):
        return self.output(self.attention(x))


class ViTIntermediate(ViTDense):
    def __init__(self, hidden: int, intermediate: int, activation: str, seed: int | None = None):
        super().__init__(hidden, intermediate, seed)
        self.act = _act(activation)

    def forward(self, x):
        return self.act(self.dense(x))


class ViTLayer(Module):
    """Pre-norm block: ``h = x + attention(layernorm_before(x))``, ``h + output(intermediate(layernorm_after(h)))``."""

    def __init__(self, hidden: int, heads: int, intermediate: int, activation: str, eps: float,
                 qkv_bias: bool = True, seed: int | None = None):
        super().__init__()
        s = (lambda k: None if seed is None else seed * 3 + k)
        self.attention = ViTAttention(hidden, heads, qkv_bias, s(0))
        self.intermediate = ViTIntermediate(hidden, intermediate, activation, s(1))
        self.output = ViTDense(intermediate, hidden, s(2))
        self.layernorm_before = LayerNorm(hidden, eps)
        self.layernorm_after = LayerNorm(hidden, eps)

    def forward(self, x):
        h = x + self.attention(self.layernorm_before(x))
        return h + self.output(self.intermediate(self.layernorm_after(h)))


class ViTPooler(Module):
    """``act(dense(h[:, 0]))`` (``pooler_act``, tanh by default)."""

    def __init__(self, hidden: int, out: int, activation: str = "tanh", seed: int | None = None):
        super().__init__()
        self.dense = Linear(hidden, out, True, seed)
        self.act = _act(activation)

    def forward(self, h):
        return self.act(self.dense(h[:, 0]))


class ViTModel(Module):
    """Hugging Face ``ViTModel``: ``embeddings.{cls_token, position_embeddings,
    patch_embeddings.projection}``, ``encoder.layer.{i}``, ``layernorm``, optional ``pooler.dense``.
    ``forward(pixel_values)`` -> ``{last_hidden_state, pooler_output}`` (the latter with a pooler)."""

    is_vision = True

    def __init__(self, hidden: int = 768, layers: int = 12, heads: int = 12, intermediate: int = 3072,
                 image_size=224, patch_size=16, channels: int = 3, eps: float = 1e-12, activation: str = "gelu",
                 qkv_bias: bool = True, pooler: bool = True, pooler_size: int | None = None,
                 pooler_act: str = "tanh", seed: int | None = 0):
        super().__init__()
        self.grid = PatchGrid(channels, image_size, patch_size)
        self.config = dict(hidden=hidden, layers=layers, heads=heads, intermediate=intermediate,
                           image_size=self.grid.image_size, patch_size=self.grid.patch_size, channels=channels,
                           eps=eps, activation=activation)
        s = (lambda k: None if seed is None else seed * 1000 + k)
        self.embeddings = ViTEmbeddings(self.grid, hidden, s(0))
        self.encoder = Encoder([ViTLayer(hidden, heads, intermediate, activation, eps, qkv_bias, s(10 * i + 1))
                                for i in range(layers)], attr="layer")
        self.layernorm = LayerNorm(hidden, eps)
        if pooler:
            self.pooler = ViTPooler(hidden, pooler_size or hidden, pooler_act, s(2))

    def input_specs(self, batch="batch") -> list:
        from ..frontend.tracer import TensorSpec
        return [TensorSpec((batch, self.grid.channels) + self.grid.image_size, "float32", name="pixel_values")]

    def hidden_states(self, pixel_values, indices: list[int]) -> list:
        """transformers' ``hidden_states[i]`` for each ``i`` (0: embeddings; negatives from the end)."""
        self.grid.check(pixel_values, type(self).__name__)
        counts = [_layer_count(i, len(self.encoder), type(self).__name__) for i in indices]
        return self.encoder.states(self.embeddings(pixel_values), counts)

    def forward(self, pixel_values):
        h = self.layernorm(self.hidden_states(pixel_values, [-1])[0])
        out = {"last_hidden_state": h}
        if "pooler" in self._modules:
            out["pooler_output"] = self.pooler(h)
        return out


# -- CLIP -------------------------------------------------------------------------------------

class CLIPVisionEmbeddings(Module):
    """``[class_embedding; patch_embedding(x)] + position_embedding.weight`` (the conv has no bias)."""

    def __init__(self, grid: PatchGrid, hidden: int, seed: int | None = None):
        super().__init__()
        s = (lambda k: None if seed is None else seed * 3 + k)
        self.grid = grid
        self.class_embedding = Parameter(init_weight((hidden,), 1, s(0)))
        self.patch_embedding = Conv2d(grid.channels, hidden, grid.patch_size, stride=grid.patch_size, bias=False,
                                      seed=s(1))
        self.position_embedding = Embedding(grid.num_patches + 1, hidden, s(2))

    def forward(self, pixel_values):
        d = self.class_embedding.shape[0]
        cls = ops.reshape(self.class_embedding, (1, 1, d))
        return _prepend(cls, self.grid.patches(self.patch_embedding, pixel_values)) + self.position_embedding.weight


class CLIPVisionModel(Module):
    """Hugging Face ``CLIPVisionModel`` (names without the ``vision_model.`` prefix, as
    transformers 5 saves it): ``embeddings``, ``pre_layrnorm`` (sic), ``encoder.layers.{i}``,
    ``post_layernorm``. ``forward(pixel_values)`` -> ``last_hidden_state`` (not normed: as
    transformers) and ``pooler_output = post_layernorm(last_hidden_state[:, 0])``; with
    ``projection_dim`` also ``image_embeds = visual_projection(pooler_output)`` (unnormalized, as
    ``CLIPModel.get_image_features`` / ``CLIPVisionModelWithProjection``)."""

    is_vision = True

    def __init__(self, hidden: int = 768, layers: int = 12, heads: int = 12, intermediate: int = 3072,
                 image_size=224, patch_size=32, channels: int = 3, eps: float = 1e-5,
                 activation: str = "quick_gelu", projection_dim: int | None = None, seed: int | None = 0):
        super().__init__()
        self.grid = PatchGrid(channels, image_size, patch_size)
        self.config = dict(hidden=hidden, layers=layers, heads=heads, intermediate=intermediate,
                           image_size=self.grid.image_size, patch_size=self.grid.patch_size, channels=channels,
                           eps=eps, activation=activation, projection_dim=projection_dim)
        s = (lambda k: None if seed is None else seed * 1000 + k)
        self.embeddings = CLIPVisionEmbeddings(self.grid, hidden, s(0))
        self.pre_layrnorm = LayerNorm(hidden, eps)
        self.encoder = Encoder([EncoderLayer(hidden, heads, intermediate, activation, eps, s(10 * i + 1))
                                for i in range(layers)])
        self.post_layernorm = LayerNorm(hidden, eps)
        if projection_dim:
            self.visual_projection = Linear(hidden, projection_dim, False, s(2))

    input_specs = ViTModel.input_specs

    def hidden_states(self, pixel_values, indices: list[int]) -> list:
        """transformers' ``hidden_states[i]`` for each ``i`` (0: after ``pre_layrnorm``; the last
        one is ``last_hidden_state``)."""
        self.grid.check(pixel_values, type(self).__name__)
        counts = [_layer_count(i, len(self.encoder), type(self).__name__) for i in indices]
        return self.encoder.states(self.pre_layrnorm(self.embeddings(pixel_values)), counts)

    def forward(self, pixel_values):
        h = self.hidden_states(pixel_values, [-1])[0]
        pooled = self.post_layernorm(h[:, 0])
        out = {"last_hidden_state": h, "pooler_output": pooled}
        if "visual_projection" in self._modules:
            out["image_embeds"] = self.visual_projection(pooled)
        return out


# -- SigLIP -----------------------------------------------------------------------------------

class SiglipVisionEmbeddings(Module):
    """``patch_embedding(x) + position_embedding.weight`` (no class token; the conv has a bias)."""

    def __init__(self, grid: PatchGrid, hidden: int, seed: int | None = None):
        super().__init__()
        s = (lambda k: None if seed is None else seed * 2 + k)
        self.grid = grid
        self.patch_embedding = Conv2d(grid.channels, hidden, grid.patch_size, stride=grid.patch_size, seed=s(0))
        self.position_embedding = Embedding(grid.num_patches, hidden, s(1))

    def forward(self, pixel_values):
        return self.grid.patches(self.patch_embedding, pixel_values) + self.position_embedding.weight


class MultiheadAttention(Module):
    """``torch.nn.MultiheadAttention`` (``batch_first``) with its names: ``in_proj_weight [3D, D]``,
    ``in_proj_bias [3D]`` (q, k, v stacked), ``out_proj``."""

    def __init__(self, hidden: int, heads: int, seed: int | None = None):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by the number of heads {heads}")
        self.hidden, self.heads = hidden, heads
        s = (lambda k: None if seed is None else seed * 3 + k)
        self.in_proj_weight = Parameter(init_weight((3 * hidden, hidden), hidden, s(0)))
        self.in_proj_bias = Parameter(init_weight((3 * hidden,), hidden, s(1)))
        self.out_proj = Linear(hidden, hidden, True, s(2))

    def forward(self, query, key, value):
        d, hd = self.hidden, self.hidden // self.heads

        def proj(x, i):
            w = ops.slice(self.in_proj_weight, 0, i * d, (i + 1) * d)
            b = ops.slice(self.in_proj_bias, 0, i * d, (i + 1) * d)
            return split_heads(ops.linear(x, w, b), self.heads, hd)

        o = ops.attention(proj(query, 0), proj(key, 1), proj(value, 2), None, causal=False)
        return self.out_proj(merge_heads(o))


class SiglipAttentionPoolingHead(Module):
    """SigLIP's ``head``: a learned ``probe`` attends over the tokens, then ``h + mlp(layernorm(h))``;
    returns ``[batch, hidden]``."""

    def __init__(self, hidden: int, heads: int, intermediate: int, activation: str, eps: float,
                 seed: int | None = None):
        super().__init__()
        s = (lambda k: None if seed is None else seed * 3 + k)
        self.probe = Parameter(init_weight((1, 1, hidden), 1, s(0)))
        self.attention = MultiheadAttention(hidden, heads, s(1))
        self.layernorm = LayerNorm(hidden, eps)
        self.mlp = VisionMLP(hidden, intermediate, activation, s(2))

    def forward(self, h):
        b, d = h.shape[0], h.shape[2]
        probe = ops.broadcast_to(self.probe, (b, 1, d))
        x = self.attention(probe, h, h)
        x = x + self.mlp(self.layernorm(x))
        return x[:, 0]


class SiglipVisionModel(Module):
    """Hugging Face ``SiglipVisionModel`` (names without ``vision_model.``): ``embeddings``,
    ``encoder.layers.{i}``, ``post_layernorm``, and with ``use_head`` the attention-pool ``head``.
    ``forward(pixel_values)`` -> ``last_hidden_state = post_layernorm(encoder(...))`` and
    ``pooler_output = head(last_hidden_state)`` (with the head)."""

    is_vision = True

    def __init__(self, hidden: int = 768, layers: int = 12, heads: int = 12, intermediate: int = 3072,
                 image_size=224, patch_size=16, channels: int = 3, eps: float = 1e-6,
                 activation: str = "gelu_pytorch_tanh", use_head: bool = True, seed: int | None = 0):
        super().__init__()
        self.grid = PatchGrid(channels, image_size, patch_size)
        self.config = dict(hidden=hidden, layers=layers, heads=heads, intermediate=intermediate,
                           image_size=self.grid.image_size, patch_size=self.grid.patch_size, channels=channels,
                           eps=eps, activation=activation, use_head=use_head)
        s = (lambda k: None if seed is None else seed * 1000 + k)
        self.embeddings = SiglipVisionEmbeddings(self.grid, hidden, s(0))
        self.encoder = Encoder([EncoderLayer(hidden, heads, intermediate, activation, eps, s(10 * i + 1))
                                for i in range(layers)])
        self.post_layernorm = LayerNorm(hidden, eps)
        if use_head:
            self.head = SiglipAttentionPoolingHead(hidden, heads, intermediate, activation, eps, s(2))

    input_specs = ViTModel.input_specs

    def hidden_states(self, pixel_values, indices: list[int]) -> list:
        """transformers' ``hidden_states[i]`` for each ``i`` (0: embeddings; the last one is
        before ``post_layernorm``, as transformers records it)."""
        self.grid.check(pixel_values, type(self).__name__)
        counts = [_layer_count(i, len(self.encoder), type(self).__name__) for i in indices]
        return self.encoder.states(self.embeddings(pixel_values), counts)

    def forward(self, pixel_values):
        h = self.post_layernorm(self.hidden_states(pixel_values, [-1])[0])
        out = {"last_hidden_state": h}
        if "head" in self._modules:
            out["pooler_output"] = self.head(h)
        return out
