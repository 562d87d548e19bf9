"""Run ONNX's backend node tests (``onnx.backend.test``) against ``sparsec.onnx_backend`` and
write the per-op table ``docs/onnx_node_tests.md``::

    python -m sparsec.onnx.node_table                      # all node tests -> docs/onnx_node_tests.md
    python -m sparsec.onnx.node_table -k "test_gather" -o -   # a subset, printed

Each test is classified as

- ``pass``: imported, compiled (or interpreted with ``--mode interpret``) and run; the outputs
  match ONNX's expected outputs within the test's tolerances (``Runner.assert_similar_outputs``:
  dtypes equal, ``rtol``/``atol`` of the test case);
- ``fail``: an op sparsec converts, but the import, compilation or run raised, or the outputs
  differ (the reason is listed);
- ``unsupported``: the model holds an op type sparsec does not convert, uses an opset before 13,
  or uses element types / input kinds sparsec does not have (sequence, optional, string, int16,
  float8, ...);
- ``import-only``: every input determines a shape and was specialized (see
  ``sparsec.onnx_backend.SparsecRep``), so the outputs were computed at import; not counted as
  a pass.

Tests are attributed to the op their name starts with (``test_reduce_sum_keepdims_expanded`` ->
``ReduceSum``; the ``_expanded`` variants run the op's function body, other ops).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from dataclasses import dataclass, field

#: where the table goes
DEFAULT_OUTPUT = "docs/onnx_node_tests.md"


@dataclass
class Result:
    name: str
    op: str
    status: str                 # pass / fail / unsupported / import-only
    reason: str = ""
    seconds: float = 0.0
    specialized: tuple = field(default_factory=tuple)


def _op_names() -> dict[str, str]:
    """lower-case, underscore-free op name -> op type, for every default-domain schema."""
    import onnx
    names = {s.name.lower(): s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain in ("", "ai.onnx")}
    # test names that spell the op differently
    names.update({"greaterequal": "GreaterOrEqual", "lessequal": "LessOrEqual", "tril": "Trilu", "triu": "Trilu"})
    return names


def attribute_op(test_name: str, model, names: dict[str, str]) -> str:
    """The op a node test belongs to: the longest op name its name (without ``test_``) starts with."""
    flat = test_name[len("test_"):].replace("_", "").lower()
    best = ""
    for low in names:
        if flat.startswith(low) and len(low) > len(best):
            best = low
    if best:
        return names[best]
    return model.graph.node[0].op_type if model.graph.node else "?"


def unsupported_reason(model, converters) -> str | None:
    from .importer import MIN_OPSET
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < MIN_OPSET:
            return f"opset {o.version} < {MIN_OPSET}"
    missing = sorted({n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
                      for n in model.graph.node
                      if not (n.domain in ("", "ai.onnx") and n.op_type in converters)})
    if missing:
        return "not converted: " + ", ".join(missing)
    from onnx import TensorProto

    from .importer import OnnxImportError, onnx_dtype
    for vi in list(model.graph.input) + list(model.graph.output):
        kind = vi.type.WhichOneof("value")
        if kind != "tensor_type":
            return f"{vi.name!r} is a {kind.replace('_type', '')}, not a tensor"
        try:
            onnx_dtype(vi.type.tensor_type.elem_type, vi.name)
        except OnnxImportError:
            return f"element type {TensorProto.DataType.Name(vi.type.tensor_type.elem_type)}"
    return None


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    first = msg[0] if msg else ""
    if isinstance(e, AssertionError):
        detail = next((ln.strip() for ln in msg if "Mismatched elements" in ln or "Max absolute" in ln), "")
        return "wrong result" + (f": {detail}" if detail else (f": {first}" if first else ""))
    return f"{type(e).__name__}: {first}"[:240]


def run_node_tests(pattern: str | None = None, mode: str = "compile", progress=None) -> list[Result]:
    """Run every ONNX node test whose name matches ``pattern`` (a regex, ``re.search``)."""
    warnings.filterwarnings("ignore")
    from onnx.backend.test.loader import load_model_tests
    from onnx.backend.test.runner import Runner, _normalize_tensor

    from .. import onnx_backend
    from .converters import CONVERTERS
    from .importer import OnnxImportError
    names = _op_names()
    rx = re.compile(pattern) if pattern else None
    results = []
    cases = load_model_tests(kind="node")
    models = {tc.name: tc.model for tc in cases}
    for tc in cases:
        if rx is not None and not rx.search(tc.name):
            continue
        model = tc.model
        base = tc.name.split("_expanded")[0]
        # an _expanded test belongs to the op of the test it expands (its model has that one node)
        op = attribute_op(base, models.get(base, model), names)
        why = unsupported_reason(model, CONVERTERS)
        if why is not None:
            results.append(Result(tc.name, op, "unsupported", why))
            continue
        t0 = time.perf_counter()
        status, reason, spec = "pass", "", ()
        try:
            rep = onnx_backend.prepare(model, "CPU", mode=mode)
            for inputs, ref_outputs in tc.data_sets:
                outs = rep.run([_normalize_tensor(x) for x in inputs])
                Runner.assert_similar_outputs([_normalize_tensor(x) for x in ref_outputs], outs, tc.rtol, tc.atol)
            spec = rep.specialized
            if spec and not rep.graph.main.args:
                status, reason = "import-only", f"specialized {', '.join(spec)}: computed at import"
        except OnnxImportError as e:
            text = str(e)
            if "is not supported (sparsec has" in text or "only tensor inputs" in text:
                status, reason = "unsupported", _one_line(e).replace("OnnxImportError: ", "")
            else:
                status, reason = "fail", _one_line(e)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            status, reason = "fail", _one_line(e)
        results.append(Result(tc.name, op, status, reason, time.perf_counter() - t0, tuple(spec)))
        if progress is not None:
            progress(results[-1])
    return results


def format_table(results: list[Result], mode: str = "compile") -> str:
    import onnx

    from .converters import CONVERTERS
    by_op: dict[str, list[Result]] = {}
    for r in results:
        by_op.setdefault(r.op, []).append(r)
    count = lambda rs, s: sum(1 for r in rs if r.status == s)  # noqa: E731
    supported = sorted(op for op in by_op if op in CONVERTERS)
    others = sorted(op for op in by_op if op not in CONVERTERS)
    tot = {s: count(results, s) for s in ("pass", "fail", "unsupported", "import-only")}
    sup_results = [r for op in supported for r in by_op[op]]
    sup = {s: count(sup_results, s) for s in ("pass", "fail", "unsupported", "import-only")}
    lines = [
        "# ONNX backend node tests",
        "",
        "Generated by `python -m sparsec.onnx.node_table` (do not edit by hand): ONNX's own backend node",
        f"tests (`onnx.backend.test`, onnx {onnx.__version__}, {len(results)} tests) run against",
        f"`sparsec.onnx_backend` in `{mode}` mode"
        + (" (each model imported with `sc.load_onnx`, compiled with the default pipeline, run on the CPU"
           " kernels)" if mode == "compile" else " (the reference interpreter)") + ".",
        "",
        "- **pass**: outputs equal ONNX's expected outputs within the test's tolerances (dtypes equal).",
        "- **fail**: an op sparsec converts, but import, compilation or the run raised, or the outputs differ.",
        "- **unsupported**: an op type sparsec does not convert, an opset before 13, or element types /",
        "  input kinds sparsec does not have (int16, uint16/32/64, float8, string, sequences, optionals).",
        "- **import-only**: every input was a shape-determining value the backend specialized, so the",
        "  result was computed at import; not counted as a pass.",
        "",
        "Inputs that determine shapes (a `Reshape` target, `axes`, `k`) given as graph inputs are",
        "specialized by the backend: the model is imported with their values as constants (tests",
        "marked *spec.* below). Tests are attributed to the op their name starts with (`_expanded`",
        "variants run the op's ONNX function body, made of other ops).",
        "",
        f"Totals: **{tot['pass']} pass**, {tot['fail']} fail, {tot['unsupported']} unsupported, "
        f"{tot['import-only']} import-only.",
        f"For the {len(supported)} op types sparsec converts: **{sup['pass']} pass**, {sup['fail']} fail, "
        f"{sup['unsupported']} unsupported (dtypes / opsets / other ops in the model), "
        f"{sup['import-only']} import-only.",
        "",
        "## Ops sparsec converts",
        "",
        "| op | pass | fail | unsupported | import-only |",
        "|---|---:|---:|---:|---:|",
    ]
    for op in supported:
        rs = by_op[op]
        lines.append(f"| {op} | {count(rs, 'pass')} | {count(rs, 'fail')} | {count(rs, 'unsupported')} | "
                     f"{count(rs, 'import-only')} |")
    lines += ["", "### Failures and unsupported tests of these ops", "",
              "| test | status | reason |", "|---|---|---|"]
    for op in supported:
        for r in by_op[op]:
            if r.status != "pass":
                lines.append(f"| {r.name} | {r.status} | {_md(r.reason)} |")
    spec = [r for r in sup_results if r.specialized and r.status == "pass"]
    if spec:
        lines += ["", "### Passing tests with specialized inputs (spec.)", "",
                  ", ".join(f"{r.name} ({', '.join(r.specialized)})" for r in spec)]
    lines += ["", "## Op types sparsec does not convert", "",
              "Their `_expanded` tests (the op's ONNX function body) may use only converted ops and pass.", "",
              "| op | tests | pass | fail | import-only | why not (first such test) |", "|---|---:|---:|---:|---:|---|"]
    for op in others:
        rs = by_op[op]
        first = next((r.reason for r in rs if r.status != "pass"), "")
        lines.append(f"| {op} | {len(rs)} | {count(rs, 'pass')} | {count(rs, 'fail')} | {count(rs, 'import-only')} | "
                     f"{_md(first)} |")
    return "\n".join(lines) + "\n"


def _md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sparsec.onnx.node_table", description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=DEFAULT_OUTPUT, help="markdown file to write ('-': stdout)")
    ap.add_argument("-k", "--filter", default=None, help="only tests whose name matches this regex")
    ap.add_argument("--mode", choices=("compile", "interpret"), default="compile")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each test's result")
    args = ap.parse_args(argv)

    def show(r: Result):
        if args.verbose:
            print(f"{r.status:12s} {r.name} ({r.seconds:.2f}s) {r.reason}", file=sys.stderr)

    t0 = time.perf_counter()
    results = run_node_tests(args.filter, args.mode, progress=show)
    text = format_table(results, args.mode)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        from ..fileio import atomic_write_text
        atomic_write_text(args.output, text)
        print(f"wrote {args.output}: {len(results)} tests in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
