"""(to be filled) sc dialect ops: shape family."""
from __future__ import annotations

__all__: list[str] = []
