"""Shape ops: reshape, transpose, concat, slice, broadcast_to, expand_dims, squeeze, stack.

None of them change values or dtypes, only where elements sit. Symbolic dims are kept exact:
``reshape([batch, seq, 64] -> [-1, 64])`` gives ``batch*seq`` (monomial division), and a rule that
cannot state its result exactly (``tokens + 4``, ``tokens - 1``) is an error rather than a guess.
Attributes that name symbolic dims (``sc.reshape``, ``sc.broadcast_to``) are resolved at run time
from the sizes bound to the graph inputs (``sparsec.ir.types.current_dim_bindings``).
"""
from __future__ import annotations

import builtins

import numpy as np

from ..errors import TraceError
from ..frontend.tracer import Parameter, Tensor, _user_line, as_tensor, emit
from ..ir import Dims, Int, Ints, TensorType, broadcast_shapes, dim_div, dim_prod, register
from ..ir.types import _split, current_dim_bindings, eval_dim
from ._util import norm_axis, norm_axes, tensor

__all__ = ["reshape", "transpose", "concat", "slice", "getitem", "broadcast_to", "expand_dims", "squeeze",
           "stack", "flatten"]


def _fmt(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _dim_add(a, b):
    """``a + b`` when it is a monomial (equal symbol sets, or one side 0), else None."""
    ca, na = _split(a)
    cb, nb = _split(b)
    if ca == 0:
        return b
    if cb == 0:
        return a
    if na != nb:
        return None
    return dim_prod([ca + cb, *na])


def _resolve(d):
    """A dim of an attribute as an int at run time (symbolic dims read from the run's bindings)."""
    if isinstance(d, int):
        return d
    try:
        return eval_dim(d, current_dim_bindings())
    except KeyError:
        return None


# ---------------------------------------------------------------------------------------------
# sc.reshape

@register
class Reshape:
    """Same elements in row-major order, new shape. ``shape`` may hold one ``-1`` (the size that
    makes the element counts equal) and symbolic dims; counts must be equal as monomials, so
    ``[batch, seq, 64] -> [-1, 64]`` gives ``[batch*seq, 64]`` and ``[tokens] -> [2, -1]`` is an
    error (``tokens/2`` is not exact). dtype unchanged."""
    name = "sc.reshape"
    operands = ("x",)
    attrs = {"shape": Dims(allow_infer=True, doc="new shape; at most one -1")}
    traits = ("pure", "view")

    def infer(x, *, shape):
        tensor(x)
        holes = [i for i, d in enumerate(shape) if d == -1]
        if len(holes) > 1:
            raise ValueError(f"at most one -1 in the new shape, got {_fmt(shape)}")
        total = dim_prod(x.shape)
        known = dim_prod(d for d in shape if d != -1)
        if holes:
            fill = dim_div(total, known)
            if fill is None:
                raise ValueError(f"cannot reshape {_fmt(x.shape)} ({total} elements) to {_fmt(shape)}: "
                                 f"{total} is not a multiple of {known}")
            shape = tuple(fill if d == -1 else d for d in shape)
        elif known != total:
            raise ValueError(f"cannot reshape {_fmt(x.shape)} ({total} elements) to {_fmt(shape)} ({known} elements)")
        return TensorType(shape, x.dtype)

    def reference(x, *, shape):
        sizes = [d if d == -1 else _resolve(d) for d in shape]
        unknown = [i for i, d in enumerate(sizes) if d is None or d == -1]
        if len(unknown) > 1:
            raise ValueError(f"sc.reshape to {_fmt(shape)}: the sizes of "
                             f"{', '.join(str(shape[i]) for i in unknown)} are not bound in this run")
        return x.reshape([-1 if d is None else d for d in sizes])


# ---------------------------------------------------------------------------------------------
# sc.transpose

@register
class Transpose:
    """Permute axes: result dim ``i`` is ``x`` dim ``perm[i]`` (``np.transpose``). dtype unchanged."""
    name = "sc.transpose"
    operands = ("x",)
    attrs = {"perm": Ints(doc="a permutation of range(rank)")}
    traits = ("pure",)

    def infer(x, *, perm):
        tensor(x)
        if sorted(perm) != list(range(x.rank)):
            raise ValueError(f"perm {list(perm)} is not a permutation of the {x.rank} axes")
        return TensorType([x.shape[p] for p in perm], x.dtype)

    def reference(x, *, perm):
        return np.transpose(x, perm)


# ---------------------------------------------------------------------------------------------
# sc.concat

@register
class Concat:
    """Join tensors along ``axis``; all have one dtype and equal dims elsewhere. Along ``axis``
    the sizes add up; symbolic sizes add only when the result is a monomial
    (``tokens + tokens = 2*tokens``, not ``tokens + 4``)."""
    name = "sc.concat"
    operands = ("inputs*",)
    attrs = {"axis": Int(0)}
    traits = ("pure",)

    def infer(inputs, *, axis):
        if not inputs:
            raise ValueError("concat needs at least one input")
        first = tensor(inputs[0], "input 0")
        a = norm_axis(axis, first.rank)
        size = 0
        for i, t in enumerate(inputs):
            tensor(t, f"input {i}")
            if t.dtype != first.dtype:
                raise TypeError(f"input {i} has dtype {t.dtype}, input 0 has {first.dtype} (insert sc.cast)")
            if t.rank != first.rank:
                raise ValueError(f"input {i} has rank {t.rank}, input 0 has rank {first.rank}")
            for j, (d, e) in enumerate(zip(t.shape, first.shape)):
                if j != a and d != e:
                    raise ValueError(f"input {i} has dim {j} = {d}, input 0 has {e} (only axis {a} may differ)")
            new = _dim_add(size, t.shape[a])
            if new is None:
                raise ValueError(f"concatenated size {size} + {t.shape[a]} along axis {a} is not a single "
                                 f"symbolic dim")
            size = new
        shape = list(first.shape)
        shape[a] = size
        return TensorType(shape, first.dtype)

    def reference(inputs, *, axis):
        return np.concatenate(inputs, axis=axis)


# ---------------------------------------------------------------------------------------------
# sc.slice

def _slice_len(n, start, stop, step):
    """Length of ``range(n)[start:stop:step]`` (Python semantics; None = open bound).

    For a symbolic ``n`` explicit bounds are taken to lie in ``[-n, n]`` (no clamping is
    known statically), and the length must be static or ``n/|step|`` exactly."""
    if isinstance(n, int):
        return len(range(*builtins.slice(start, stop, step).indices(n)))
    # bounds as (coefficient of n, constant)
    def pos(v, open_value):
        if v is None:
            return open_value
        return (1, v) if v < 0 else (0, v)
    if step > 0:
        lo, hi = pos(start, (0, 0)), pos(stop, (1, 0))
    else:
        lo, hi = pos(stop, (0, -1)), pos(start, (1, -1))
    a, c = hi[0] - lo[0], hi[1] - lo[1]
    span = f"[{'' if start is None else start}:{'' if stop is None else stop}:{step}]"
    if a == 0:
        return max(0, -(-c // abs(step)))
    if a == 1 and c == 0:
        out = dim_div(n, abs(step))
        if out is not None:
            return out
    raise ValueError(f"slice {span} of symbolic dim {n} has no exact symbolic length")


@register
class Slice:
    """``x[..., start:stop:step, ...]`` on one ``axis`` with Python slice semantics: negative bounds
    count from the end, bounds clamp to the dim, an absent start/stop is the open end (in the
    direction of ``step``). On a symbolic dim the bounds are assumed to lie within the dim and
    the length must be static (``x[:4]``, ``x[-1:]``) or the whole dim (``x[:]``, ``x[::-1]``).
    dtype unchanged."""
    name = "sc.slice"
    operands = ("x",)
    attrs = {"axis": Int(0), "start": Int(None, doc="absent: open"), "stop": Int(None, doc="absent: open"),
             "step": Int(1, doc="non-zero")}
    traits = ("pure",)

    def infer(x, *, axis, start, stop, step):
        tensor(x)
        a = norm_axis(axis, x.rank)
        if x.rank == 0:
            raise ValueError("cannot slice a rank-0 tensor")
        if step == 0:
            raise ValueError("slice step must not be zero")
        shape = list(x.shape)
        shape[a] = _slice_len(x.shape[a], start, stop, step)
        return TensorType(shape, x.dtype)

    def reference(x, *, axis, start, stop, step):
        idx = [builtins.slice(None)] * x.ndim
        idx[axis % x.ndim] = builtins.slice(start, stop, step)
        return x[tuple(idx)].copy()


# ---------------------------------------------------------------------------------------------
# sc.broadcast_to, sc.expand_dims, sc.squeeze, sc.stack

@register
class BroadcastTo:
    """``np.broadcast_to(x, shape)``: each dim of ``x`` (aligned right) is 1 or equals the target
    dim; a symbolic dim only equals the same symbol. dtype unchanged."""
    name = "sc.broadcast_to"
    operands = ("x",)
    attrs = {"shape": Dims()}
    traits = ("pure",)

    def infer(x, *, shape):
        tensor(x)
        if x.rank > len(shape):
            raise ValueError(f"cannot broadcast rank {x.rank} {_fmt(x.shape)} to lower rank {_fmt(shape)}")
        off = len(shape) - x.rank
        for i, d in enumerate(x.shape):
            if d != 1 and d != shape[off + i]:
                raise ValueError(f"cannot broadcast {_fmt(x.shape)} to {_fmt(shape)} "
                                 f"(dim {i}: {d} vs {shape[off + i]})")
        return TensorType(shape, x.dtype)

    def reference(x, *, shape):
        off = len(shape) - x.ndim
        sizes = []
        for i, d in enumerate(shape):
            n = _resolve(d)
            if n is None and i >= off and x.shape[i - off] != 1:
                n = x.shape[i - off]  # equal to the input's dim by the shape rule
            if n is None:
                raise ValueError(f"sc.broadcast_to {_fmt(shape)}: the size of {d} is not bound in this run")
            sizes.append(n)
        return np.broadcast_to(x, sizes).copy()


@register
class ExpandDims:
    """Insert size-1 dims so that they sit at ``axes`` of the result (``np.expand_dims``)."""
    name = "sc.expand_dims"
    operands = ("x",)
    attrs = {"axes": Ints(doc="positions in the result")}
    traits = ("pure", "view")

    def infer(x, *, axes):
        tensor(x)
        rank = x.rank + len(axes)
        pos = norm_axes(axes, rank)
        rest = iter(x.shape)
        return TensorType([1 if i in pos else next(rest) for i in range(rank)], x.dtype)

    def reference(x, *, axes):
        return np.expand_dims(x, tuple(axes))


@register
class Squeeze:
    """Drop the dims at ``axes``; each must be statically 1 (a symbolic dim is never squeezed)."""
    name = "sc.squeeze"
    operands = ("x",)
    attrs = {"axes": Ints()}
    traits = ("pure", "view")

    def infer(x, *, axes):
        tensor(x)
        pos = norm_axes(axes, x.rank)
        for a in pos:
            if x.shape[a] != 1:
                raise ValueError(f"cannot squeeze axis {a} of size {x.shape[a]} (must be 1)")
        return TensorType([d for i, d in enumerate(x.shape) if i not in pos], x.dtype)

    def reference(x, *, axes):
        return np.squeeze(x, axis=tuple(a % x.ndim for a in axes))


@register
class Stack:
    """Stack equally shaped tensors of one dtype along a new ``axis`` (``np.stack``): ``n`` inputs
    of shape ``s`` give ``s[:axis] + (n,) + s[axis:]``."""
    name = "sc.stack"
    operands = ("inputs*",)
    attrs = {"axis": Int(0)}
    traits = ("pure",)

    def infer(inputs, *, axis):
        if not inputs:
            raise ValueError("stack needs at least one input")
        first = tensor(inputs[0], "input 0")
        for i, t in enumerate(inputs):
            tensor(t, f"input {i}")
            if t.dtype != first.dtype:
                raise TypeError(f"input {i} has dtype {t.dtype}, input 0 has {first.dtype} (insert sc.cast)")
            if t.shape != first.shape:
                raise ValueError(f"input {i} has shape {_fmt(t.shape)}, input 0 has {_fmt(first.shape)}")
        a = norm_axis(axis, first.rank + 1)
        shape = list(first.shape)
        shape.insert(a, len(inputs))
        return TensorType(shape, first.dtype)

    def reference(inputs, *, axis):
        return np.stack(inputs, axis=axis)


# ---------------------------------------------------------------------------------------------
# traced API

def _shape_arg(shape) -> tuple:
    if isinstance(shape, (int, str, np.integer)):
        return (shape,)
    return tuple(shape)


def reshape(x, shape):
    """``x.reshape(shape)``; one ``-1`` allowed; dims may be symbolic (``x.shape[0]``)."""
    x = as_tensor(x)
    shape = _shape_arg(shape)
    if shape.count(-1) == 1 and len(shape) == x.ndim:  # -1 standing for the dim it replaces
        k = shape.index(-1)
        if all(d == e for i, (d, e) in enumerate(zip(shape, x.shape)) if i != k):
            return x
    if tuple(shape) == tuple(x.shape):
        return x
    return emit("sc.reshape", x, shape=shape)


def flatten(x, start_dim: int = 0, end_dim: int = -1):
    """Merge dims ``start_dim..end_dim`` (inclusive) into one, like ``torch.flatten``."""
    x = as_tensor(x)
    if x.ndim == 0:
        return reshape(x, (1,))
    try:
        s, e = norm_axis(start_dim, x.ndim, "start_dim"), norm_axis(end_dim, x.ndim, "end_dim")
    except ValueError as err:
        raise TraceError(f"flatten: {err}\n  at {_user_line()}") from None
    if s > e:
        raise TraceError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}\n  at {_user_line()}")
    shape = x.shape[:s] + (dim_prod(x.shape[s:e + 1]),) + x.shape[e + 1:]
    return reshape(x, shape)


def transpose(x, perm=None):
    """Permute axes (``None`` reverses them, like ``np.transpose``)."""
    x = as_tensor(x)
    perm = tuple(range(x.ndim))[::-1] if perm is None else tuple(perm)
    if perm == tuple(range(x.ndim)):
        return x
    return emit("sc.transpose", x, perm=perm)


def concat(tensors, axis: int = 0):
    """``np.concatenate`` of a list of tensors."""
    return emit("sc.concat", [as_tensor(t) for t in tensors], axis=axis)


def stack(tensors, axis: int = 0):
    """``np.stack``: a new axis of length ``len(tensors)`` (e.g. expert weights into ``[E, ...]``)."""
    return emit("sc.stack", [as_tensor(t) for t in tensors], axis=axis)


def slice(x, axis: int = 0, start=None, stop=None, step: int = 1):  # noqa: A001 - the op's name
    """``x[..., start:stop:step, ...]`` on ``axis``."""
    return emit("sc.slice", as_tensor(x), axis=axis, start=start, stop=stop, step=step)


def broadcast_to(x, shape):
    x = as_tensor(x)
    shape = _shape_arg(shape)
    if tuple(shape) == tuple(x.shape):
        return x
    return emit("sc.broadcast_to", x, shape=shape)


def expand_dims(x, axis):
    """Insert size-1 dims at ``axis`` (an int or a tuple of result positions)."""
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return emit("sc.expand_dims", as_tensor(x), axes=axes)


def squeeze(x, axis=None):
    """Drop size-1 dims (``None``: every dim that is statically 1)."""
    x = as_tensor(x)
    if axis is None:
        axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
    else:
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if not axes:
        return x
    return emit("sc.squeeze", x, axes=axes)


def _is_int(i) -> bool:
    return isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))


