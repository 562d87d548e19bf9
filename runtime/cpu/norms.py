"""Row-wise nn kernels: RMSNorm, LayerNorm and rotary position embedding.

Inputs are flat C-contiguous arrays in the compute dtype (float32, or float64 for f64 inputs;
f16/bf16 are widened by the caller), rows of length ``d`` (the last axis). Statistics follow the
references: mean of squares / mean and biased variance in the compute dtype, ``x / sqrt(v + eps)``
(a division, as the reference rounds it). Each row is read twice (LayerNorm three times) while it
sits in L1, so the kernels are effectively single pass over memory. Row sums use NumPy's
pairwise order (``numerics.pairwise_sum``), so the statistics round exactly as the references'
``np.mean``. The ``_par`` variants split rows over threads.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numerics import pairwise_sum, round_bf16, round_f16

@njit(cache=True, nogil=True)
def _rms_row(xr, w, eps, orow, rnd, t):
    d = xr.shape[0]
    for i in range(d):
        v = xr[i]
        t[i] = v * v
    den = np.sqrt(pairwise_sum(t, 0, d) / xr.dtype.type(d) + eps)
    for i in range(d):
        nv = xr[i] / den
        if rnd == 1:
            nv = round_f16(nv)
        elif rnd == 2:
            nv = round_bf16(nv)
        orow[i] = w[i] * orow.dtype.type(nv)


@njit(cache=True, nogil=True)
def rms_norm_rows(x, w, rows, d, eps, out, rnd):
    """``out = w * round(x / sqrt(mean(x**2) + eps))`` per row; ``rnd`` rounds the normalized
    value to x's dtype first (0: none, 1: f16, 2: bf16) as the reference does."""
    e = x.dtype.type(eps)
    t = np.empty(d, x.dtype)
    for r in range(rows):
        _rms_row(x[r * d:(r + 1) * d], w, e, out[r * d:(r + 1) * d], rnd, t)


@njit(cache=True, nogil=True, parallel=True)
def rms_norm_rows_par(x, w, rows, d, eps, out, rnd):
    e = x.dtype.type(eps)
    for r in prange(rows):
        t = np.empty(d, x.dtype)
        _rms_row(x[r * d:(r + 1) * d], w, e, out[r * d:(r + 1) * d], rnd, t)


@njit(cache=True, nogil=True)
def _ln_row(xr, w, bias, eps, has_w, has_b, orow, t):
    d = xr.shape[0]
    mu = pairwise_sum(xr, 0, d) / xr.dtype.type(d)
    for i in range(d):
        c = xr[i] - mu
        t[i] = c * c
    den = np.sqrt(pairwise_sum(t, 0, d) / xr.dtype.type(d) + eps)
    for i in range(d):
        orow[i] = (xr[i] - mu) / den
    if has_w:
        for i in range(d):
            orow[i] = orow[i] * w[i]
    if has_b:
        for i in range(d):
            orow[i] = orow[i] + bias[i]


@njit(cache=True, nogil=True)
def layer_norm_rows(x, w, bias, rows, d, eps, has_w, has_b, out):
    e = x.dtype.type(eps)
    t = np.empty(d, x.dtype)
    for r in range(rows):
        _ln_row(x[r * d:(r + 1) * d], w, bias, e, has_w, has_b, out[r * d:(r + 1) * d], t)


@njit(cache=True, nogil=True, parallel=True)
def layer_norm_rows_par(x, w, bias, rows, d, eps, has_w, has_b, out):
    e = x.dtype.type(eps)
    for r in prange(rows):
        t = np.empty(d, x.dtype)
        _ln_row(x[r * d:(r + 1) * d], w, bias, e, has_w, has_b, out[r * d:(r + 1) * d], t)


# ---------------------------------------------------------------------------------------------
# rotary position embedding


@njit(cache=True, nogil=True)
def _rope_row(x, xo, cos_t, sin_t, co, h, r, d, interleaved, out):
    """One row of ``d`` head values at flat offset ``xo`` of ``x``/``out``; this position's cos/sin
    are ``cos_t``/``sin_t[co:co + h]``. Offsets, not slices: a slice of an array in Numba costs
    two atomic reference-count updates, which made a decode step's rope (16 rows) cost 2.6 us."""
    if interleaved:
        for i in range(h):
            a = x[xo + 2 * i]
            b = x[xo + 2 * i + 1]
            out[xo + 2 * i] = a * cos_t[co + i] - b * sin_t[co + i]
            out[xo + 2 * i + 1] = b * cos_t[co + i] + a * sin_t[co + i]
    else:
        for i in range(h):
            lo = x[xo + i]
            hi = x[xo + h + i]
            out[xo + i] = lo * cos_t[co + i] - hi * sin_t[co + i]
            out[xo + h + i] = hi * cos_t[co + i] + lo * sin_t[co + i]
    for i in range(r, d):
        out[xo + i] = x[xo + i]


@njit(cache=True, nogil=True)
def rope_rows(x, nb, m, seq, d, r, pb, cos_t, sin_t, interleaved, out):
    """x viewed as ``[nb, m, seq, d]``; the angles of row (b, s) are table row
    ``(b if pb > 1 else 0) * seq + s`` (tables ``[pb * seq, r / 2]``, flat)."""
    h = r // 2
    for b in range(nb):
        qb = (b if pb > 1 else 0) * seq
        for j in range(m):
            for s in range(seq):
                row = (b * m + j) * seq + s
                _rope_row(x, row * d, cos_t, sin_t, (qb + s) * h, h, r, d, interleaved, out)


@njit(cache=True, nogil=True, parallel=True)
def rope_rows_par(x, nb, m, seq, d, r, pb, cos_t, sin_t, interleaved, out):
    h = r // 2
    for row in prange(nb * m * seq):
        s = row % seq
        b = row // (m * seq)
        q = (b if pb > 1 else 0) * seq + s
        _rope_row(x, row * d, cos_t, sin_t, q * h, h, r, d, interleaved, out)
