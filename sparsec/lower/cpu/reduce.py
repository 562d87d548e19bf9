"""CPU lowering rules: sum, mean, max, min, argmax, softmax, log_softmax, topk.

Each op is canonicalized at lowering time: dims that are statically 1 are dropped and adjacent
dims that are all reduced (or all kept) merge, so a reduction is one or more passes over a
``(outer, n, inner)`` view (one pass unless the reduced axes are separated by kept ones, e.g.
axes (0, 2) of a 3-d tensor). The runtime sizes come from the input's shape at each call; the
kernels (``sparsec.runtime.cpu.reduce``) take sizes and attributes as arguments.

Numerics follow the references: float sums and means accumulate in float64 and round once;
integer sums wrap in their dtype; softmax is computed in float32 (float64 for f64); f16/bf16
are widened to float32 and rounded back with NumPy. max, min and argmax call NumPy's own
reductions on the ``(outer, n, inner)`` view: they are SIMD, they are the reference semantics
(NaN, ties), and they need no compilation; a NaN-propagating Numba loop does not vectorize.
"""
from __future__ import annotations

import numpy as np

from ...ir import Operation, TensorType
from ...ops._util import norm_axes, norm_axis
from ...runtime.cpu import common
from ...runtime.cpu import reduce as rt
from . import Kernel, LoweringError, cpu_lowering

#: elements from which the parallel variants are used (when there are >= 2 rows)
PARALLEL_MIN_ELEMENTS = 1 << 17

_HALF = ("f16", "bf16")


def _x(op: Operation) -> TensorType:
    t = op.operands[0].type
    if not isinstance(t, TensorType):
        raise LoweringError(f"{op.describe()}: operand is {t}, not a tensor")
    return t


def _prod(s, idx) -> int:
    r = 1
    for i in idx:
        r *= s[i]
    return r


def _runs(shape, reduced: set[int]) -> list[tuple[bool, tuple[int, ...]]]:
    """Adjacent dims merged by kind (reduced or kept), statically-1 dims dropped."""
    runs: list[tuple[bool, list[int]]] = []
    for i, d in enumerate(shape):
        if d == 1:
            continue
        r = i in reduced
        if runs and runs[-1][0] == r:
            runs[-1][1].append(i)
        else:
            runs.append((r, [i]))
    return [(r, tuple(ds)) for r, ds in runs]


