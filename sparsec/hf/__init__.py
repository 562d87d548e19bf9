"""``sc.load_hf(folder)``: an ``sc.nn`` model from a Hugging Face-style folder (``config.json`` +
``*.safetensors``, single file or sharded with ``model.safetensors.index.json``).

The ``model_type`` in config.json picks an architecture module in ``sparsec/hf/archs/``: every
module there exposing ``MODEL_TYPES = (...)`` and ``build(config: dict) -> sc.nn.Module`` is
discovered (optionally ``rename_weight(name, config) -> name | None`` to rename or drop checkpoint
tensors, and ``build(config, weight_names=...)`` when the structure depends on which tensors the
checkpoint holds). Config fields are validated with the helpers in ``sparsec.hf.config``; weights
are read by ``sparsec.hf.weights`` (safetensors only, never pickle) and checked strictly.

    model = sc.load_hf("path/to/Qwen3-0.6B")
    cm = sc.compile(model, sc.TensorSpec(("batch", "seq"), "int64"))
"""
from __future__ import annotations

import importlib
import inspect
import os
import pkgutil

from ..errors import SparsecError
from .config import HFConfigError, HFWeightError, read_config  # noqa: F401
from .weights import Checkpoint, load_into, plan_weights

__all__ = ["load_hf", "architectures", "input_specs", "image_normalizer", "HFConfigError", "HFWeightError"]


def architectures() -> tuple[dict, dict]:
    """``({model_type: arch module}, {module name: import error})`` over ``sparsec/hf/archs/``."""
    from . import archs
    found, broken = {}, {}
    for info in pkgutil.iter_modules(archs.__path__):
        try:
            mod = importlib.import_module(f"{archs.__name__}.{info.name}")
        except Exception as e:  # noqa: BLE001 - reported only if its model type is asked for
            broken[info.name] = f"{type(e).__name__}: {e}"
            continue
        for mt in getattr(mod, "MODEL_TYPES", ()):
            found[mt] = mod
    return found, broken


def load_hf(path: str, dtype: str | None = None):
    """An ``sc.nn`` model with the checkpoint's weights (parameter names are the checkpoint's own;
    fused 3-D expert tensors become per-expert ones, see ``sparsec.hf.weights``).

    ``dtype``: ``None`` or ``"float32"`` (parameters are float32; fp16/bf16 checkpoints are
    converted on load)."""
    path = os.fspath(path)
    if dtype not in (None, "float32", "f32"):
        raise SparsecError(f"load_hf: dtype={dtype!r} is not supported yet (parameters are float32; fp16/bf16 "
                           f"checkpoints are converted on load)")
    config = read_config(path)
    mt = config["model_type"]
    found, broken = architectures()
    if mt not in found:
        extra = "".join(f"; archs/{k}.py failed to import: {v}" for k, v in broken.items())
        raise HFConfigError(f"{path}: model_type {mt!r} is not supported by sparsec (supported: "
                            f"{', '.join(sorted(found))}){extra}")
    arch = found[mt]
    with Checkpoint(path) as ckpt:
        if "weight_names" in inspect.signature(arch.build).parameters:
            model = arch.build(config, weight_names=ckpt.names())
        else:
            model = arch.build(config)
        rename = getattr(arch, "rename_weight", None)
        tied = bool(getattr(model, "config", {}).get("tie_word_embeddings", False))
        plan = plan_weights(model, ckpt, None if rename is None else (lambda n: rename(n, config)), tied=tied)
        load_into(model, ckpt, plan)
    model.hf_config = config
    return model


def input_specs(model) -> list:
    """The ``TensorSpec``s to compile a loaded model with: ``input_ids`` ``("batch", "seq")`` int64
    for causal LMs; ``input_ids``, ``attention_mask``, ``token_type_ids`` for encoders; a model that
    defines ``input_specs()`` (vision encoders: ``pixel_values``; LLaVA) gives its own."""
    from ..frontend.tracer import TensorSpec
    if callable(getattr(model, "input_specs", None)):
        return list(model.input_specs())
    names = ["input_ids"]
    if getattr(model, "is_encoder", False) or type(model).__name__ == "BertModel":
        names += ["attention_mask", "token_type_ids"]
    return [TensorSpec(("batch", "seq"), "int64", name=n) for n in names]


def image_normalizer(path: str):
    """``sc.nn.ImageNormalize`` from the folder's ``preprocessor_config.json`` (``image_mean``,
    ``image_std``, ``rescale_factor``, ``do_rescale``, ``do_normalize``): the processor's rescale
    and normalize steps as a traced module (resize and crop are not included)."""
    import json
    from ..nn.vision import ImageNormalize
    f = os.path.join(os.fspath(path), "preprocessor_config.json")
    if not os.path.isfile(f):
        raise HFConfigError(f"{path}: no preprocessor_config.json (the image processor's settings)")
    try:
        with open(f) as fh:
            cfg = json.load(fh)
    except (OSError, ValueError) as e:
        raise HFConfigError(f"{f}: not readable JSON ({e})") from None
    rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else None
    if not cfg.get("do_normalize", True):
        mean, std = [0.0] * 3, [1.0] * 3
    else:
        mean, std = cfg.get("image_mean"), cfg.get("image_std")
        if mean is None or std is None:
            raise HFConfigError(f"{f}: do_normalize without image_mean / image_std")
        mean = [mean] * 3 if isinstance(mean, (int, float)) else mean
        std = [std] * 3 if isinstance(std, (int, float)) else std
    try:
        return ImageNormalize(mean, std, rescale)
    except ValueError as e:
        raise HFConfigError(f"{f}: {e}") from None
