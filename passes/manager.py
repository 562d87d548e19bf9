"""The pass manager: runs a pipeline of passes over a graph, with verification, IR dumps,
timing, statistics and a crash reproducer.

    pm = PassManager.parse("canonicalize,cse,dce", print_ir_after_change=True)
    g2 = pm.run(g)          # g itself is left untouched unless inplace=True
    print(pm.format_report())
"""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import TextIO

from ..errors import SparsecError
from ..ir import Graph
from .registry import Pass, PassFailure, Statistics, parse_pipeline


@dataclass
class PassRecord:
    """What one pass did in one run."""
    name: str
    pipeline_text: str
    seconds: float
    ops_before: int
    ops_after: int
    changed: bool
    stats: Statistics = field(default_factory=Statistics)


def count_ops(graph: Graph) -> int:
    """Top-level ops of every function (what becomes a kernel each); ops inside an ``sc.fused``
    region count as part of their group."""
    return sum(1 for fn in graph.functions.values() for op in fn.ops if op.name != "func.return")


class PassManager:
    """An ordered list of passes and how to run them.

    ``verify_each``: verify the graph after every pass (a pass that breaks the IR is named).
    ``print_ir_after_all`` / ``print_ir_after_change``: print the IR to ``stream`` after each
    pass (or only those that changed it). ``dump_dir``: write ``00-input.mlir``,
    ``01-<pass>.mlir``... each headed by the exact pipeline and the command reproducing it.
    ``time_passes``: collect per-pass wall time (see ``format_report``).
    ``reproducer_dir``: where a crash writes its reproducer (default: ``dump_dir`` or the
    system temporary directory). ``source``: the input file name, used in reproduce commands.
    """

    def __init__(self, passes=(), *, verify_each: bool = True, print_ir_after_all: bool = False,
                 print_ir_after_change: bool = False, dump_dir: str | None = None, time_passes: bool = False,
                 reproducer_dir: str | None = None, stream: TextIO | None = None, source: str | None = None):
        self.passes: list[Pass] = []
        for p in passes:
            self.add(p)
        self.verify_each = verify_each
        self.print_ir_after_all = print_ir_after_all
        self.print_ir_after_change = print_ir_after_change
        self.dump_dir = dump_dir
        self.time_passes = time_passes
        self.reproducer_dir = reproducer_dir
        self.stream = stream
        self.source = source
        self.report: list[PassRecord] = []

    @classmethod
    def parse(cls, text: str, **options) -> "PassManager":
        """A pass manager for a pipeline text such as ``"canonicalize,cse,quantize{mode=q4_0}"``."""
        return cls(parse_pipeline(text), **options)

    def add(self, p: Pass | str) -> "PassManager":
        if isinstance(p, str):
            self.passes.extend(parse_pipeline(p))
        elif isinstance(p, Pass):
            self.passes.append(p)
        else:
            raise TypeError(f"PassManager.add: expected a Pass or pipeline text, got {type(p).__name__}")
        return self

    @property
    def pipeline(self) -> str:
        """The exact pipeline text (every option that differs from its default is spelled out)."""
        return ",".join(str(p) for p in self.passes)

    def __repr__(self) -> str:
        return f"PassManager({self.pipeline!r})"

    # -- running ---------------------------------------------------------------------------
    def run(self, graph: Graph, inplace: bool = False, after_pass=None) -> Graph:
        """Run every pass in order; returns the rewritten graph (a copy unless ``inplace``).
        ``after_pass(pass, graph)`` is called after each pass (``sc.compile`` keeps the graph as the
        quantize pass left it, for the per-layer quantization report)."""
        if not inplace:
            from ..testing.equivalence import clone
            graph = clone(graph)
        self.report = []
        out = self.stream if self.stream is not None else sys.stderr
        if self.dump_dir:
            os.makedirs(self.dump_dir, exist_ok=True)
            self._dump(graph, 0, "input", "")
        for i, p in enumerate(self.passes, 1):
            before = str(graph)
            n_before = count_ops(graph)
            stats = Statistics()
            t0 = time.perf_counter()
            try:
                p.run(graph, stats)
            except Exception as e:  # noqa: BLE001 - any failure inside a pass gets a reproducer
                path = self._reproducer(before, i)
                detail = f"{type(e).__name__}: {e}"
                tb = "" if isinstance(e, SparsecError) else "\n" + "".join(
                    traceback.format_exception(type(e), e, e.__traceback__)[-3:]).rstrip()
                raise PassFailure(f"pass '{p}' (#{i} of '{self.pipeline}') failed: {detail}{tb}\n"
                                  f"reproducer: {path}") from e
            seconds = time.perf_counter() - t0
            if self.verify_each:
                try:
                    graph.verify()
                except SparsecError as e:
                    path = self._reproducer(before, i)
                    raise PassFailure(f"pass '{p}' (#{i} of '{self.pipeline}') produced invalid IR: {e}\n"
                                      f"reproducer: {path}") from e
            try:
                after = str(graph)
            except Exception as e:  # noqa: BLE001 - unprintable IR (uses before definition) is invalid IR
                path = self._reproducer(before, i)
                raise PassFailure(f"pass '{p}' (#{i} of '{self.pipeline}') produced IR that cannot be printed: "
                                  f"{e}\nreproducer: {path}") from e
            changed = after != before
            self.report.append(PassRecord(p.name, str(p), seconds, n_before, count_ops(graph), changed, stats))
            if self.print_ir_after_all or (self.print_ir_after_change and changed):
                out.write(f"// ----- IR after {p}{'' if changed else ' (unchanged)'} -----\n{after}")
            if self.dump_dir:
                self._dump(graph, i, p.name, after)
            if after_pass is not None:
                after_pass(p, graph)
        return graph

    # -- files -----------------------------------------------------------------------------
    def _command(self, upto: int) -> str:
        pipe = ",".join(str(p) for p in self.passes[:upto])
        return f"sparsec opt {shlex.quote(self.source or 'INPUT.mlir')} -p {shlex.quote(pipe)}"

    def _dump(self, graph: Graph, index: int, name: str, text: str) -> None:
        from ..fileio import atomic_write_text
        head = (f"// sparsec IR dump {index:02d}: {'input' if index == 0 else 'after ' + str(self.passes[index - 1])}\n"
                f"// pipeline: {self.pipeline}\n"
                f"// reproduce: {self._command(index)}\n")
        atomic_write_text(os.path.join(self.dump_dir, f"{index:02d}-{name}.mlir"), head + (text or str(graph)))

    def _reproducer(self, text_before: str, index: int) -> str:
        """IR before the failing pass, headed by the command that re-runs just that pass."""
        from ..fileio import atomic_write_text
        d = self.reproducer_dir or self.dump_dir or tempfile.gettempdir()
        p = self.passes[index - 1]
        path = os.path.join(d, f"sparsec-reproducer-{p.name}.mlir")
        header = (f"// sparsec crash reproducer: pass '{p}' (#{index} of pipeline '{self.pipeline}') failed on this IR\n"
                  f"// reproduce: sparsec opt {shlex.quote(path)} -p {shlex.quote(str(p))}\n")
        try:
            atomic_write_text(path, header + text_before)
        except OSError as e:
            return f"(could not be written to {path}: {e})"
        return path

    # -- reports ---------------------------------------------------------------------------
    def statistics(self) -> list[str]:
        lines = []
        for r in self.report:
            lines.extend(r.stats.format(r.name))
        return lines

    def format_report(self, timing: bool | None = None) -> str:
        """Per pass: ops before -> after, whether it changed anything, its statistics, and its
        wall time (with ``time_passes`` or ``timing=True``)."""
        timing = self.time_passes if timing is None else timing
        total = sum(r.seconds for r in self.report) or 1e-12
        lines = []
        for r in self.report:
            t = f"{r.seconds * 1e3:9.2f} ms {100 * r.seconds / total:5.1f}%  " if timing else ""
            lines.append(f"  {t}{r.pipeline_text:<32} ops {r.ops_before:>5} -> {r.ops_after:<5}"
                         f"{'' if r.changed else ' (no change)'}")
            lines.extend(f"      {s}" for s in r.stats.format(r.name))
        if timing:
            lines.append(f"  {total * 1e3:9.2f} ms total")
        return "\n".join(lines)
