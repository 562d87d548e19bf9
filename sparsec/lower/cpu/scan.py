"""CPU lowering rule: ``sc.cumsum`` (kernels in ``sparsec.runtime.cpu.scan``).

The tensor is seen as ``(outer, n, inner)`` around the scanned axis (sizes taken from the input
at each call, so a symbolic dim needs no recompilation). Floats accumulate in float64 and round
each result once, integers in their own dtype, as the reference; f16/bf16 are widened to float64
(exactly) and the results rounded with NumPy, as the reference rounds.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import Operation, TensorType
from ...ops._util import norm_axis
from ...runtime.cpu import common
from ...runtime.cpu import scan as rt
from . import Kernel, LoweringError, cpu_lowering

#: elements from which the rows are scanned on several threads (when there are >= 2 rows)
PARALLEL_MIN_ELEMENTS = 1 << 16


@cpu_lowering("sc.cumsum")
def lower_cumsum(op: Operation) -> Kernel:
    from numba import types
    x_t = op.operands[0].type
    if not isinstance(x_t, TensorType) or x_t.dtype.is_bool:
        raise LoweringError(f"{op.describe()}: no CPU kernel for sc.cumsum on {x_t}")
    axis = norm_axis(op.attrs["axis"], x_t.rank)
    exclusive, reverse = bool(op.attrs["exclusive"]), bool(op.attrs["reverse"])
    dt = x_t.dtype.np
    is_float = x_t.dtype.is_float
    ct = np.dtype(np.float64) if is_float else dt  # the accumulator (and kernel) dtype
    widen = is_float and dt not in (np.float32, np.float64)  # f16/bf16: scanned as f64, rounded after
    kin = ct if widen else dt
    sig = types.void(common.inp(kin), common.arr(ct if widen else dt), types.int64, types.int64, types.int64,
                     common.arr(ct), types.boolean, types.boolean)
    ser, par = common.specialize(rt.cumsum, sig), common.Lazy(rt.cumsum_par, sig)

    def fn(x, out):
        s = x.shape
        outer, n, inner = math.prod(s[:axis]), s[axis], math.prod(s[axis + 1:])
        if x.size == 0:
            return
        xf = x.reshape(-1)
        res = out.reshape(-1)
        if widen:
            xf = xf.astype(ct)
            res = np.empty(x.size, ct)
        acc = np.empty(outer * inner, ct)
        (par if x.size >= PARALLEL_MIN_ELEMENTS and outer > 1 else ser)(xf, res, outer, n, inner, acc, exclusive,
                                                                       reverse)
        if widen:
            np.copyto(out.reshape(-1), res, casting="unsafe")
    return Kernel(fn, f"cumsum_{x_t.dtype.name}", impl="numba")
