"""The compiled artifact ``.spc``: one safetensors file holding the weights, with the optimized
IR text and a manifest (format version, target, pipeline, lowering choices, checksum) in its
metadata. Weights stay memory-mappable; any change to the bytes fails the checksum.

Layout of the safetensors ``__metadata__`` (all strings):
    format            "sparsec.spc"
    format_version    FORMAT_VERSION
    ir                the optimized module as MLIR text
    manifest          JSON: sparsec version, target, pipeline, quantize, kernels per function,
                      dtypes stored as raw bits (bf16 -> uint16), and ``quantized``: per
                      quantized weight ``"format;NxK;layout"`` (its parts are the tensors
                      ``name::part``, in the layout recorded, e.g. the kernels' repacked form)
    checksum          sha256 over ir, manifest and every tensor's name, dtype, shape and bytes
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from ..errors import SparsecError

FORMAT = "sparsec.spc"
FORMAT_VERSION = "1"


class ArtifactError(SparsecError):
    """A ``.spc`` file that cannot be used: missing, corrupted, or from another format version."""


def _checksum(ir: str, manifest: str, tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(ir.encode())
    h.update(b"\0")
    h.update(manifest.encode())
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def save_artifact(path: str, ir: str, weights: dict[str, np.ndarray], manifest: dict) -> None:
    """Write the artifact atomically (temporary file in the same folder, then rename)."""
    from safetensors.numpy import save_file

    from ..fileio import flatten_weights
    weights, quant = flatten_weights(weights)
    tensors, raw = {}, {}
    for name, a in weights.items():
        a = np.ascontiguousarray(a)
        if a.dtype.name == "bfloat16":  # safetensors' NumPy side has no bf16: store the bits
            raw[name] = "bfloat16"
            a = a.view(np.uint16)
        elif a.dtype.kind not in "biuf":
            raise ArtifactError(f"weight {name!r}: dtype {a.dtype} cannot be stored")
        tensors[name] = a
    manifest = dict(manifest, raw_dtypes=raw, quantized=quant)
    man = json.dumps(manifest, sort_keys=True)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "ir": ir, "manifest": man,
            "checksum": _checksum(ir, man, tensors)}
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".spc", dir=d)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_artifact(path: str) -> tuple[str, dict[str, np.ndarray], dict]:
    """(IR text, weights, manifest); ``ArtifactError`` naming what is wrong otherwise."""
    from safetensors import SafetensorError, safe_open
    if not os.path.isfile(path):
        raise ArtifactError(f"{path}: no such file")
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ArtifactError(f"{path}: not a readable .spc file (corrupted or truncated?): {e}") from None
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a sparsec artifact (format {meta.get('format')!r}, expected {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact format version {meta.get('format_version')!r}, this sparsec reads "
                            f"version {FORMAT_VERSION}; recompile the model with `sparsec compile`")
    ir, man = meta.get("ir", ""), meta.get("manifest", "{}")
    if _checksum(ir, man, tensors) != meta.get("checksum"):
        raise ArtifactError(f"{path}: checksum mismatch: the file is corrupted")
    try:
        manifest = json.loads(man)
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: unreadable manifest: {e}") from None
    for name, dt in manifest.get("raw_dtypes", {}).items():
        if dt == "bfloat16":
            import ml_dtypes
            tensors[name] = tensors[name].view(ml_dtypes.bfloat16)
    from ..fileio import unflatten_weights
    weights = unflatten_weights(tensors, manifest.get("quantized", {}), path, ArtifactError)
    return ir, weights, manifest
