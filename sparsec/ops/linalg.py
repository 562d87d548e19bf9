"""(to be filled) sc dialect ops: linalg family."""
from __future__ import annotations

__all__: list[str] = []
