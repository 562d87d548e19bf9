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


def read_weights(path: str) -> dict:
    """Arrays from a ``.safetensors`` file (the safetensors library; never pickle)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
        return dict(load_file(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise SparsecError(f"cannot read weights {path}: {e}") from None


def write_weights(path: str, weights: dict) -> None:
    """Write ``weights`` atomically (temporary file, then rename)."""
    import numpy as np
    from safetensors.numpy import save_file
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=d)
    os.close(fd)
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, tmp)
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
