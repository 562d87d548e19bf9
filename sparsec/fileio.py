"""File helpers: atomic writes (no half-written outputs) and reading IR text from disk."""
from __future__ import annotations

import os
import tempfile

from .errors import SparsecError


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and rename, so a failure or a
    concurrent reader never sees a partial file."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file in the same folder and a rename."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_ir(path: str):
    """Parse an ``.mlir`` file (errors carry ``path:line:col``)."""
    from .ir import parse
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise SparsecError(f"cannot read IR file {path}: {e}") from None
    return parse(text, filename=path)


def weights_path_for(ir_path: str) -> str:
    """The weight file that travels with an IR file: ``model.mlir`` -> ``model.safetensors``."""
    return os.path.splitext(ir_path)[0] + ".safetensors"


#: safetensors metadata key listing the quantized weights: JSON ``{name: "fmt;NxK;layout"}``
QUANT_METADATA = "sparsec.quantized"
#: a quantized weight ``name`` is stored as one tensor per part, ``name::part`` (``name::d``, ``name::qs``)
PART_SEP = "::"


def flatten_weights(weights: dict) -> tuple[dict, dict[str, str]]:
    """``weights`` (arrays and ``QuantizedTensor``s) as plain tensors plus ``{name: metadata}``
    of the quantized ones: their parts are ``name::part`` tensors (kept in their layout, e.g. the
    kernels' repacked form), format, shape and layout go in the metadata."""
    from .quant import QuantizedTensor
    tensors, quant = {}, {}
    for name, w in weights.items():
        if PART_SEP in name:
            raise SparsecError(f"weight {name!r}: weight names must not contain {PART_SEP!r} (it separates the "
                               f"parts of quantized weights in weight files)")
        if isinstance(w, QuantizedTensor):
            quant[name] = w.metadata()
            tensors.update(w.to_tensors(name))
        else:
            tensors[name] = w
    return tensors, quant


def unflatten_weights(tensors: dict, quant: dict[str, str], where: str, error=SparsecError) -> dict:
    """The inverse of ``flatten_weights``: ``QuantizedTensor``s reassembled (and checked) from
    their parts; ``error`` (naming ``where`` and the tensor) for missing, extra or wrong parts."""
    from .quant import QuantizationError, QuantizedTensor
    out = {k: v for k, v in tensors.items() if PART_SEP not in k}
    parts: dict[str, dict] = {}
    for k, v in tensors.items():
        if PART_SEP in k:
            base, part = k.rsplit(PART_SEP, 1)
            parts.setdefault(base, {})[part] = v
    if not isinstance(quant, dict):
        raise error(f"{where}: unreadable quantized-weight metadata (expected a JSON object)")
    stray = sorted(set(parts) - set(quant))
    if stray:
        raise error(f"{where}: tensors {', '.join(f'{n}{PART_SEP}*' for n in stray)} are parts of a quantized "
                    f"weight but the file's metadata does not describe {stray[0]!r}")
    for name, meta in quant.items():
        if name not in parts:
            raise error(f"{where}: quantized weight {name!r} ({meta}) has no stored parts")
        try:
            qt = QuantizedTensor.from_tensors(str(meta), parts[name])
            _check_layout(qt)
        except QuantizationError as e:
            raise error(f"{where}: quantized weight {name!r} is broken: {e}") from None
        out[name] = qt
    return out


def _check_layout(qt) -> None:
    """A repacked layout must be one this build knows (the kernels register theirs)."""
    if qt.layout == "blocks":
        return
    from .quant import QuantizationError, layouts  # (the kernels' layouts register with sparsec.quant)
    if qt.layout not in layouts.layouts_for(qt.fmt):
        raise QuantizationError(f"layout {qt.layout!r} of format {qt.fmt} is unknown to this build (known: "
                                f"{', '.join(layouts.layouts_for(qt.fmt))}); recompile the model")


def read_weights(path: str) -> dict:
    """Arrays (and ``QuantizedTensor``s) from a ``.safetensors`` file (the safetensors library;
    never pickle)."""
    import json

    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise SparsecError(f"cannot read weights {path}: {e}") from None
    try:
        quant = json.loads(meta.get(QUANT_METADATA, "{}"))
    except json.JSONDecodeError as e:
        raise SparsecError(f"cannot read weights {path}: unreadable {QUANT_METADATA} metadata: {e}") from None
    return unflatten_weights(tensors, quant, f"weights {path}")


def write_weights(path: str, weights: dict) -> None:
    """Write ``weights`` atomically (temporary file, then rename); quantized weights as their
    parts plus metadata (``flatten_weights``)."""
    import json

    import numpy as np
    from safetensors.numpy import save_file
    tensors, quant = flatten_weights(weights)
    meta = {QUANT_METADATA: json.dumps(quant, sort_keys=True)} if quant else None
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=d)
    os.close(fd)
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_model_ir(path: str):
    """An ``.mlir`` file and, when it exists, its sibling ``.safetensors`` weights."""
    g = read_ir(path)
    wp = weights_path_for(path)
    if os.path.exists(wp):
        g.weights.update(read_weights(wp))
    return g
