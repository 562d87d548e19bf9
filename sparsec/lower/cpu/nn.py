"""CPU lowering rules: rms_norm, layer_norm, rope (``sc.attention`` lives in attention.py).

Kernels (``sparsec.runtime.cpu.norms``) run over rows of the last axis in float32 (float64 for
f64); f16/bf16 operands are widened with NumPy and results rounded back with NumPy casts, as the
references round. Rows are split over threads when the tensor has at least
``PARALLEL_MIN_ELEMENTS`` elements and more than one row.
"""
from __future__ import annotations

import numpy as np

from ...ir import Operation, TensorType
from ...ir.dtypes import result_dtype
from ...ops.nn import rope_inv_freq
from ...runtime.cpu import common
from ...runtime.cpu import norms as rt
from . import Kernel, LoweringError, contiguous, cpu_lowering

PARALLEL_MIN_ELEMENTS = 1 << 15

_HALF = ("f16", "bf16")


def _t(v, op) -> TensorType:
    if not isinstance(v.type, TensorType):
        raise LoweringError(f"{op.describe()}: {v.type} is not a tensor")
    return v.type


def _ct(dt) -> np.dtype:
    return np.dtype(np.float64 if dt.name == "f64" else np.float32)


def _flat(a: np.ndarray, ct: np.dtype) -> np.ndarray:
    a = a.reshape(-1)
    return a if a.dtype == ct else a.astype(ct)


@cpu_lowering("sc.rms_norm")
def lower_rms_norm(op: Operation) -> Kernel:
    from numba import types
    x, w = _t(op.operands[0], op), _t(op.operands[1], op)
    out_dt = result_dtype(x.dtype, w.dtype)
    ct, ct2 = _ct(x.dtype), _ct(out_dt)
    rnd = {"f16": 1, "bf16": 2}.get(x.dtype.name, 0)
    eps = float(op.attrs["eps"])
    sig = types.void(common.inp(ct), common.inp(ct2), types.int64, types.int64, types.float64, common.arr(ct2),
                     types.int64)
    ser, par = common.specialize(rt.rms_norm_rows, sig), common.Lazy(rt.rms_norm_rows_par, sig)
    direct = out_dt.np == ct2  # the result dtype is the compute dtype: write in place

    def sizes(xa):
        """(kernel, rows, row length) for ``xa``."""
        d = xa.shape[-1] if xa.ndim else 1
        rows = xa.size // d if d else 0
        return (par if xa.size >= PARALLEL_MIN_ELEMENTS and rows > 1 else ser), rows, d

    def fn(xa, wa, out):
        k, rows, d = sizes(xa)
        res = out.reshape(-1) if direct else np.empty(xa.size, ct2)
        k(_flat(xa, ct), _flat(wa, ct2), rows, d, eps, res, rnd)
        if not direct:
            np.copyto(out.reshape(-1), res, casting="unsafe")

    def bind(xa, wa, out):
        if not (direct and xa.dtype == ct and wa.dtype == ct2 and contiguous(xa, wa, out)):
            return None
        k, rows, d = sizes(xa)
        return common.bound(k, xa.reshape(-1), wa.reshape(-1), rows, d, eps, out.reshape(-1), rnd)
    return Kernel(fn, name=f"rms_norm_{x.dtype.name}", impl="numba", bind=bind)


@cpu_lowering("sc.layer_norm")
def lower_layer_norm(op: Operation) -> Kernel:
    from numba import types
    x = _t(op.operands[0], op)
    ct = _ct(x.dtype)
    n_ops = len(op.operands)
    has_w, has_b = n_ops >= 2, n_ops >= 3
    eps = float(op.attrs["eps"])
    sig = types.void(common.inp(ct), common.inp(ct), common.inp(ct), types.int64, types.int64, types.float64,
                     types.boolean, types.boolean, common.arr(ct))
    ser, par = common.specialize(rt.layer_norm_rows, sig), common.Lazy(rt.layer_norm_rows_par, sig)
    direct = x.dtype.np == ct
    dummy = np.zeros(1, ct)

    def fn(xa, *rest):
        out = rest[-1]
        w = _flat(rest[0], ct) if has_w else dummy
        b = _flat(rest[1], ct) if has_b else dummy
        d = xa.shape[-1] if xa.ndim else 1
        n = xa.size
        rows = n // d if d else 0
        res = out.reshape(-1) if direct else np.empty(n, ct)
        (par if n >= PARALLEL_MIN_ELEMENTS and rows > 1 else ser)(_flat(xa, ct), w, b, rows, d, eps, has_w, has_b, res)
        if not direct:
            np.copyto(out.reshape(-1), res, casting="unsafe")
    return Kernel(fn, name=f"layer_norm_{x.dtype.name}", impl="numba")


