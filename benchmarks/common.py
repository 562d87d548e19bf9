"""What every benchmark case shares: the re-exec without OpenBLAS's core-type override, the
machine's measured limits, the result rows and the table they print as.

Case modules (``bench.py`` and the ``*_case.py`` files, each also runnable alone) put their
rows in ``ROWS`` through ``row(...)``.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from sparsec.benchmark import time_calls as median_time  # (median, min) seconds

ROWS: list[dict] = []
#: the note of a row whose ratio comes from ``paired_time``
PAIRED = "ratio vs sparsec timed alternately with it"


def reexec_without_openblas_overrides() -> None:
    """``OPENBLAS_CORETYPE`` (set on our build machines) halves NumPy's and PyTorch's sgemm speed:
    re-execute this script without it and without ``OPENBLAS_L2_SIZE``, and say so."""
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        env["SPARSEC_BENCH_UNSET_OPENBLAS"] = "1"
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def openblas_note() -> str:
    return ("OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset for this run" if os.environ.get("SPARSEC_BENCH_UNSET_OPENBLAS")
            else "OpenBLAS env as given")


# -- machine limits ----------------------------------------------------------------------------

def paired_time(fa, fb, repeat: int, warmup: int = 2):
    """((median, min) of ``fa``, (median, min) of ``fb``) seconds, the two called alternately: the
    machine's bandwidth drifts by a third within minutes, so a ratio of two medians taken one after
    the other measures the drift as much as the code. Peers' ratios come from such pairs."""
    import time
    for _ in range(warmup):
        fa()
        fb()
    ta, tb = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fa()
        t1 = time.perf_counter()
        fb()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return (float(np.median(ta)), float(np.min(ta))), (float(np.median(tb)), float(np.min(tb)))


_PSUM: list = []


def measure_bandwidth(repeat: int) -> float:
    """Read bandwidth in GB/s: a parallel sum over 512 MiB of float32 on all threads (the sum and
    its array are made once per process)."""
    if not _PSUM:
        import numba

        @numba.njit(parallel=True, fastmath=True, cache=False)
        def psum(a):
            s = 0.0
            for i in numba.prange(a.shape[0]):
                s += a[i]
            return s

        a = np.ones(128 * 2**20, np.float32)
        psum(a)
        _PSUM[:] = [psum, a]
    psum, a = _PSUM
    med, best = median_time(lambda: psum(a), repeat)
    return a.nbytes / best / 1e9  # best, not median: the limit is what the machine can do


def paired_rounds(fn, nbytes: int, repeat: int, before=None) -> list[tuple[float, float, float, float]]:
    """Rounds of: the bandwidth probe, then ``before()`` (the call ``fn`` is paired with for its
    ratio, so ``fn`` runs in the same state as there), then ``fn`` (which reads ``nbytes``); each
    round ``(probe GB/s, fraction = fn's rate / the probe's rate, seconds of before(), seconds of
    fn())``. ``paired_fraction`` reduces them to the row's ``%bw``.

    Why: the machine's bandwidth switches between states (49 and 75 GB/s within one minute), so
    a limit measured once per run can belong to another state than the row it divides. The probe
    sums 64 MiB, each round another eighth of ``measure_bandwidth``'s 512 MiB (the same 64 MiB
    again measured 85 GB/s where 512 MiB gave 75: part of it was still in the L3 cache).
    ``before``, not the probe, precedes ``fn``: a call right after another call of the same
    layer, with only the probe between, found some of its experts' weights still in L3."""
    import time
    if not _PSUM:
        measure_bandwidth(1)
    psum, a = _PSUM
    parts = a.reshape(8, -1)
    psum(parts[0])
    rounds = []
    for i in range(repeat):
        part = parts[i % 8]
        t0 = time.perf_counter()
        psum(part)
        probe = part.nbytes / (time.perf_counter() - t0)
        tb = time.perf_counter()
        if before is not None:
            before()
        t1 = time.perf_counter()
        fn()
        t2 = time.perf_counter()
        rounds.append((probe / 1e9, nbytes / (t2 - t1) / probe, t1 - tb, t2 - t1))
    return rounds


