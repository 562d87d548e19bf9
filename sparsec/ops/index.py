"""(to be filled) sc dialect ops: index family."""
from __future__ import annotations

__all__: list[str] = []
