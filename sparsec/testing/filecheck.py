"""A small FileCheck: golden tests for passes written as ``.mlir`` files with check comments.

    // RUN: canonicalize,cse
    // CHECK: "sc.add"(%x, %x)
    // CHECK-NOT: "sc.neg"
    // CHECK-NEXT: "func.return"
    "builtin.module"() ({ ... }) : () -> ()

``RUN`` gives the pipeline; the file itself (comments are skipped by the parser) is the input.
Checks run in order over the output text, line by line as LLVM FileCheck does:
``CHECK`` matches on the current line or a later one; ``CHECK-NEXT`` on the line right after
the previous match; ``CHECK-SAME`` on the same line, after the previous match;
``CHECK-NOT`` must not occur between the previous match and the next positive match (or the
end); ``CHECK-COUNT-n`` matches n times in sequence. Text is literal except ``{{regex}}``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_DIRECTIVE = re.compile(r"^\s*//\s*(RUN|CHECK(?:-NEXT|-NOT|-SAME|-COUNT-\d+)?):\s?(.*)$")


@dataclass
class Check:
    kind: str
    pattern: str
    line: int  # in the check file

    def regex(self) -> re.Pattern:
        parts = re.split(r"(\{\{.*?\}\})", self.pattern.strip())
        return re.compile("".join(p[2:-2] if p.startswith("{{") else re.escape(p) for p in parts))


class FileCheckError(AssertionError):
    pass


def read_checks(text: str) -> tuple[str | None, list[Check]]:
    """(pipeline from the RUN line, checks in order)."""
    run, checks = None, []
    for i, line in enumerate(text.splitlines(), 1):
        m = _DIRECTIVE.match(line)
        if not m:
            continue
        if m.group(1) == "RUN":
            run = m.group(2).strip()
        else:
            checks.append(Check(m.group(1), m.group(2), i))
    return run, checks


def filecheck(output: str, checks: list[Check], name: str = "<checks>") -> None:
    """Raise ``FileCheckError`` naming the failing check line and showing the output."""
    lines = output.splitlines()
    cur_line, cur_col = 0, 0   # position after the previous match
    pending_not: list[Check] = []

    def fail(c: Check, msg: str):
        raise FileCheckError(f"{name}:{c.line}: {c.kind}: {c.pattern.strip()!r} {msg}\n--- output:\n{output}")

    def check_nots(upto_line: int, upto_col: int):
        for c in pending_not:
            rx = c.regex()
            for ln in range(cur_line, min(upto_line + 1, len(lines))):
                start = cur_col if ln == cur_line else 0
                end = upto_col if ln == upto_line else None
                if rx.search(lines[ln][start:end]):
                    fail(c, f"found on output line {ln + 1}: {lines[ln].strip()!r}")
        pending_not.clear()

    def find(rx, first_line, last_line, col):
        for ln in range(first_line, min(last_line, len(lines))):
            m = rx.search(lines[ln], col if ln == first_line else 0)
            if m:
                return ln, m.end()
        return None

    for c in checks:
        if c.kind == "CHECK-NOT":
            pending_not.append(c)
            continue
        count = int(c.kind.rsplit("-", 1)[1]) if c.kind.startswith("CHECK-COUNT") else 1
        for _ in range(count):
            rx = c.regex()
            if c.kind == "CHECK-NEXT":
                hit = find(rx, cur_line + 1, cur_line + 2, 0)
            elif c.kind == "CHECK-SAME":
                hit = find(rx, cur_line, cur_line + 1, cur_col)
            else:
                hit = find(rx, cur_line, len(lines), cur_col)
            if hit is None:
                where = {"CHECK-NEXT": f"on the line after output line {cur_line + 1}",
                         "CHECK-SAME": f"on output line {cur_line + 1}"}.get(c.kind, f"after output line {cur_line + 1}")
                fail(c, f"not found {where}")
            check_nots(hit[0], hit[1])
            cur_line, cur_col = hit
    check_nots(len(lines) - 1, None)


def run_golden(path: str) -> str:
    """Run the pipeline of the golden file ``path`` on its IR and check the output; returns it."""
    from ..fileio import read_model_ir
    from ..passes import PassManager
    with open(path, encoding="utf-8") as f:
        text = f.read()
    run, checks = read_checks(text)
    if run is None:
        raise FileCheckError(f"{path}: no '// RUN: <pipeline>' line")
    if not checks:
        raise FileCheckError(f"{path}: no CHECK lines (a golden test must check something)")
    g = read_model_ir(path)  # with the sibling .safetensors weights, where a pass needs them
    out = str(PassManager.parse(run).run(g))
    filecheck(out, checks, path)
    return out
