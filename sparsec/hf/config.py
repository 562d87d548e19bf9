"""Reading and validating a Hugging Face ``config.json``.

The helpers take the config dict and raise ``HFConfigError`` (an ``sc.SparsecError``) whose
message names the ``model_type``, the config field and its value, so that a model sparsec does
not implement is refused rather than silently built differently. Architecture modules
(``sparsec/hf/archs/*.py``) use them like this::

    from ..config import require, get, expect, refuse, rope_settings, check_no_sliding_window

    def build(config: dict) -> Module:
        hidden = require(config, "hidden_size")                 # missing -> error naming it
        act = expect(config, "hidden_act", ("silu",), "silu")   # other values -> error
        refuse(config, "clip_qkv", ok=(None,))                  # set to anything else -> error
        theta, scaling = rope_settings(config)                  # rope_theta/rope_scaling or rope_parameters
        check_no_sliding_window(config)
        eps = get(config, "rms_norm_eps", 1e-6)

``require(config, key)``: the value; a missing (or null) field is an error.
``get(config, key, default)``: the value, or ``default`` when absent or null.
``expect(config, key, allowed, default)``: the value (``default`` when absent), which must be
one of ``allowed``.
``refuse(config, key, ok=(None,), why="")``: error unless the field is absent or in ``ok``.
``rope_settings(config)``: ``(theta, rope_scaling dict or None)`` from either the classic
``rope_theta`` + ``rope_scaling`` fields or transformers 5's ``rope_parameters``; rope types other
than ``default``/``linear``/``llama3`` are refused (``ROPE_TYPES``).
``check_no_sliding_window(config)``: refuses sliding-window attention that would take effect.
``first_k_dense(config)`` etc. are in the arch modules that need them.
"""
from __future__ import annotations

import json
import os

from ..errors import SparsecError


class HFConfigError(SparsecError):
    """A config.json sparsec cannot build a model from (missing field, unsupported value)."""


class HFWeightError(SparsecError):
    """Checkpoint tensors that do not fit the model (missing, unexpected, wrong shape, unreadable)."""


def read_config(folder: str) -> dict:
    path = os.path.join(folder, "config.json")
    if not os.path.isdir(folder):
        raise HFConfigError(f"{folder}: not a folder (expected a Hugging Face model folder with config.json)")
    if not os.path.exists(path):
        raise HFConfigError(f"{folder}: no config.json (expected a Hugging Face model folder)")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise HFConfigError(f"{path}: cannot read: {e}") from None
    if not isinstance(config, dict):
        raise HFConfigError(f"{path}: expected a JSON object")
    if "model_type" not in config:
        raise HFConfigError(f"{path}: no 'model_type' field")
    return config


def _where(config: dict) -> str:
    return f"config.json (model_type {config.get('model_type')!r})"


def require(config: dict, key: str):
    value = config.get(key)
    if value is None:
        raise HFConfigError(f"{_where(config)}: missing required field {key!r}")
    return value


def get(config: dict, key: str, default=None):
    value = config.get(key)
    return default if value is None else value


def expect(config: dict, key: str, allowed, default=None):
    value = get(config, key, default)
    if value not in tuple(allowed):
        raise HFConfigError(f"{_where(config)}: {key} = {value!r} is not supported by sparsec "
                            f"(supported: {', '.join(repr(a) for a in allowed)})")
    return value


def refuse(config: dict, key: str, ok=(None,), why: str = ""):
    value = config.get(key)
    if key in config and value not in tuple(ok):
        raise HFConfigError(f"{_where(config)}: {key} = {value!r} is not supported by sparsec"
                            f"{' (' + why + ')' if why else ''}")
    return value


ROPE_TYPES = ("default", "linear", "llama3")


def rope_settings(config: dict, default_theta: float = 10000.0) -> tuple[float, dict | None]:
    """``(rope_theta, rope_scaling)``; ``rope_scaling`` is None for plain RoPE, else a dict with
    ``rope_type`` (``linear``: ``factor``; ``llama3``: ``factor``, ``low_freq_factor``,
    ``high_freq_factor``, ``original_max_position_embeddings``)."""
    params = config.get("rope_parameters")
    if isinstance(params, dict) and params and all(isinstance(v, dict) for v in params.values()):
        raise HFConfigError(f"{_where(config)}: per-layer-type rope_parameters are not supported by sparsec")
    scaling = params if isinstance(params, dict) else config.get("rope_scaling")
    theta = get(config, "rope_theta", None)
    if isinstance(params, dict) and params.get("rope_theta") is not None:
        theta = params["rope_theta"]
    theta = float(default_theta if theta is None else theta)
    if not scaling:
        return theta, None
    rtype = scaling.get("rope_type", scaling.get("type", "default"))
    field = "rope_parameters" if isinstance(params, dict) else "rope_scaling"
    if rtype not in ROPE_TYPES:
        raise HFConfigError(f"{_where(config)}: {field} rope_type = {rtype!r} is not supported by sparsec "
                            f"(supported: {', '.join(ROPE_TYPES)})")
    if rtype == "default":
        return theta, None
    needed = ("factor",) if rtype == "linear" else \
        ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in needed if scaling.get(k) is None]
    if missing:
        raise HFConfigError(f"{_where(config)}: {field} of type {rtype!r} lacks {', '.join(missing)}")
    out = {"rope_type": rtype}
    out.update({k: scaling[k] for k in needed})
    return theta, out


def check_no_sliding_window(config: dict) -> None:
    """Sliding-window attention is not implemented: refuse it wherever it would take effect
    (``use_sliding_window``, ``layer_types`` with ``sliding_attention``, or a ``sliding_window``
    shorter than ``max_position_embeddings`` on an architecture that always applies it)."""
    if config.get("use_sliding_window"):
        raise HFConfigError(f"{_where(config)}: use_sliding_window = true (sliding-window attention, "
                            f"sliding_window = {config.get('sliding_window')!r}) is not supported by sparsec")
    types = config.get("layer_types")
    if types and any(t != "full_attention" for t in types):
        bad = sorted({t for t in types if t != "full_attention"})
        raise HFConfigError(f"{_where(config)}: layer_types {bad} (only 'full_attention' is supported by sparsec)")
    if "use_sliding_window" not in config:  # Mistral/Mixtral: a set sliding_window always applies
        w = config.get("sliding_window")
        limit = config.get("max_position_embeddings")
        if w and (limit is None or w < limit):
            raise HFConfigError(f"{_where(config)}: sliding_window = {w!r} (sliding-window attention) is not "
                                f"supported by sparsec")
