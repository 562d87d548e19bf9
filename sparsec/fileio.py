"""File helpers: atomic writes (no half-written outputs) and reading IR text from disk."""
from __future__ import annotations

import os
import tempfile

from .errors import SparsecError


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and rename, so a failure or a
    concurrent reader never sees a partial file."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
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
