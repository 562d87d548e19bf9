"""Greedy decoding for compiled causal LMs.

With a ``decode`` function (``sc.compile`` adds one for ``sc.nn.CausalLM`` models: inputs
``input_ids [batch, seq]``, ``positions [seq]``, then ``past_key.{i}``/``past_value.{i}``
caches ``[batch, kv_heads, ctx, head_dim]``), the runtime owns one cache buffer per input,
sized for the whole generation, and hands each step a view of its first ``ctx`` positions; the
step writes its new keys in place (the caches are donated) and attention reads the view. The
prompt is one step (``ctx = seq``), every new token another (``ctx = seq + t``).

Without one, ``generate`` recomputes the whole sequence with the main function for every new
token: correct, but quadratic.
"""
from __future__ import annotations

import numpy as np

from ..errors import SparsecError

DECODE = "decode"


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


def generate(cm, input_ids, max_new_tokens: int) -> np.ndarray:
    ids = _check_ids(input_ids, max_new_tokens)
    n = int(max_new_tokens)
    if n == 0:
        return ids.copy()
    ex = cm.executables.get(DECODE)
    if ex is None:
        return _generate_recompute(cm, ids, n)
    return _generate_cached(ex, ids, n)


def _generate_recompute(cm, ids: np.ndarray, n: int) -> np.ndarray:
    out = ids
    for _ in range(n):
        logits = cm.run(out)[0]
        nxt = np.argmax(logits[:, -1, :], axis=-1).astype(np.int64)
        out = np.concatenate([out, nxt[:, None]], axis=1)
    return out


def _generate_cached(ex, ids: np.ndarray, n: int) -> np.ndarray:
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
        caches.append(np.zeros(shape, t.dtype.np))
    out = np.empty((batch, total), np.int64)
    out[:, :seq] = ids
    step_ids, start = ids, 0
    for t in range(n):
        ctx = start + step_ids.shape[1]
        positions = np.arange(start, ctx, dtype=np.int64)
        views = [c[:, :, :ctx, :] for c in caches]
        logits = ex(step_ids, positions, *views)[0]
        nxt = np.argmax(logits[:, -1, :], axis=-1).astype(np.int64)
        out[:, seq + t] = nxt
        step_ids, start = nxt[:, None], ctx
    return out