def getitem(x, idx):
    """``x[idx]`` with NumPy basic indexing: ints, slices (with steps), ``None``, ``...``, plus
    integer index arrays (``sc.Tensor``, NumPy arrays or lists). One index array gathers along its
    axis with ``sc.take``. Several (NumPy advanced indexing: ``w[tok, slot]``) broadcast together;
    their axes are merged by ``sc.reshape`` (moved to the front first by ``sc.transpose`` when they
    are not adjacent, where NumPy puts the result dims too) and gathered with one ``sc.take`` of
    the flat index ``i0 * n1 * n2 + i1 * n2 + i2`` (the indexed dims after the first must be static;
    each index after the first is range-checked by ``take(arange(n_j), i_j)``, so an index past its
    axis raises instead of reading another row). Boolean masks are data dependent and cannot be traced
    (``sc.ops.nonzero(mask)`` gives their indices)."""
    x = as_tensor(x)
    items = list(idx) if isinstance(idx, tuple) else [idx]

    def fail(msg):
        raise TraceError(f"x[...] on {x.type.pretty()}: {msg}\n  at {_user_line()}")

    # array-like indices become integer tensors
    for k, it in enumerate(items):
        if isinstance(it, (list, np.ndarray)):
            arr = np.asarray(it)
            if arr.dtype == np.bool_:
                fail("boolean mask indices are not supported")
            if arr.dtype.kind not in "iu":
                fail(f"index arrays must hold integers, got {arr.dtype}")
            items[k] = as_tensor(arr.astype(np.int64))
        elif isinstance(it, (Tensor, Parameter)):
            items[k] = as_tensor(it)
            if not items[k].dtype.is_int:
                fail(f"index tensors must be integer tensors, got {items[k].dtype}")
        elif not (_is_int(it) or it is None or it is Ellipsis or isinstance(it, builtins.slice)):
            fail(f"unsupported index {it!r}")
    if builtins.sum(1 for it in items if it is Ellipsis) > 1:
        fail("an index can only have a single ellipsis ('...')")
    tensors = [it for it in items if isinstance(it, Tensor)]
    if tensors and any(_is_int(it) for it in items):
        fail("an index tensor cannot be combined with integer indices (use x[i][idx])")
    used = builtins.sum(1 for it in items if it is not None and it is not Ellipsis)
    if used > x.ndim:
        fail(f"too many indices: {used} for rank {x.ndim}")
    if Ellipsis in [it for it in items if not isinstance(it, Tensor)]:
        k = next(i for i, it in enumerate(items) if it is Ellipsis)
        items[k:k + 1] = [builtins.slice(None)] * (x.ndim - used)
    else:
        items += [builtins.slice(None)] * (x.ndim - used)

    y, axis, gather, drop = x, 0, [], []
    for it in items:
        if it is None:
            y = expand_dims(y, axis)
            axis += 1
        elif isinstance(it, Tensor):
            gather.append((axis, it))
            axis += 1
        elif isinstance(it, builtins.slice):
            if it.step == 0:
                fail("slice step cannot be zero")
            for v in (it.start, it.stop, it.step):
                if v is not None and not _is_int(v):
                    fail(f"slice bounds must be Python ints, got {v!r}")
            start, stop, step = (None if v is None else int(v) for v in (it.start, it.stop, it.step))
            step = 1 if step is None else step
            n = y.shape[axis]
            if isinstance(n, int):  # clamp here so the op carries plain in-range bounds
                start, stop, step = builtins.slice(start, stop, step).indices(n)
                if not len(range(start, stop, step)):
                    start, stop, step = 0, 0, 1
                if step < 0 and stop < 0:
                    stop = None  # "through index 0": -1 would mean the last element
                full = start == 0 and stop == n and step == 1
                if step > 0 and stop == n:
                    stop = None
                if step > 0 and start == 0:
                    start = None
            else:
                full = start in (None, 0) and stop is None and step == 1
            if not full:
                y = slice(y, axis, start, stop, step)
            axis += 1
        else:  # an int: a length-1 slice, squeezed below
            i, n = int(it), y.shape[axis]
            if isinstance(n, int):
                if not -n <= i < n:
                    fail(f"index {i} is out of bounds for axis {axis} with size {n}")
                i %= n
                if n != 1:
                    y = slice(y, axis, i or None, None if i + 1 == n else i + 1, 1)
            else:
                y = slice(y, axis, i or None, None if i == -1 else i + 1, 1)
            drop.append(axis)
            axis += 1
    if drop:
        y = squeeze(y, tuple(drop))
    from .index import take
    if len(gather) == 1:
        g_axis = gather[0][0] - builtins.sum(1 for d in drop if d < gather[0][0])
        y = take(y, gather[0][1], axis=g_axis)
    elif gather:  # (no int indices here: they are refused together with index tensors)
        y = _gather_many(y, [a for a, _ in gather], [t for _, t in gather], fail)
    return y


