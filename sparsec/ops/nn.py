"""(to be filled) sc dialect ops: nn family."""
from __future__ import annotations

__all__: list[str] = []
