"""The exceptions sparsec raises for bad input: each names the place and what was expected."""
from __future__ import annotations


class SparsecError(Exception):
    """Base class of every error sparsec raises on purpose."""


class ParseError(SparsecError):
    """Malformed IR text. The message starts with ``file:line:col`` and shows the line."""

    def __init__(self, message: str, filename: str = "<string>", line: int = 0, col: int = 0,
                 source_line: str | None = None):
        self.filename, self.line, self.col, self.reason = filename, line, col, message
        text = f"{filename}:{line}:{col}: error: {message}"
        if source_line is not None:
            text += f"\n{source_line}\n{' ' * max(col - 1, 0)}^"
        super().__init__(text)


class VerifyError(SparsecError):
    """A graph that breaks an invariant of the IR (types, SSA, attributes)."""


class TraceError(SparsecError):
    """Tracing hit something it cannot record (data-dependent control flow, bad operands)."""


class InterpretError(SparsecError):
    """The reference interpreter failed on an op; the message names the op and its origin."""
