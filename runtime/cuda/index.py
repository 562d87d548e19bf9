"""CUDA gathers and scatters over canonical ``[outer, n, inner]`` views (see the CPU rules in
``sparsec.lower.cpu.index``). Gathers move elements as unsigned integers of their size (one
specialization per item size); every index is checked before use: an index outside ``[0, n)``
is reported through the error slot (``launch.report_error``, code 1, the index value) and the
element is skipped, so no kernel reads or writes out of bounds.

Scatters give one thread per ``(outer, inner)`` column walking the index axis in order, so
duplicate indices resolve exactly as the reference (last write wins; adds in index order), with
no atomics.
"""
from __future__ import annotations

from numba import cuda

from .half import identity as ld  # noqa: F401 - rebound per storage dtype by half.variant
from .half import identity as st  # noqa: F401
from .launch import kernel, report_error

BAD_INDEX = 1


@kernel
def gather_rows(x, idx, outer, n, inner, out, err):
    """``out[o, j, :] = x[o, idx[j], :]``; x ``[outer, n, inner]``, out ``[outer, m, inner]``."""
    m = idx.size
    total = outer * m * inner
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        i = e % inner
        r = e // inner
        j = r % m
        o = r // m
        t = idx[j]
        if t < 0 or t >= n:
            report_error(err, BAD_INDEX, t)
            continue
        out[e] = x[(o * n + t) * inner + i]


@kernel
def gather_along(x, idx, outer, n, m, inner, out, err):
    """``out[o, j, i] = x[o, idx[o, j, i], i]`` (take_along_axis)."""
    total = outer * m * inner
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        i = e % inner
        o = e // (m * inner)
        t = idx[e]
        if t < 0 or t >= n:
            report_error(err, BAD_INDEX, t)
            continue
        out[e] = x[(o * n + t) * inner + i]


@kernel
def scatter_cols(out, idx, upd, outer, n, m, inner, mode, err):
    """Per column ``(o, i)``, in order of ``j``: ``out[o, idx[o, j, i], i] (=|+=) upd[o, j, i]``
    (mode 0: scatter, 1: scatter_add)."""
    for c in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = c // inner
        i = c - o * inner
        for j in range(m):
            s = (o * m + j) * inner + i
            t = idx[s]
            if t < 0 or t >= n:
                report_error(err, BAD_INDEX, t)
                continue
            d = (o * n + t) * inner + i
            if mode == 0:
                out[d] = upd[s]
            else:
                out[d] = out[d] + upd[s]


@kernel
def index_add_cols(out, idx, src, outer, n, m, inner, err):
    """Per column ``(o, i)``, in order of ``j``: ``out[o, idx[j], i] += src[o, j, i]``."""
    for c in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = c // inner
        i = c - o * inner
        for j in range(m):
            t = idx[j]
            if t < 0 or t >= n:
                report_error(err, BAD_INDEX, t)
                continue
            d = (o * n + t) * inner + i
            out[d] = out[d] + src[(o * m + j) * inner + i]


@kernel
def one_hot(idx, depth, out, err):
    """``out[r, c] = (c == idx[r])`` as out's dtype."""
    total = idx.size * depth
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        r = e // depth
        c = e - r * depth
        t = idx[r]
        if c == 0 and (t < 0 or t >= depth):
            report_error(err, BAD_INDEX, t)
        out[e] = st(1 if c == t else 0)


@kernel
def convert(src, dst):
    """``dst[i] = st(ld(src[i]))``: widen 16-bit floats to f32 (``half.variant(convert, dt)``) or
    round f32 to them (``half.variant(convert, None, dt)``)."""
    for e in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
        dst[e] = st(ld(src[e]))
