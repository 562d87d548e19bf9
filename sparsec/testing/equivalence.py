"""Checking that two graphs compute the same function with the reference interpreter."""
from __future__ import annotations

import numpy as np

from ..errors import SparsecError
from ..interpreter import interpret
from ..ir import Graph, as_dtype
from ..ir.parser import parse
from .strategies import random_inputs

#: (rtol, atol) per output dtype; atol is scaled by max(1, max|expected|) as in DESIGN.md section 5
TOLERANCES = {"f64": (1e-9, 1e-9), "f32": (1e-5, 1e-5), "f16": (2e-3, 2e-3), "bf16": (2e-2, 2e-2)}


def clone(graph: Graph) -> Graph:
    """An independent copy of ``graph`` (through its text form), sharing the weight arrays and
    keeping each op's source line (``op.loc``, which the text does not hold) for error messages."""
    g = parse(str(graph))
    g.weights = dict(graph.weights)
    for a, b in zip(graph.walk(), g.walk()):  # the text keeps the ops and their order
        if a.name == b.name:
            b.loc = a.loc
    return g


def run(graph: Graph, arrays, weights=None) -> tuple[np.ndarray, ...]:
    """``sc.interpret`` with floating-point warnings silenced (random inputs may overflow)."""
    with np.errstate(all="ignore"):
        return interpret(graph, *arrays, weights=weights)


def _describe(x: np.ndarray) -> str:
    return f"shape {tuple(x.shape)} dtype {as_dtype(x.dtype).name}"


def compare_outputs(expected, actual, names=None, rtol=None, atol=None) -> str | None:
    """None when the two output tuples agree, else a message about the first difference."""
    if len(expected) != len(actual):
        return f"{len(expected)} outputs expected, got {len(actual)}"
    for i, (e, a) in enumerate(zip(expected, actual)):
        label = f"output {i}" + (f" ({names[i]})" if names and i < len(names) and names[i] else "")
        e, a = np.asarray(e), np.asarray(a)
        if e.shape != a.shape or e.dtype != a.dtype:
            return f"{label}: expected {_describe(e)}, got {_describe(a)}"
        dt = as_dtype(e.dtype)
        if not dt.is_float:
            bad = e != a
            if bad.any():
                idx = tuple(int(j) for j in np.argwhere(bad)[0])
                return (f"{label}: {int(bad.sum())} of {e.size} values differ; first at index {idx}: "
                        f"expected {e[idx]!r}, got {a[idx]!r}")
            continue
        r_def, a_def = TOLERANCES.get(dt.name, TOLERANCES["f32"])
        r = r_def if rtol is None else rtol
        e64, a64 = e.astype(np.float64), a.astype(np.float64)
        finite = np.isfinite(e64)
        scale = max(1.0, float(np.abs(e64[finite]).max())) if finite.any() else 1.0
        tol = (a_def if atol is None else atol) * scale + r * np.abs(np.where(finite, e64, 0))
        with np.errstate(invalid="ignore"):
            err = np.abs(e64 - a64)
            ok = (err <= tol) | (np.isnan(e64) & np.isnan(a64)) | ((e64 == a64) & ~finite)
        if not ok.all():
            idx = tuple(int(j) for j in np.argwhere(~ok)[0])
            both = np.isfinite(e64) & np.isfinite(a64)
            max_err = float(err[both].max()) if both.any() else float("nan")
            return (f"{label}: {int((~ok).sum())} of {e.size} values differ (max abs error {max_err:.6g}, "
                    f"tolerance {float(tol.max()) if tol.size else 0:.3g}); first at index {idx}: "
                    f"expected {e64[idx]!r}, got {a64[idx]!r}")
    return None


def assert_equivalent(g1: Graph, g2: Graph, examples: int = 10, rtol: float | None = None,
                      atol: float | None = None, seed: int = 0, inputs=None, max_size: int = 4) -> None:
    """Assert ``g1`` and ``g2`` give the same outputs under ``sc.interpret``.

    Runs ``examples`` random input sets (symbolic dims bound to sizes in ``[1, max_size]``), or
    the given ``inputs`` (a list of input tuples). Each graph uses its own weight store.
    Floats compare with per-dtype tolerances (``TOLERANCES``) unless ``rtol``/``atol`` are
    given, NaN equal to NaN; ints and bools exactly. On failure the AssertionError names the
    first differing output and its max abs error, and prints the inputs' shapes and both graphs.
    """
    rng = np.random.default_rng(seed)
    cases = list(inputs) if inputs is not None else [random_inputs(g1, rng, max_size=max_size)
                                                     for _ in range(examples)]
    names = g1.main.output_names()
    for k, arrays in enumerate(cases):
        shapes = ", ".join(f"{tuple(np.shape(a))}:{np.asarray(a).dtype}" for a in arrays)
        expected = run(g1, arrays)
        try:
            actual = run(g2, arrays)
        except SparsecError as e:
            raise AssertionError(f"the second graph fails on inputs ({shapes}) where the first runs: "
                                 f"{type(e).__name__}: {e}\n{_both(g1, g2)}") from e
        msg = compare_outputs(expected, actual, names, rtol, atol)
        if msg is not None:
            raise AssertionError(f"graphs differ on example {k} (inputs {shapes}): {msg}\n{_both(g1, g2)}")


def _both(g1: Graph, g2: Graph) -> str:
    return f"--- first graph:\n{g1}--- second graph:\n{g2}"
