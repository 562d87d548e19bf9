"""Passes as frozen dataclasses registered by name; their fields are their options.

    @register_pass
    @dataclass(frozen=True)
    class Quantize(Pass):
        '''weights to a quantized format'''
        name = "quantize"
        mode: str = option("q8_0", choices=("int8", "q8_0", "q4_0", "int4"), doc="format")
        group: int = option(32, doc="values per scale")

        def run(self, graph, stats): ...

``quantize{mode=q4_0,group=32}`` parses straight into ``Quantize(mode="q4_0", group=32)``; an
unknown pass or option, or a value of the wrong kind, is a ``PipelineError`` that lists what
exists.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import SparsecError


class PipelineError(SparsecError):
    """A pipeline text or pass option that cannot be understood."""


class PassFailure(SparsecError):
    """A pass crashed or produced IR that does not verify."""


def option(default: Any, *, choices: tuple | None = None, doc: str = "") -> Any:
    """A pass option: a dataclass field with a default, allowed values and a one-line doc."""
    return field(default=default, metadata={"choices": choices, "doc": doc})


class Statistics(Counter):
    """Counters a pass reports (``stats["ops removed"] += 3`` prints ``cse: 3 ops removed``)."""

    def format(self, pass_name: str) -> list[str]:
        return [f"{pass_name}: {n} {what}" for what, n in self.items() if n]


@dataclass(frozen=True)
class Pass:
    """Base of every pass. Subclasses set ``name`` (and ``summary`` via their docstring), declare
    options as dataclass fields, and implement ``run`` which rewrites ``graph`` in place."""

    name: ClassVar[str] = ""

    def run(self, graph, stats: Statistics) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"pass {type(self).__name__} does not implement run()")

    # -- text form -------------------------------------------------------------------------
    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def __str__(self) -> str:
        """The pipeline text for this pass: its name and every option that differs from the default."""
        opts = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v != f.default:
                opts.append(f"{f.name.replace('_', '-')}={_format_value(v)}")
        return self.name + (f"{{{','.join(opts)}}}" if opts else "")

    @classmethod
    def options_help(cls) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            ch = f.metadata.get("choices")
            out.append(f"{f.name.replace('_', '-')}={_format_value(f.default)}"
                       + (f" (one of {', '.join(map(str, ch))})" if ch else "")
                       + (f": {f.metadata.get('doc')}" if f.metadata.get("doc") else ""))
        return out

    @classmethod
    def from_options(cls, options: dict[str, str], where: str = "") -> "Pass":
        """Build the pass from textual options, converting each to its field's type."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, text in options.items():
            fname = key.replace("-", "_")
            if fname not in fields:
                known = ", ".join(cls.options_help()) or "none"
                raise PipelineError(f"{where}pass '{cls.name}' has no option '{key}'; its options: {known}")
            f = fields[fname]
            value = _convert(text, hints.get(fname, str), f"{where}pass '{cls.name}' option '{key}'")
            ch = f.metadata.get("choices")
            if ch and value not in ch:
                raise PipelineError(f"{where}pass '{cls.name}' option '{key}': {text!r} is not one of "
                                    f"{', '.join(map(str, ch))}")
            kwargs[fname] = value
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise PipelineError(f"{where}pass '{cls.name}': {e}") from None


def _format_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    s = str(v)
    return f'"{s}"' if any(c in s for c in ',{}="') or s == "" else s


def _convert(text: str, typ, what: str):
    origin = typing.get_origin(typ)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if text.lower() in ("none", "null", ""):
            return None
        typ = args[0]
    if typ is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise PipelineError(f"{what}: expected true or false, got {text!r}")
    if typ is int:
        try:
            return int(text, 0)
        except ValueError:
            raise PipelineError(f"{what}: expected an integer, got {text!r}") from None
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise PipelineError(f"{what}: expected a number, got {text!r}") from None
    return text


