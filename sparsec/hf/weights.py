"""Checkpoint tensors from a Hugging Face folder, read with the ``safetensors`` library only
(memory-mapped by ``safe_open``; never pickle): one ``*.safetensors`` file, several, or a sharded
checkpoint described by ``model.safetensors.index.json``. fp32, fp16 and bf16 tensors are read
(bf16 as ``ml_dtypes.bfloat16``) and converted to the model's parameter dtype when loaded.

``plan_weights`` maps checkpoint tensors onto a model's parameters: generic renames (Hugging
Face's fused 3-D expert tensors ``experts.gate_up_proj [E, 2I, H]`` / ``experts.down_proj
[E, H, I]`` become per-expert ``experts.{e}.gate_proj/up_proj/down_proj.weight``), the
architecture's own ``rename_weight``, then a strict check: every missing, unexpected or wrongly
shaped tensor is an ``HFWeightError`` naming it with the expected and found shapes.
"""
from __future__ import annotations

import glob
import json
import os
import re

import numpy as np

from .config import HFWeightError

#: tensors some checkpoints carry that are buffers, not weights (recomputed by sparsec)
IGNORED = (re.compile(r"(^|\.)rotary_emb\.inv_freq$"), re.compile(r"(^|\.)position_ids$"),
           re.compile(r"(^|\.)masked_bias$"), re.compile(r"(^|\.)attn\.bias$"))

PICKLE_EXTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
FLOAT_KINDS = ("float32", "float16", "bfloat16", "float64")


class Checkpoint:
    """The tensors of a folder's safetensors files: ``names()``, ``shape(name)``, ``dtype(name)``,
    ``get(name)`` (a NumPy array). Files stay memory-mapped until ``close()``."""

    def __init__(self, folder: str):
        from safetensors import SafetensorError, safe_open
        self.folder = folder
        files = _safetensors_files(folder)
        self._where: dict[str, str] = {}
        self._handles = {}
        for fname, names in files.items():
            path = os.path.join(folder, fname)
            if not os.path.exists(path):
                raise HFWeightError(f"{folder}: model.safetensors.index.json names {fname}, which does not exist")
            try:
                h = safe_open(path, framework="numpy")
                keys = list(h.keys())
            except (SafetensorError, OSError, ValueError, RuntimeError) as e:
                raise HFWeightError(f"cannot read weights {path}: {e}") from None
            self._handles[fname] = h
            wanted = keys if names is None else names
            for n in wanted:
                if n not in keys:
                    raise HFWeightError(f"{path}: tensor {n!r} (listed in model.safetensors.index.json) is not in it")
                if n in self._where and self._where[n] != fname:
                    raise HFWeightError(f"{folder}: tensor {n!r} is in both {self._where[n]} and {fname}")
                self._where[n] = fname

    def names(self) -> list[str]:
        return list(self._where)

    def _slice(self, name):
        return self._handles[self._where[name]].get_slice(name)

    def shape(self, name: str) -> tuple:
        return tuple(int(d) for d in self._slice(name).get_shape())

    def dtype(self, name: str) -> str:
        return {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
                "I32": "int32", "I8": "int8", "U8": "uint8", "BOOL": "bool"}.get(
            self._slice(name).get_dtype(), self._slice(name).get_dtype())

    def get(self, name: str) -> np.ndarray:
        try:
            return self._handles[self._where[name]].get_tensor(name)
        except Exception as e:  # noqa: BLE001 - safetensors raises several types
            raise HFWeightError(f"cannot read tensor {name!r} from {self._where[name]}: {e}") from None

    def close(self) -> None:
        for h in self._handles.values():
            try:
                h.__exit__(None, None, None)
            except Exception:  # noqa: BLE001
                pass
        self._handles = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _safetensors_files(folder: str) -> dict[str, list[str] | None]:
    """``{file: tensor names or None (all)}``: the index's weight map, else every *.safetensors."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise HFWeightError(f"{index}: cannot read the weight_map: {e}") from None
        files: dict[str, list[str]] = {}
        for name, fname in weight_map.items():
            files.setdefault(fname, []).append(name)
        return files
    found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.safetensors")))
    if found:
        return {f: None for f in found}
    pickles = sorted(os.path.basename(p) for p in os.listdir(folder) if p.endswith(PICKLE_EXTS))
    if pickles:
        raise HFWeightError(f"{folder}: only PyTorch pickle weights ({', '.join(pickles[:4])}); sparsec reads "
                            f"safetensors only and never unpickles files (pickle can run arbitrary code). "
                            f"Convert them first, e.g. `model.save_pretrained(dir, safe_serialization=True)` in "
                            f"transformers")
    raise HFWeightError(f"{folder}: no *.safetensors weights")


# -- mapping checkpoint tensors onto a model -------------------------------------------------
_FUSED_GATE_UP = re.compile(r"^(.*\.experts)\.gate_up_proj(\.weight)?$")
_FUSED_DOWN = re.compile(r"^(.*\.experts)\.down_proj(\.weight)?$")


class Source:
    """Where a model parameter's data comes from: a checkpoint tensor, or a slice of a fused one."""

    def __init__(self, name: str, index=None, label: str | None = None):
        self.name, self.index = name, index
        self.label = label or name

    def read(self, ckpt: Checkpoint) -> np.ndarray:
        a = ckpt.get(self.name)
        return a if self.index is None else a[self.index]