def paired_fraction(rounds) -> tuple[float, float]:
    """``(median fraction, median probe GB/s)`` of ``paired_rounds``' rounds."""
    return float(np.median([r[1] for r in rounds])), float(np.median([r[0] for r in rounds]))


def by_state(rounds, split: float) -> str:
    """``paired_rounds`` summarised per bandwidth state (rounds whose probe is at least ``split``
    GB/s, and the others): median %bw and median ratio ``before / fn`` of each, with its count."""
    parts = []
    for name, sel in ((f"probe >= {split:g} GB/s", [r for r in rounds if r[0] >= split]),
                      (f"probe < {split:g} GB/s", [r for r in rounds if r[0] < split])):
        if sel:
            parts.append(f"{name}: {100 * np.median([r[1] for r in sel]):.1f}%bw, "
                         f"{np.median([r[2] / r[3] for r in sel]):.2f}x ({len(sel)} rounds)")
    return "; ".join(parts)


def measure_sgemm(repeat: int) -> float:
    """NumPy (OpenBLAS) sgemm GFLOP/s on 2048x2048 matrices: the dense peak we compare to."""
    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    med, best = median_time(lambda: a @ b, repeat)
    return 2 * n**3 / best / 1e9


def measure_limits(repeat: int) -> dict:
    limits = {"bandwidth": measure_bandwidth(repeat), "sgemm": measure_sgemm(max(5, repeat // 3))}
    print(f"measured limits: read bandwidth {limits['bandwidth']:.1f} GB/s (parallel sum, 512 MiB f32); "
          f"sgemm peak {limits['sgemm']:.1f} GFLOP/s (NumPy/OpenBLAS 2048^3)")
    return limits


# -- rows ----------------------------------------------------------------------------------------

def row(case, impl, med, best, ref_med=None, nbytes=None, flops=None, limits=None, note="", paired_bw=None):
    """One result row. ``paired_bw``: ``paired_fraction``'s (fraction, probe GB/s); then ``%bw``
    is that fraction (against the bandwidth of the same moments), and the note also gives the
    fraction of the run's limit ``limits["bandwidth"]``."""
    r = {"case": case, "impl": impl, "ms": med * 1e3, "min_ms": best * 1e3, "ratio": (med / ref_med) if ref_med else None,
         "note": note}
    if nbytes is not None:
        r["GB/s"] = nbytes / med / 1e9
        if paired_bw is not None:
            r["%bw"] = 100 * paired_bw[0]
            r["note"] = (f"%bw: median of pairs with a 64 MiB probe ({paired_bw[1]:.1f} GB/s)"
                         + (f", {100 * r['GB/s'] / limits['bandwidth']:.0f}% of the limit at the start"
                            if limits else "") + "; " + note)
        elif limits:
            r["%bw"] = 100 * r["GB/s"] / limits["bandwidth"]
    if flops is not None:
        r["GFLOP/s"] = flops / med / 1e9
        if limits:
            r["%peak"] = 100 * r["GFLOP/s"] / limits["sgemm"]
    ROWS.append(r)
    return r


def print_table():
    cols = ["case", "impl", "ms", "min_ms", "ratio", "GB/s", "%bw", "GFLOP/s", "%peak", "note"]
    fmt = {"ms": "{:.3f}", "min_ms": "{:.3f}", "ratio": "{:.2f}x", "GB/s": "{:.1f}", "%bw": "{:.0f}%",
           "GFLOP/s": "{:.1f}", "%peak": "{:.0f}%"}
    table = [[("" if r.get(c) is None else (fmt[c].format(r[c]) if c in fmt else str(r[c]))) for c in cols]
             for r in ROWS]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for t in table:
        print(" | ".join(v.ljust(w) for v, w in zip(t, widths)))