def _gather_many(y, axes: list, indices: list, fail):
    """``y[..., i0, i1, ...]`` (NumPy advanced indexing) for index tensors on ``axes`` of ``y``:
    one ``sc.take`` of the flat index over the merged axes (every index after the first passes
    through ``take(arange(n), i)`` first, so an index past its own axis raises as NumPy does)."""
    from .core import cast, constant
    from .elementwise import add, mul
    from .index import take
    try:
        shape = broadcast_shapes(*(t.shape for t in indices))
    except ValueError as e:
        fail(f"index arrays do not broadcast together: {e}")
    indices = [broadcast_to(cast(t, "int64"), shape) if t.shape != shape else cast(t, "int64") for t in indices]
    m = len(axes)
    if axes != list(range(axes[0], axes[0] + m)):  # not adjacent: NumPy puts the result dims first
        y = transpose(y, axes + [a for a in range(y.ndim) if a not in axes])
        axes = list(range(m))
    a0 = axes[0]
    flat = None
    for j, t in enumerate(indices):
        stride = 1
        for a in axes[j + 1:]:
            if not isinstance(y.shape[a], int):
                fail(f"with several index arrays the indexed dims after the first must be static, "
                     f"dim {a} is {y.shape[a]!r}")
            stride *= y.shape[a]
        if j:  # range check of its own axis: take(arange(n), t) is t, or an IndexError naming n
            t = take(constant(np.arange(y.shape[axes[j]], dtype=np.int64)), t, axis=0)
        term = t if j == m - 1 else mul(t, stride)
        flat = term if flat is None else add(flat, term)
    return take(flatten(y, a0, a0 + m - 1), flat, axis=a0)
