"""Activation sparsity: ``sc.sparse_input_linear``, a linear layer whose small inputs are zero.

The ``activation-sparsity`` pass (CATS / TEAL style, ``passes/activation_sparsity.py``) turns the
projections of a dense MLP into this op with a calibrated magnitude threshold per input site.
The weight is stored transposed, ``[in, out]``, so the weight rows an input skips are whole
contiguous rows that the CPU kernel never reads: at decode (one token, memory bound) a skipped
fraction of the inputs is the same fraction fewer weight bytes read.
"""
from __future__ import annotations

import math

import numpy as np

from ..frontend.tracer import as_tensor, emit
from ..ir import Float, TensorType, register
from ._util import tensor

__all__ = ["sparse_input_linear", "sparsify_input"]


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _compute_dtype(dtype: np.dtype):
    return np.float64 if dtype == np.float64 else np.float32


def sparsify_input(x: np.ndarray, threshold: float) -> np.ndarray:
    """``where(|x| < threshold, 0, x)`` computed in f32 (f64 for f64 inputs): the input the op
    multiplies. The comparison is strict, so ``threshold = 0`` keeps every value (NaN too)."""
    ct = _compute_dtype(x.dtype)
    xa = x.astype(ct)
    return np.where(np.abs(xa) < ct(threshold), ct(0), xa)


@register
class SparseInputLinear:
    """``y = where(|x| < threshold, 0, x) @ w_t`` with ``w_t`` ``[in, out]`` (the transpose of
    ``sc.linear``'s ``[out, in]`` weight): ``x`` ``[..., in]`` gives ``[..., out]`` in ``x``'s float
    dtype; ``w_t`` has ``x``'s dtype. Inputs whose magnitude is below ``threshold`` (compared in
    f32, f64 for f64) count as zero, so their weight rows need not be read; ``threshold = 0``
    is ``x @ w_t`` exactly (NaN and inf inputs are never skipped). Accumulates in f32 (f64 for
    f64) and rounds once to ``x``'s dtype, like ``sc.linear``."""
    name = "sc.sparse_input_linear"
    operands = ("x", "w_t")
    attrs = {"threshold": Float(0.0, doc="inputs with |x| below this are treated as zero (>= 0)")}
    traits = ("pure",)

    def infer(x, w_t, *, threshold):
        tensor(x, "x")
        tensor(w_t, "w_t")
        if not x.dtype.is_float:
            raise TypeError(f"sc.sparse_input_linear input must be a float tensor, got {x.dtype}")
        if x.rank < 1:
            raise ValueError("sc.sparse_input_linear input must have rank >= 1")
        if w_t.rank != 2:
            raise ValueError(f"weight must be [in, out] (rank 2), got {_fmt(w_t.shape)}")
        if w_t.dtype != x.dtype:
            raise TypeError(f"weight dtype {w_t.dtype} differs from input dtype {x.dtype} (insert sc.cast)")
        if x.shape[-1] != w_t.shape[0]:
            raise ValueError(f"input features {x.shape[-1]} (last dim of x {_fmt(x.shape)}) differ from weight "
                             f"[in, out] = {_fmt(w_t.shape)}")
        if not (threshold >= 0 and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
        return TensorType(tuple(x.shape[:-1]) + (w_t.shape[1],), x.dtype)

    def reference(x, w_t, *, threshold):
        ct = _compute_dtype(x.dtype)
        y = np.matmul(sparsify_input(x, threshold), np.asarray(w_t).astype(ct))
        return np.asarray(y).astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# traced API

def sparse_input_linear(x, w_t, threshold: float = 0.0):
    """``where(|x| < threshold, 0, x) @ w_t`` with ``w_t`` ``[in, out]`` (see the op's docstring)."""
    return emit("sc.sparse_input_linear", as_tensor(x), as_tensor(w_t), threshold=float(threshold))
