"""Greedy decoding for compiled causal LMs.

With a ``decode`` function (``sc.compile`` adds one for ``sc.nn.CausalLM`` models: inputs
``input_ids [batch, seq]``, ``positions [seq]``, then ``past_key.{i}``/``past_value.{i}``
caches ``[batch, kv_heads, ctx, head_dim]``), the runtime owns one cache buffer per input,
sized for the whole generation, and hands each step a view of its first ``ctx`` positions; the
step writes its new keys in place (the caches are donated) and attention reads the view. The
prompt is one step (``ctx = seq``), every new token another (``ctx = seq + t``).

Without one, ``generate`` recomputes the whole sequence with the main function for every new
token: correct, but quadratic.

A vision-language model (LLaVA) also takes ``pixel_values``: its ``prefill`` function (the main
function's inputs, ``positions``, then the same caches as ``decode``) runs the prompt step with
the image, and ``decode`` the following tokens (transformers reads the image at the first step
only). ``generate(cm, ids, n, {"pixel_values": image})`` passes such extra inputs by name.
"""
from __future__ import annotations

import numpy as np

from ..errors import SparsecError

DECODE = "decode"
PREFILL = "prefill"


def is_cache_input(name: str) -> bool:
    return name.startswith("past_key.") or name.startswith("past_value.")


def _check_ids(input_ids, max_new_tokens) -> np.ndarray:
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise SparsecError(f"generate: input_ids must be integers [batch, seq], got shape {ids.shape} "
                           f"dtype {ids.dtype}")
    if ids.shape[1] == 0:
        raise SparsecError("generate: input_ids is empty (seq = 0); give at least one token")
    if int(max_new_tokens) < 0:
        raise SparsecError(f"generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    return ids.astype(np.int64)


def _extra_inputs(cm, extra: dict | None) -> list:
    """The main function's inputs other than ``input_ids``, in its order, from ``extra`` by name."""
    extra = dict(extra or {})
    names = [n for n in cm.input_names if n != "input_ids"]
    unknown = sorted(set(extra) - set(names))
    if unknown:
        raise SparsecError(f"generate: the model takes no input {', '.join(map(repr, unknown))} (its inputs: "
                           f"{', '.join(map(str, cm.input_names))})")
    if not extra:
        return []
    missing = [n for n in names if n not in extra]
    if missing:
        raise SparsecError(f"generate: missing input {', '.join(map(repr, missing))} (the model takes "
                           f"{', '.join(map(str, cm.input_names))})")
    return [np.asarray(extra[n]) for n in names]


def generate(cm, input_ids, max_new_tokens: int, extra: dict | None = None) -> np.ndarray:
    """Greedy decoding; ``extra``: the prompt step's other inputs by name (``pixel_values``)."""
    ids = _check_ids(input_ids, max_new_tokens)
    n = int(max_new_tokens)
    arrays = _extra_inputs(cm, extra)
    if n == 0:
        return ids.copy()
    ex = cm.executables.get(DECODE)
    if ex is None or (arrays and PREFILL not in cm.executables):
        if len(arrays) + 1 != len(cm.input_names):
            raise SparsecError(f"generate: the model takes {', '.join(map(str, cm.input_names))}; give the inputs "
                               f"other than input_ids by name")
        return _generate_recompute(cm, ids, n, arrays)
    first = cm.executables[PREFILL] if arrays else None
    return _generate_cached(ex, ids, n, first, arrays)


def _generate_recompute(cm, ids: np.ndarray, n: int, arrays=()) -> np.ndarray:
    out = ids
    pos = cm.input_names.index("input_ids") if arrays else 0
    for _ in range(n):
        inputs = list(arrays)
        inputs.insert(pos, out)
        logits = cm.run(*inputs)[0]
        if arrays:
            _check_finite(logits)
        nxt = np.argmax(logits[:, -1, :], axis=-1).astype(np.int64)
        out = np.concatenate([out, nxt[:, None]], axis=1)
    return out


def _check_finite(logits) -> None:
    """A vision-language model's merge gives NaN when the image tokens do not match the features."""
    if not np.isfinite(logits[:, -1]).all():
        raise SparsecError("generate: the prompt step gave non-finite logits; with an image this means "
                           "input_ids holds a different number of image tokens than the image gives "
                           "feature rows (LLaVA: the image token repeated once per image feature row)")


def _generate_cached(ex, ids: np.ndarray, n: int, first=None, arrays=()) -> np.ndarray:
    """``first`` (the prefill executable) runs the prompt step with ``arrays`` before the ids."""
    plan = ex.plan
    batch, seq = ids.shape
    total = seq + n
    caches = []
    for slot_i, name in zip(plan.inputs[2:], plan.input_names[2:]):
        t = plan.slots[slot_i].type
        shape = [batch if d == "batch" else (total if d == "ctx" else d) for d in t.shape]
        if not all(isinstance(d, int) for d in shape):
            raise SparsecError(f"generate: cache input {name!r} has dims {t.pretty()}; expected "
                               f"[batch, kv_heads, ctx, head_dim]")
        caches.append(_new_cache(ex, shape, t.dtype.np))
    out = np.empty((batch, total), np.int64)
    out[:, :seq] = ids
    step_ids, start = ids, 0
    for t in range(n):
        ctx = start + step_ids.shape[1]
        positions = np.arange(start, ctx, dtype=np.int64)
        views = [c[:, :, :ctx, :] for c in caches]
        if t == 0 and first is not None:
            logits = _logits(first, *arrays, step_ids, positions, *views)
            _check_finite(logits)
        else:
            logits = _logits(ex, step_ids, positions, *views)
        nxt = np.argmax(logits[:, -1, :], axis=-1).astype(np.int64)
        out[:, seq + t] = nxt
        step_ids, start = nxt[:, None], ctx
    return out


def _new_cache(ex, shape, dtype):
    """A cache buffer for the whole generation; a CUDA executable keeps it on the device."""
    if getattr(ex, "on_device", False):
        return ex.device_zeros(shape, dtype)
    return np.zeros(shape, dtype)


def _logits(ex, *arrays) -> np.ndarray:
    """The step's logits (its first output) on the host; a CUDA executable copies only them
    back (the updated caches stay on the device)."""
    if getattr(ex, "on_device", False):
        return ex.call(*arrays, to_host=(0,))[0]
    return ex(*arrays)[0]
