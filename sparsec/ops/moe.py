"""(to be filled) sc dialect ops: moe family."""
from __future__ import annotations

__all__: list[str] = []