def plan_weights(model, ckpt: Checkpoint, rename=None, tied: bool = False) -> dict[str, Source]:
    """``{model parameter name: Source}`` for every parameter, after checking names and shapes.

    ``rename(name) -> name | None`` is the architecture's renaming (None: ignore the tensor).
    ``tied``: the model ties ``lm_head.weight`` to the embeddings, so a checkpoint copy of
    ``lm_head.weight`` is ignored."""
    params = dict(model.named_parameters())
    rename = rename or (lambda n: n)
    plan: dict[str, Source] = {}
    origin: dict[str, str] = {}
    unexpected, bad_shapes = [], []

    def add(model_name, src, shape):
        if model_name is None:
            return
        if model_name in plan:
            raise HFWeightError(f"checkpoint tensors {origin[model_name]!r} and {src.label!r} both map to "
                                f"parameter {model_name!r}")
        if model_name not in params:
            if tied and model_name.endswith("lm_head.weight"):
                return
            unexpected.append(f"{src.label} {list(shape)}")
            return
        want = tuple(params[model_name].data.shape)
        if tuple(shape) != want:
            bad_shapes.append(f"{src.label}: expected shape {list(want)}, found {list(shape)}")
        plan[model_name] = src
        origin[model_name] = src.label

    for name in ckpt.names():
        if any(p.search(name) for p in IGNORED):
            continue
        shape = ckpt.shape(name)
        m_gu, m_dn = _FUSED_GATE_UP.match(name), _FUSED_DOWN.match(name)
        if m_gu or m_dn:
            prefix = (m_gu or m_dn).group(1)
            parts = ("gate_proj", "up_proj") if m_gu else ("down_proj",)
            targets = [[rename(f"{prefix}.{e}.{p}.weight") for p in parts] for e in range(max(shape[0], 1))] \
                if len(shape) == 3 else []
            expected = _fused_expected(params, rename, prefix, parts)
            if expected is not None and tuple(shape) != expected:
                bad_shapes.append(f"{name} (fused experts): expected shape {list(expected)}, found {list(shape)}")
                for e_targets in targets:
                    for t in e_targets:
                        if t in params:
                            plan[t] = Source(name, label=name)
                            origin[t] = name
                continue
            if len(shape) != 3:
                unexpected.append(f"{name} {list(shape)} (fused experts must be 3-D)")
                continue
            rows = shape[1] // len(parts)
            for e, e_targets in enumerate(targets):
                for j, t in enumerate(e_targets):
                    sl = (e, slice(j * rows, (j + 1) * rows))
                    add(t, Source(name, sl, f"{name}[{e}, {j * rows}:{(j + 1) * rows}]"), (rows,) + tuple(shape[2:]))
            continue
        add(rename(name), Source(name), shape)

    missing = [f"{n} {list(p.data.shape)}" for n, p in params.items() if n not in plan]
    problems = []
    if missing:
        problems.append(f"missing tensors (expected shape): {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors (found shape): {_few(unexpected)}")
    if bad_shapes:
        problems.append(f"wrongly shaped tensors: {_few(bad_shapes)}")
    if problems:
        raise HFWeightError(f"{ckpt.folder}: the checkpoint does not fit the model: " + "; ".join(problems))
    return plan


def _fused_expected(params, rename, prefix, parts):
    """``(E, len(parts) * I, H)`` from the model's per-expert parameters, or None if it has none."""
    n, shape = 0, None
    while True:
        names = [rename(f"{prefix}.{n}.{p}.weight") for p in parts]
        if not all(t in params for t in names):
            break
        shape = params[names[0]].data.shape
        n += 1
    if n == 0:
        return None
    return (n, len(parts) * shape[0]) + tuple(shape[1:])


def _few(items, k: int = 8) -> str:
    return ", ".join(items[:k]) + (f" ... ({len(items)} in all)" if len(items) > k else "")


def load_into(model, ckpt: Checkpoint, plan: dict[str, Source]) -> None:
    """Read every planned tensor and store it (converted to the parameter's dtype)."""
    params = dict(model.named_parameters())
    for name, src in plan.items():
        p = params[name]
        dt = ckpt.dtype(src.name)
        if dt not in FLOAT_KINDS:
            raise HFWeightError(f"tensor {src.label!r}: dtype {dt} (expected a float tensor: "
                                f"{', '.join(FLOAT_KINDS[:3])})")
        a = src.read(ckpt)
        p.data = np.ascontiguousarray(a.astype(p.data.dtype))
