"""Scan kernels: ``sc.cumsum`` over an ``(outer, n, inner)`` view of a flat C-contiguous array.

The scanned axis has extent ``n``; ``inner == 1`` (the last axis) runs along contiguous rows,
otherwise ``inner`` running sums advance together (the vectorized dim). Sums are sequential, as
``np.cumsum``'s, in the accumulator's dtype: float64 for floats (each result rounded to the
output dtype on store), the integer's own dtype for integers (wrapping as NumPy's). ``exclusive``
stores the sum before adding the element; ``reverse`` walks the axis from its end. The ``_par``
variant splits the ``outer`` rows over threads.
"""
from __future__ import annotations

from numba import njit, prange

from .linalg import prange_only


@njit(cache=True, nogil=True)
def _scan_row(x, out, o, n, inner, acc, exclusive, reverse):
    a = acc[o * inner:(o + 1) * inner]
    for j in range(inner):
        a[j] = 0
    base = o * n * inner
    for t in range(n):
        i = n - 1 - t if reverse else t
        r = x[base + i * inner:base + (i + 1) * inner]
        w = out[base + i * inner:base + (i + 1) * inner]
        if exclusive:
            for j in range(inner):
                w[j] = a[j]
                a[j] += r[j]
        else:
            for j in range(inner):
                a[j] += r[j]
                w[j] = a[j]


@njit(cache=True, nogil=True)
def cumsum(x, out, outer, n, inner, acc, exclusive, reverse):
    """``out[o, i, j] = sum of x[o, i', j]`` over ``i' <= i`` (``<`` if exclusive; ``>=``/``>`` if
    reverse); ``acc`` is scratch of ``outer * inner`` accumulators."""
    for o in range(outer):
        _scan_row(x, out, o, n, inner, acc, exclusive, reverse)


@njit(cache=True, nogil=True, parallel=prange_only())
def cumsum_par(x, out, outer, n, inner, acc, exclusive, reverse):
    """``cumsum`` with the ``outer`` rows spread over threads."""
    for o in prange(outer):
        _scan_row(x, out, o, n, inner, acc, exclusive, reverse)