def _passes(shape, reduced: set[int]) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(outer dims, reduced dims, inner dims) per pass, innermost reduced run first; dims
    reduced by earlier passes are left out of ``inner``."""
    runs = _runs(shape, reduced)
    out = []
    done: set[int] = set()
    for p in range(len(runs) - 1, -1, -1):
        r, dims = runs[p]
        if not r:
            continue
        outer = tuple(i for _, ds in runs[:p] for i in ds)
        inner = tuple(i for _, ds in runs[p + 1:] for i in ds if i not in done)
        out.append((outer, dims, inner))
        done.update(dims)
    return out


def _compute_np(dt: str):
    return np.float64 if dt == "f64" else np.float32


def _widen(x: np.ndarray, dt: str) -> np.ndarray:
    """A flat view of x, f16/bf16 widened to float32."""
    return x.reshape(-1).astype(np.float32) if dt in _HALF else x.reshape(-1)


# ---------------------------------------------------------------------------------------------
# sum, mean, max, min


@cpu_lowering("sc.sum", "sc.mean", "sc.max", "sc.min")
def lower_reduce(op: Operation) -> Kernel:
    from numba import types
    x = _x(op)
    dt = x.dtype.name
    axes = op.attrs["axes"]
    reduced = set(norm_axes(axes, x.rank)) if axes else set(range(x.rank))
    passes = _passes(x.shape, reduced)
    count_dims = tuple(sorted(reduced))
    name = op.name[3:]
    kdt = np.dtype(np.float32) if dt in _HALF else x.dtype.np  # what the kernel reads

    if name in ("sum", "mean"):
        if x.dtype.is_float:
            acc = np.dtype(np.float64)
        else:
            acc = np.dtype(np.uint64 if dt == "ui8" else np.int64)
        # the first pass reads x (kernel dtype), later ones the accumulator
        sig = types.void(common.inp(kdt), types.int64, types.int64, types.int64, common.arr(acc))
        ser = common.specialize(rt.sum_rows, sig)
        par = common.Lazy(rt.sum_rows_par, sig)
        # later passes (axes separated by kept ones) read the float64 / int64 accumulator
        ser2 = common.specialize(rt.sum_rows, types.void(common.inp(acc), types.int64, types.int64, types.int64,
                                                         common.arr(acc))) if len(passes) > 1 else None
        mean = name == "mean"

        def fn(xa, out):
            s = xa.shape
            cur = _widen(xa, dt)
            big = cur.size >= PARALLEL_MIN_ELEMENTS
            if not passes:
                res = cur.astype(acc)
            first = True
            for outer_d, red_d, inner_d in passes:
                o, n, i = _prod(s, outer_d), _prod(s, red_d), _prod(s, inner_d)
                res = np.empty(o * i, acc)
                (ser2 if not first else par if big and o > 1 else ser)(cur, o, n, i, res)
                cur, first = res, False
            if mean:
                res = res / _prod(s, count_dims)
            np.copyto(out.reshape(-1), res, casting="unsafe")
        return Kernel(fn, name=f"{name}_{dt}", impl="numba", info={"passes": len(passes)})

    # max / min: NumPy's SIMD reductions (exactly the reference, NaN included) on the canonical
    # view; a Numba loop with NaN-propagating compares does not vectorize (38x slower)
    red = np.max if name == "max" else np.min

    def fn(xa, out):
        s = xa.shape
        cur = xa.astype(np.float32) if dt in _HALF else xa
        for outer_d, red_d, inner_d in passes:
            o, n, i = _prod(s, outer_d), _prod(s, red_d), _prod(s, inner_d)
            cur = red(cur.reshape(o, n) if i == 1 else cur.reshape(o, n, i), axis=1)
        np.copyto(out.reshape(-1), cur.reshape(-1), casting="unsafe")
    return Kernel(fn, name=f"{name}_{dt}", impl="numpy", info={"passes": len(passes)})


# ---------------------------------------------------------------------------------------------
# argmax, softmax, log_softmax, topk: one axis


def _axis_split(x: TensorType, axis: int):
    a = norm_axis(axis, x.rank)
    return tuple(range(a)), (a,), tuple(range(a + 1, x.rank))


@cpu_lowering("sc.argmax")
def lower_argmax(op: Operation) -> Kernel:
    """NumPy's argmax (SIMD; the reference's tie and NaN rules by definition) on the canonical
    view: 7 us for a 152K vocabulary row vs 104 us for a scalar Numba loop."""
    x = _x(op)
    dt = x.dtype.name
    od, ad, idims = _axis_split(x, op.attrs["axis"])

    def fn(xa, out):
        s = xa.shape
        o, n, i = _prod(s, od), s[ad[0]], _prod(s, idims)
        xv = xa.astype(np.float32) if dt in _HALF else xa
        if i == 1:
            np.argmax(xv.reshape(o, n), axis=1, out=out.reshape(o))
        else:
            np.argmax(xv.reshape(o, n, i), axis=1, out=out.reshape(o, i))
    return Kernel(fn, name=f"argmax_{dt}", impl="numpy")


@cpu_lowering("sc.softmax", "sc.log_softmax")
def lower_softmax(op: Operation) -> Kernel:
    from numba import types
    x = _x(op)
    dt = x.dtype.name
    ct = np.dtype(_compute_np(dt))
    od, ad, idims = _axis_split(x, op.attrs["axis"])
    log = op.name == "sc.log_softmax"
    sig = types.void(common.inp(ct), types.int64, types.int64, types.int64, common.arr(ct), types.boolean)
    ser = common.specialize(rt.softmax_rows, sig)
    par = common.Lazy(rt.softmax_rows_par, sig)
    half = dt in _HALF

    def fn(xa, out):
        s = xa.shape
        o, n, i = _prod(s, od), s[ad[0]], _prod(s, idims)
        xf = _widen(xa, dt)
        res = np.empty(xf.size, np.float32) if half else out.reshape(-1)
        (par if xf.size >= PARALLEL_MIN_ELEMENTS and o > 1 else ser)(xf, o, n, i, res, log)
        if half:
            np.copyto(out.reshape(-1), res, casting="unsafe")
    return Kernel(fn, name=f"{op.name[3:]}_{dt}", impl="numba")


@cpu_lowering("sc.topk")
def lower_topk(op: Operation) -> Kernel:
    from numba import types
    x = _x(op)
    dt = x.dtype.name
    kdt = np.dtype(np.float32) if dt in _HALF else x.dtype.np
    od, ad, idims = _axis_split(x, op.attrs["axis"])
    kk = int(op.attrs["k"])
    largest = bool(op.attrs["largest"])
    k = common.specialize(rt.topk_rows, types.void(common.inp(kdt), types.int64, types.int64, types.int64,
                                                   types.int64, types.boolean, common.arr(kdt), common.arr(np.int64)))
    half = dt in _HALF

    def fn(xa, vals, idx):
        s = xa.shape
        v = np.empty(vals.size, np.float32) if half else vals.reshape(-1)
        k(_widen(xa, dt), _prod(s, od), s[ad[0]], _prod(s, idims), kk, largest, v, idx.reshape(-1))
        if half:
            np.copyto(vals.reshape(-1), v, casting="unsafe")
    return Kernel(fn, name=f"topk_{dt}", impl="numba")