PASSES: dict[str, type[Pass]] = {}
#: named pipelines usable inside pipeline text ("default" is what ``sc.compile`` runs)
PIPELINES: dict[str, str] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator adding a pass to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no pass name")
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
        raise TypeError(f"pass {cls.name}: declare it as @dataclass(frozen=True) (its fields are its options)")
    if cls.name in PASSES and PASSES[cls.name] is not cls:
        raise ValueError(f"pass {cls.name!r} is registered twice")
    PASSES[cls.name] = cls
    return cls


def available() -> str:
    return ", ".join(sorted(PASSES)) + (f"; pipelines: {', '.join(sorted(PIPELINES))}" if PIPELINES else "")


# ---------------------------------------------------------------------------------------------
# pipeline text: item (',' item)* ; item := name ('{' key '=' value (',' key '=' value)* '}')?

def parse_pipeline(text: str) -> list[Pass]:
    """``"canonicalize,cse,quantize{mode=q4_0}"`` -> pass objects (named pipelines expanded)."""
    return _PipelineParser(text).parse()


def pipeline_names(text: str) -> list[str]:
    """The top-level names of a pipeline text, named pipelines not expanded
    (``"default,quantize{skip='default'}"`` -> ``["default", "quantize"]``)."""
    parser = _PipelineParser(text)
    parser.parse()
    return parser.names


class _PipelineParser:
    def __init__(self, text: str, depth: int = 0):
        self.text, self.pos, self.depth = text, 0, depth
        self.names: list[str] = []   # top-level names, as written

    def error(self, msg: str, pos: int | None = None) -> PipelineError:
        p = self.pos if pos is None else pos
        return PipelineError(f"pipeline {self.text!r}, column {p + 1}: {msg}\n  {self.text}\n  {' ' * p}^")

    def skip_ws(self):
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def word(self, what: str) -> str:
        self.skip_ws()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "-_."):
            self.pos += 1
        if start == self.pos:
            found = repr(self.text[self.pos]) if self.pos < len(self.text) else "the end"
            raise self.error(f"expected {what}, found {found}")
        return self.text[start:self.pos]

    def value(self) -> str:
        self.skip_ws()
        if self.pos < len(self.text) and self.text[self.pos] in "\"'":
            q, start = self.text[self.pos], self.pos
            end = self.text.find(q, self.pos + 1)
            if end < 0:
                raise self.error("unterminated quoted value", start)
            self.pos = end + 1
            return self.text[start + 1:end]
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",{}=" and not self.text[self.pos].isspace():
            self.pos += 1
        return self.text[start:self.pos]

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> list[Pass]:
        if not self.text.strip():
            return []
        out: list[Pass] = []
        while True:
            start = self.pos
            name = self.word("a pass name")
            options: dict[str, str] = {}
            if self.peek() == "{":
                self.pos += 1
                while self.peek() != "}":
                    kpos = self.pos
                    key = self.word("an option name")
                    if self.peek() != "=":
                        raise self.error(f"expected '=' after option '{key}'")
                    self.pos += 1
                    if key in options:
                        raise self.error(f"option '{key}' given twice", kpos)
                    options[key] = self.value()
                    if self.peek() == ",":
                        self.pos += 1
                    elif self.peek() != "}":
                        raise self.error("expected ',' or '}' in the options")
                self.pos += 1
            out.extend(self.make(name, options, start))
            self.names.append(name)
            c = self.peek()
            if c == "":
                return out
            if c != ",":
                raise self.error(f"expected ',' between passes, found {c!r}")
            self.pos += 1

    def make(self, name: str, options: dict[str, str], pos: int) -> list[Pass]:
        if name in PIPELINES and name not in PASSES:
            if options:
                raise self.error(f"pipeline '{name}' takes no options", pos)
            if self.depth > 8:
                raise self.error(f"pipeline '{name}' refers to itself", pos)
            return _PipelineParser(PIPELINES[name], self.depth + 1).parse()
        cls = PASSES.get(name)
        if cls is None:
            close = difflib.get_close_matches(name, list(PASSES) + list(PIPELINES), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.error(f"unknown pass '{name}'{hint}; available: {available()}", pos)
        return [cls.from_options(options, where=f"pipeline {self.text!r}: ")]