#: (rotary dim, theta, position bytes) -> (cos, sin) of the last few calls: every layer's q and k
#: rope of a step read the same positions, so a decode step computes its table once, not twice per
#: layer (it was ~5 us of NumPy calls each time)
_ROPE_TABLES: dict = {}
_ROPE_TABLES_MAX = 8


def _rope_table(inv_key, inv: np.ndarray, pos: np.ndarray):
    """The (positions x frequencies) cos/sin tables, flat f32: NumPy computes them exactly as the
    reference does (``pos`` as f32 times the inverse frequencies, then ``np.cos``/``np.sin``)."""
    key = (inv_key, pos.dtype.char, pos.shape, pos.tobytes())
    hit = _ROPE_TABLES.get(key)
    if hit is not None:
        return hit
    ang = pos.reshape(-1).astype(np.float32)[:, None] * inv
    hit = (np.cos(ang).reshape(-1), np.sin(ang).reshape(-1))
    if len(_ROPE_TABLES) >= _ROPE_TABLES_MAX:
        _ROPE_TABLES.pop(next(iter(_ROPE_TABLES)))
    _ROPE_TABLES[key] = hit
    return hit


@cpu_lowering("sc.rope")
def lower_rope(op: Operation) -> Kernel:
    from numba import types
    x, p = _t(op.operands[0], op), _t(op.operands[1], op)
    ct = _ct(x.dtype)
    d = x.shape[-1]
    r = int(op.attrs["rotary_dim"]) or d
    inv = rope_inv_freq(r, float(op.attrs["theta"]))
    inv_key = (r, float(op.attrs["theta"]))
    interleaved = bool(op.attrs["interleaved"])
    batched = p.rank == 2
    sig = types.void(common.inp(ct), types.int64, types.int64, types.int64, types.int64, types.int64, types.int64,
                     common.inp(np.float32), common.inp(np.float32), types.boolean, common.arr(ct))
    ser, par = common.specialize(rt.rope_rows, sig), common.Lazy(rt.rope_rows_par, sig)
    direct = x.dtype.np == ct

    def sizes(xa, pos):
        """(kernel, batch, rows per batch, seq, positions' batch) for ``xa`` and ``pos``."""
        s = xa.shape
        seq = s[-2]
        if batched:
            nb, pb = s[0], pos.shape[0]
            m = xa.size // (nb * seq * d) if nb * seq else 0
        else:
            nb, m, pb = 1, (xa.size // (seq * d) if seq else 0), 1
        return (par if xa.size >= PARALLEL_MIN_ELEMENTS and nb * m * seq > 1 else ser), nb, m, seq, pb

    def fn(xa, pos, out):
        k, nb, m, seq, pb = sizes(xa, pos)
        cos_t, sin_t = _rope_table(inv_key, inv, pos)
        res = out.reshape(-1) if direct else np.empty(xa.size, ct)
        k(_flat(xa, ct), nb, m, seq, d, r, pb, cos_t, sin_t, interleaved, res)
        if not direct:
            np.copyto(out.reshape(-1), res, casting="unsafe")

    def bind(xa, pos, out):
        """The sizes and flat views now; the tables per call (the positions change)."""
        if not (direct and xa.dtype == ct and contiguous(xa, pos, out)):
            return None
        k, nb, m, seq, pb = sizes(xa, pos)
        head, tail = (xa.reshape(-1), nb, m, seq, d, r, pb), (interleaved, out.reshape(-1))
        # every call's tables are flat f32 arrays: the entry point for those types is resolved once
        table = np.zeros(1, np.float32)
        k = common.entry_point(k, head + (table, table) + tail) or k

        def run_bound():
            cos_t, sin_t = _rope_table(inv_key, inv, pos)
            k(*head, cos_t, sin_t, *tail)
        return run_bound
    return Kernel(fn, name=f"rope_{x.dtype.name}", impl="numba", bind=bind)
