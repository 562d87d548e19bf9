"""``sparsec bench``: time a compiled model at chosen token counts beside the NumPy reference
interpreter on the same inputs (medians of repeated calls; the machine is shared and noisy).
The peers PyTorch eager / torch.compile on the standard shapes live in ``benchmarks/bench.py``."""
from __future__ import annotations

import time

import numpy as np

from .ir import TensorType
from .ir.types import dim_symbols


def _int_high(fn, arg) -> int:
    """An exclusive upper bound for an integer input: the rows of a table it indexes, else 4."""
    for op in arg.users:
        if op.name == "sc.embedding" and op.operands[0] is arg:
            return int(op.operands[1].type.shape[0])
        if op.name == "sc.take":
            return int(op.operands[0].type.shape[op.attrs.get("axis", 0)])
    return 4


def sample_inputs(graph, tokens: int, batch: int = 1, seed: int = 0) -> tuple[dict, list]:
    """Symbol sizes (``batch`` -> batch, every other symbol -> tokens) and random inputs."""
    fn = graph.main
    rng = np.random.default_rng(seed)
    bindings = {}
    for a in fn.args:
        if isinstance(a.type, TensorType):
            for d in a.type.shape:
                for s in (dim_symbols(d) if isinstance(d, str) else ()):
                    bindings[s] = batch if s == "batch" else tokens
    arrays = []
    for a in fn.args:
        t = a.type
        shape = t.concrete(bindings)
        if t.dtype.is_float:
            arrays.append(rng.standard_normal(shape).astype(t.dtype.np))
        elif t.dtype.is_bool:
            arrays.append(rng.random(shape) < 0.5)
        else:
            arrays.append(rng.integers(0, _int_high(fn, a), size=shape).astype(t.dtype.np))
    return bindings, arrays


def time_calls(fn, repeat: int, warmup: int = 2) -> tuple[float, float]:
    """(median, min) seconds of ``repeat`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), float(np.min(ts))


def median_seconds(fn, repeat: int, warmup: int = 2) -> float:
    return time_calls(fn, repeat, warmup)[0]


def bench(cm, tokens_list, repeat: int = 20, reference: bool = True, batch: int = 1) -> list[dict]:
    """One row per token count: compiled median, reference median, their ratio, max abs error."""
    from .interpreter import interpret
    from .testing.equivalence import compare_outputs
    rows = []
    for t in tokens_list:
        bindings, arrays = sample_inputs(cm.graph, t, batch)
        ours = median_seconds(lambda: cm.run(*arrays), repeat)
        row = {"tokens": t, "bindings": bindings, "compiled_ms": ours * 1e3}
        if reference:
            with np.errstate(all="ignore"):
                want = interpret(cm.graph, *arrays)
                got = cm.run(*arrays)
            ref = median_seconds(lambda: interpret(cm.graph, *arrays), max(3, repeat // 4), warmup=1)
            row.update(reference_ms=ref * 1e3, speedup=ref / ours,
                       check=compare_outputs(want, got, cm.output_names, rtol=0.0, atol=1e-4) or "ok")
        rows.append(row)
    return rows
