"""Matrix products: ``sc.matmul`` (NumPy semantics, batched) and ``sc.linear`` (``x @ w.T + b``).

Both accumulate floats in float32 (float64 for f64 operands) and round to the operand dtype,
so f16/bf16 references match kernels that accumulate in f32. Integer products accumulate in
int64 and are cast back (wrapping) to the operand dtype.
"""
from __future__ import annotations

import numpy as np

from ..frontend.tracer import as_tensor, emit
from ..ir import Bool, TensorType, broadcast_shapes, register
from ._util import same_dtype, tensor, weight

__all__ = ["matmul", "linear"]


def _acc_dtype(dtype: np.dtype):
    if dtype == np.float64:
        return np.float64
    if dtype.kind in "iub":
        return np.int64
    return np.float32


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


@register
class MatMul:
    """``np.matmul(a, b)``: the last two dims multiply (``[.., m, k] @ [.., k, n] -> [.., m, n]``),
    leading batch dims broadcast; a 1-D ``a`` is a row and a 1-D ``b`` a column (their dim is
    dropped from the result). ``transpose_a``/``transpose_b`` swap the last two dims of a 2-D+
    operand first. Operands share one dtype (float or integer)."""
    name = "sc.matmul"
    operands = ("a", "b")
    attrs = {"transpose_a": Bool(False), "transpose_b": Bool(False)}
    traits = ("pure",)

    def infer(a, b, *, transpose_a, transpose_b):
        tensor(a, "a"), tensor(b, "b")
        d = same_dtype(a, b)
        if d.is_bool:
            raise TypeError("sc.matmul does not take booleans")
        sa, sb = list(a.shape), list(b.shape)
        for s, t, name in ((sa, transpose_a, "a"), (sb, transpose_b, "b")):
            if not s:
                raise ValueError(f"matmul operand {name} must have rank >= 1, got a scalar")
            if t:
                if len(s) < 2:
                    raise ValueError(f"transpose_{name} needs rank >= 2, got rank {len(s)}")
                s[-2], s[-1] = s[-1], s[-2]
        va, vb = len(sa) == 1, len(sb) == 1
        if va:
            sa = [1] + sa
        if vb:
            sb = sb + [1]
        if sa[-1] != sb[-2]:
            raise ValueError(f"contracted dims differ: a {_fmt(a.shape)} has {sa[-1]}, b {_fmt(b.shape)} has "
                             f"{sb[-2]}")
        batch = broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2]))
        out = list(batch) + ([] if va else [sa[-2]]) + ([] if vb else [sb[-1]])
        return TensorType(out, d)

    def reference(a, b, *, transpose_a, transpose_b):
        acc = _acc_dtype(a.dtype)
        if transpose_a:
            a = np.swapaxes(a, -1, -2)
        if transpose_b:
            b = np.swapaxes(b, -1, -2)
        return np.asarray(np.matmul(a.astype(acc), b.astype(acc))).astype(a.dtype)


@register
class Linear:
    """``y = x @ w.T + b`` with ``w`` ``[out, in]`` (Hugging Face / torch layout) and optional
    ``b`` ``[out]``: ``x`` ``[..., in]`` gives ``[..., out]`` in ``x``'s (float) dtype. ``w`` is a
    tensor of ``x``'s dtype or a quantized weight (``!sc.q8_0<out x in>``); ``b`` has ``x``'s dtype."""
    name = "sc.linear"
    operands = ("x", "w", "b?")
    traits = ("pure",)

    def infer(x, w, b):
        tensor(x, "x")
        weight(w, "w")
        if not x.dtype.is_float:
            raise TypeError(f"sc.linear input must be a float tensor, got {x.dtype}")
        if x.rank < 1:
            raise ValueError("sc.linear input must have rank >= 1")
        if w.rank != 2:
            raise ValueError(f"weight must be [out, in] (rank 2), got {_fmt(w.shape)}")
        if isinstance(w, TensorType) and w.dtype != x.dtype:
            raise TypeError(f"weight dtype {w.dtype} differs from input dtype {x.dtype} (insert sc.cast)")
        if x.shape[-1] != w.shape[1]:
            raise ValueError(f"input features {x.shape[-1]} (last dim of x {_fmt(x.shape)}) differ from weight "
                             f"[out, in] = {_fmt(w.shape)}")
        if b is not None:
            tensor(b, "b")
            if b.dtype != x.dtype:
                raise TypeError(f"bias dtype {b.dtype} differs from input dtype {x.dtype}")
            if tuple(b.shape) != (w.shape[0],):
                raise ValueError(f"bias must be [{w.shape[0]}], got {_fmt(b.shape)}")
        return TensorType(tuple(x.shape[:-1]) + (w.shape[0],), x.dtype)

    def reference(x, w, b):
        acc = _acc_dtype(x.dtype)
        y = np.matmul(x.astype(acc), np.asarray(w).astype(acc).T)
        if b is not None:
            y = y + b.astype(acc)
        return np.asarray(y).astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# traced API

def matmul(a, b, transpose_a: bool = False, transpose_b: bool = False):
    """``a @ b`` with NumPy semantics (mixed dtypes are promoted like the elementwise ops)."""
    from .elementwise import _pair
    a, b = _pair(a, b)
    return emit("sc.matmul", a, b, transpose_a=bool(transpose_a), transpose_b=bool(transpose_b))


def linear(x, w, b=None):
    """``x @ w.T + b`` with ``w`` ``[out, in]`` (a Parameter, a tensor or a quantized weight)."""
    x = as_tensor(x)
    w = as_tensor(w)
    if not x.dtype.is_float:
        from .core import cast
        x = cast(x, w.dtype if isinstance(w.type, TensorType) and w.dtype.is_float else "float32")
    return emit("sc.linear", x, w, None if b is None else as_tensor(b))

