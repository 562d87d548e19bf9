"""``canonicalize``: local simplifications that leave a graph smaller and in one normal form, so
that later passes (CSE, fusion, the sparse-activation rewrites) see fewer spellings of the same
computation.

It runs the greedy pattern driver (``passes/rewrite.py``) with

* the **algebraic patterns registered on the ops**: each pattern below is declared with
  ``@canonicalization("sc.add", name="add-zero")``, which appends a ``Pattern`` to the op
  definitions' ``canonicalizers`` list (as targets fill ``lowerings``). Other modules may
  register more patterns the same way; the pass gathers every op's list when it runs;
* **constant folding**: a pure op without regions whose operands are all ``sc.constant`` and
  whose results are small (``max-fold-elements``) is evaluated by its NumPy reference and
  replaced by ``sc.constant`` ops. Weights (``sc.param``) are never folded; that is the
  ``fold-constants`` pass;
* the driver's **dead-op erasure** (pure ops whose results are unused).

Every rewrite is exact under the reference semantics and keeps every value's type (shape and
dtype): a pattern whose replacement would have a different type, for instance ``x + zeros``
where the zeros broadcast ``x`` to a bigger shape, does not fire. Rewrites that are only exact
for integers (``x * 0 -> 0``, ``x - x -> 0``; wrong for floats with inf/NaN) check the dtype.
Float zeros keep their sign: ``x + 0.0`` is not ``x`` when ``x`` is ``-0.0``, so only
``x + (-0.0) -> x`` fires for floats (as in MLIR's arith dialect).

Canonicalization is an optimisation, never needed for correctness: a graph means the same
with or without it. The driver stops at a fixpoint and raises ``RewriteError`` if the patterns
do not converge within ``max-iterations`` sweeps.

Statistics are counted per pattern (``canonicalize: 3 rewrites by add-zero``,
``canonicalize: 2 rewrites by fold-constant``, ``canonicalize: 4 dead ops erased``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..ir import Operation, TensorType, Value
from ..ir.dtypes import DType
from ..ir.opdef import REGISTRY, get_opdef
from .registry import Pass, Statistics, option, register_pass
from .rewrite import Pattern, Rewriter, apply_patterns, producer

__all__ = ["Canonicalize", "canonicalization", "canonicalization_patterns", "fold_constant_pattern"]

PatternFn = Callable[[Operation, Rewriter], bool]


def canonicalization(*op_names: str, name: str) -> Callable[[PatternFn], PatternFn]:
    """Register ``fn(op, rw) -> bool`` as a canonicalization pattern of the ops ``op_names``.

    ``name`` labels the pattern in statistics and error messages (``"add-zero"``). The pattern
    is appended to each op definition's ``canonicalizers``; registering a pattern of the same
    name again (a module reloaded) replaces the earlier one.
    """
    if not op_names:
        raise ValueError("@canonicalization needs at least one op name")

    def deco(fn: PatternFn) -> PatternFn:
        for op_name in op_names:
            opdef = get_opdef(op_name)
            if opdef is None:
                raise ValueError(f"@canonicalization({op_name!r}, name={name!r}): no op named {op_name!r} is "
                                 f"declared (is its module imported?)")
            kept = [p for p in opdef.canonicalizers if p.label != name]
            opdef.canonicalizers[:] = kept + [Pattern(op_name, fn, name)]
        return fn
    return deco


def canonicalization_patterns() -> list[Pattern]:
    """Every pattern registered on an op definition, in registry order."""
    return [p for opdef in REGISTRY.values() for p in opdef.canonicalizers]


# ---------------------------------------------------------------------------------------------
# helpers

def constant_value(v: Value) -> np.ndarray | None:
    """The array of ``v`` when ``v`` is the result of an ``sc.constant``, else None."""
    op = producer(v, "sc.constant")
    return None if op is None else op.attrs["value"]


def _is_splat(v: Value, x) -> bool:
    """Whether every element of ``v`` is ``x``: ``v`` is a constant (any shape) or a
    ``broadcast_to`` of one (zeros of a symbolic shape) whose elements all equal ``x``."""
    while (src := producer(v, "sc.broadcast_to")) is not None:
        v = src.operands[0]
    arr = constant_value(v)
    if arr is None:
        return False
    with np.errstate(all="ignore"):
        return bool(np.all(arr == x))


def _numeric(op: Operation) -> bool:
    """Whether ``op``'s result is an int or float tensor (not bool: the arithmetic identities
    below are stated for numbers)."""
    t = op.results[0].type
    return isinstance(t, TensorType) and not t.dtype.is_bool


def _replace_by(op: Operation, rw: Rewriter, value: Value) -> bool:
    """Replace ``op`` by ``value`` when it has exactly ``op``'s result type; else leave it."""
    if value.type != op.results[0].type:
        return False
    rw.replace(op, [value])
    return True


def _splat(op: Operation, rw: Rewriter, x, reuse: Value | None = None) -> Value:
    """A value of ``op``'s result type with every element ``x``, created before ``op``:
    ``reuse`` if it already is one, else a rank-0 ``sc.constant`` broadcast to the result
    shape (constant folding turns a small static broadcast into one constant)."""
    t = op.results[0].type
    if reuse is not None and reuse.type == t:
        return reuse
    scalar = rw.create(op, "sc.constant", attrs={"value": np.array(x, dtype=t.dtype.np)}).result
    if t.rank == 0:
        return scalar
    return rw.create(op, "sc.broadcast_to", [scalar], {"shape": list(t.shape)}).result


# ---------------------------------------------------------------------------------------------
# arithmetic identities

def _is_additive_identity(v: Value, dtype: DType) -> bool:
    """0 for integers; for floats only -0.0 (``-0.0 + -0.0`` is ``-0.0`` but ``-0.0 + 0.0`` is
    ``+0.0``, so ``x + 0.0 -> x`` would flip the sign of a negative-zero ``x``, as MLIR notes)."""
    if not _is_splat(v, 0):
        return False
    if not dtype.is_float:
        return True
    while (src := producer(v, "sc.broadcast_to")) is not None:
        v = src.operands[0]
    arr = constant_value(v)
    return arr is not None and bool(np.all(np.signbit(arr.astype(np.float64))))


@canonicalization("sc.add", name="add-zero")
def add_zero(op: Operation, rw: Rewriter) -> bool:
    """``x + 0 -> x`` and ``0 + x -> x`` (the zero: a constant of any shape that broadcasts
    without growing ``x``; for floats it must be ``-0.0``: see ``_is_additive_identity``)."""
    if not _numeric(op):
        return False
    a, b = op.operands
    dt = op.results[0].type.dtype
    return ((_is_additive_identity(b, dt) and _replace_by(op, rw, a))
            or (_is_additive_identity(a, dt) and _replace_by(op, rw, b)))


@canonicalization("sc.sub", name="sub-zero")
def sub_zero(op: Operation, rw: Rewriter) -> bool:
    """``x - 0 -> x``: exact for every number (``-0.0 - 0.0`` is ``-0.0``)."""
    a, b = op.operands
    return _numeric(op) and _is_splat(b, 0) and _replace_by(op, rw, a)


@canonicalization("sc.mul", name="mul-one")
def mul_one(op: Operation, rw: Rewriter) -> bool:
    """``x * 1 -> x`` and ``1 * x -> x``: exact for every number, inf and NaN included."""
    if not _numeric(op):
        return False
    a, b = op.operands
    return ((_is_splat(b, 1) and _replace_by(op, rw, a))
            or (_is_splat(a, 1) and _replace_by(op, rw, b)))


@canonicalization("sc.div", name="div-one")
def div_one(op: Operation, rw: Rewriter) -> bool:
    """``x / 1 -> x``: exact for floats and for integer division (which truncates)."""
    a, b = op.operands
    return _numeric(op) and _is_splat(b, 1) and _replace_by(op, rw, a)


@canonicalization("sc.mul", name="int-mul-zero")
def int_mul_zero(op: Operation, rw: Rewriter) -> bool:
    """Integers only: ``x * 0 -> 0`` and ``0 * x -> 0`` (zeros of the product's type). Not for
    floats, where ``inf * 0`` and ``NaN * 0`` are NaN."""
    if not op.result.type.dtype.is_int:
        return False
    a, b = op.operands
    zero = b if _is_splat(b, 0) else a if _is_splat(a, 0) else None
    if zero is None:
        return False
    rw.replace(op, [_splat(op, rw, 0, reuse=zero)])
    return True


@canonicalization("sc.sub", name="int-sub-self")
def int_sub_self(op: Operation, rw: Rewriter) -> bool:
    """Integers only: ``x - x -> 0`` (wrapping arithmetic makes it exact). Not for floats, where
    ``inf - inf`` is NaN."""
    a, b = op.operands
    if a is not b or not op.result.type.dtype.is_int:
        return False
    rw.replace(op, [_splat(op, rw, 0)])
    return True


# ---------------------------------------------------------------------------------------------
# unary ops applied twice

@canonicalization("sc.neg", name="neg-neg")
def neg_neg(op: Operation, rw: Rewriter) -> bool:
    """``neg(neg(x)) -> x``: exact (integer negation wraps, so even the minimum is restored)."""
    inner = producer(op.operands[0], "sc.neg")
    return inner is not None and _replace_by(op, rw, inner.operands[0])


@canonicalization("sc.logical_not", name="not-not")
def not_not(op: Operation, rw: Rewriter) -> bool:
    """``logical_not(logical_not(x)) -> x``."""
    inner = producer(op.operands[0], "sc.logical_not")
    return inner is not None and _replace_by(op, rw, inner.operands[0])


@canonicalization("sc.abs", "sc.relu", name="idempotent-unary")
def idempotent_unary(op: Operation, rw: Rewriter) -> bool:
    """``abs(abs(x)) -> abs(x)`` and ``relu(relu(x)) -> relu(x)``: applying either op to its own
    result changes nothing."""
    inner = producer(op.operands[0], op.name)
    return inner is not None and _replace_by(op, rw, inner.result)


@canonicalization("sc.abs", name="abs-neg")
def abs_neg(op: Operation, rw: Rewriter) -> bool:
    """``abs(neg(x)) -> abs(x)`` for floats and signed integers: ``|-x| = |x|`` (for the minimum
    integer both sides wrap to the same value). Not for unsigned integers, where ``neg`` wraps
    (``-7`` is 249 in ui8) and ``abs`` does nothing."""
    inner = producer(op.operands[0], "sc.neg")
    if inner is None or op.result.type.dtype.np.kind == "u":
        return False
    rw.replace(op, [rw.create(op, "sc.abs", [inner.operands[0]]).result])
    return True


# ---------------------------------------------------------------------------------------------
# casts

#: float pairs (narrow, wide) where the wide type holds every value of the narrow one
_WIDER_FLOATS = {("f16", "f32"), ("f16", "f64"), ("bf16", "f32"), ("bf16", "f64"), ("f32", "f64")}
#: significand bits (precision) of each float type: integers up to 2**p are exact in it
_FLOAT_PRECISION = {"f16": 11, "bf16": 8, "f32": 24, "f64": 53}


def exact_cast(src: DType, dst: DType) -> bool:
    """Whether casting ``src`` to ``dst`` keeps every value exactly, so that casting back to
    ``src`` restores it: bool to anything; an integer to a wider integer range, or to a float
    whose precision holds all its values; a float to a wider float."""
    if src == dst or src.is_bool:
        return True
    if dst.is_bool:
        return False
    if src.is_float:
        return dst.is_float and (src.name, dst.name) in _WIDER_FLOATS
    lo, hi = np.iinfo(src.np).min, np.iinfo(src.np).max
    if dst.is_int:
        info = np.iinfo(dst.np)
        return info.min <= lo and hi <= info.max
    return max(-int(lo), int(hi)) <= 2 ** _FLOAT_PRECISION[dst.name]


@canonicalization("sc.cast", name="cast-noop")
def cast_noop(op: Operation, rw: Rewriter) -> bool:
    """``cast(x, dtype of x) -> x``."""
    return _replace_by(op, rw, op.operands[0])


@canonicalization("sc.cast", name="cast-round-trip")
def cast_round_trip(op: Operation, rw: Rewriter) -> bool:
    """``cast(cast(x, wide), dtype of x) -> x`` when ``x -> wide`` is exact (f16 -> f32 -> f16,
    i32 -> i64 -> i32, bf16 -> f32 -> bf16, bool -> anything -> bool; see ``exact_cast``)."""
    inner = producer(op.operands[0], "sc.cast")
    if inner is None:
        return False
    x = inner.operands[0]
    if not (isinstance(x.type, TensorType) and exact_cast(x.type.dtype, inner.result.type.dtype)):
        return False
    return _replace_by(op, rw, x)


# ---------------------------------------------------------------------------------------------
# shape ops

#: ops that keep the row-major order of the elements and only regroup the dims
_VIEW_OPS = ("sc.reshape", "sc.expand_dims", "sc.squeeze")


@canonicalization("sc.reshape", "sc.expand_dims", "sc.squeeze", "sc.broadcast_to", name="shape-noop")
def shape_noop(op: Operation, rw: Rewriter) -> bool:
    """A reshape, expand_dims, squeeze or broadcast_to whose result type is its operand's type
    changes nothing (reshape keeps the row-major order; the others have nothing to insert,
    remove or repeat)."""
    return _replace_by(op, rw, op.operands[0])


@canonicalization("sc.reshape", "sc.expand_dims", "sc.squeeze", name="view-chain-noop")
def view_chain_noop(op: Operation, rw: Rewriter) -> bool:
    """``view(view(x)) -> x`` for reshape/expand_dims/squeeze chains that come back to ``x``'s
    type (``squeeze(expand_dims(x, [0]), [0])``): neither op moves an element in row-major
    order, so the same shape means the same tensor."""
    inner = producer(op.operands[0], *_VIEW_OPS)
    return inner is not None and _replace_by(op, rw, inner.operands[0])


@canonicalization("sc.reshape", name="reshape-of-view")
def reshape_of_view(op: Operation, rw: Rewriter) -> bool:
    """``reshape(view(x), s) -> reshape(x, s)`` where view is a reshape, expand_dims or squeeze:
    the view keeps the elements in row-major order and their count, so reshaping ``x``
    directly gives the same tensor (``s`` stays valid: the element count is the same)."""
    inner = producer(op.operands[0], *_VIEW_OPS)
    if inner is None:
        return False
    new = rw.create(op, "sc.reshape", [inner.operands[0]], {"shape": op.attrs["shape"]})
    rw.replace(op, [new.result])
    return True


@canonicalization("sc.transpose", name="transpose-identity")
def transpose_identity(op: Operation, rw: Rewriter) -> bool:
    """``transpose(x, [0, 1, ..., n-1]) -> x``."""
    if list(op.attrs["perm"]) != list(range(len(op.attrs["perm"]))):
        return False
    return _replace_by(op, rw, op.operands[0])


@canonicalization("sc.transpose", name="transpose-transpose")
def transpose_transpose(op: Operation, rw: Rewriter) -> bool:
    """``transpose(transpose(x, p), q) -> transpose(x, [p[i] for i in q])`` (result dim ``i`` is
    inner dim ``q[i]``, which is ``x`` dim ``p[q[i]]``), or ``x`` when that is the identity."""
    inner = producer(op.operands[0], "sc.transpose")
    if inner is None:
        return False
    p, q = list(inner.attrs["perm"]), list(op.attrs["perm"])
    perm = [p[i] for i in q]
    x = inner.operands[0]
    if perm == list(range(len(perm))):
        return _replace_by(op, rw, x)
    rw.replace(op, [rw.create(op, "sc.transpose", [x], {"perm": perm}).result])
    return True


@canonicalization("sc.broadcast_to", name="broadcast-broadcast")
def broadcast_broadcast(op: Operation, rw: Rewriter) -> bool:
    """``broadcast_to(broadcast_to(x, s1), s2) -> broadcast_to(x, s2)``: every dim of ``x`` is 1
    or equal to its dim in ``s1``, and then (not being 1) equal to its dim in ``s2``."""
    inner = producer(op.operands[0], "sc.broadcast_to")
    if inner is None:
        return False
    new = rw.create(op, "sc.broadcast_to", [inner.operands[0]], {"shape": op.attrs["shape"]})
    rw.replace(op, [new.result])
    return True


@canonicalization("sc.slice", name="slice-full")
def slice_full(op: Operation, rw: Rewriter) -> bool:
    """A slice that keeps the whole tensor -> its operand: the result type equals the operand's
    and the step is 1 (the elements, in order), or the dim is a static 1 (any step picks the one
    element). A step of -1 over a whole dim reverses it and is kept."""
    x = op.operands[0]
    axis = op.attrs["axis"] % max(x.type.rank, 1)
    if not (op.attrs["step"] == 1 or x.type.shape[axis] == 1):
        return False
    return _replace_by(op, rw, x)


@canonicalization("sc.concat", name="concat-single")
def concat_single(op: Operation, rw: Rewriter) -> bool:
    """``concat([x]) -> x``."""
    return len(op.operands) == 1 and _replace_by(op, rw, op.operands[0])


# ---------------------------------------------------------------------------------------------
# select and logic

@canonicalization("sc.where", name="where-same-branches")
def where_same_branches(op: Operation, rw: Rewriter) -> bool:
    """``where(c, x, x) -> x`` when the condition does not broadcast ``x`` to a bigger shape."""
    _, a, b = op.operands
    return a is b and _replace_by(op, rw, a)


@canonicalization("sc.where", name="where-constant-condition")
def where_constant_condition(op: Operation, rw: Rewriter) -> bool:
    """``where(true, a, b) -> a`` and ``where(false, b, a) -> b`` for a constant condition that is
    all true or all false, when the chosen branch has the result's type."""
    c, a, b = op.operands
    if _is_splat(c, True):
        return _replace_by(op, rw, a)
    if _is_splat(c, False):
        return _replace_by(op, rw, b)
    return False


@canonicalization("sc.logical_and", name="and-true")
def and_true(op: Operation, rw: Rewriter) -> bool:
    """``x and true -> x`` (either side; the constant may broadcast as long as ``x`` does not grow)."""
    a, b = op.operands
    return (_is_splat(b, True) and _replace_by(op, rw, a)) or (_is_splat(a, True) and _replace_by(op, rw, b))


@canonicalization("sc.logical_or", name="or-false")
def or_false(op: Operation, rw: Rewriter) -> bool:
    """``x or false -> x`` (either side; the constant may broadcast as long as ``x`` does not grow)."""
    a, b = op.operands
    return (_is_splat(b, False) and _replace_by(op, rw, a)) or (_is_splat(a, False) and _replace_by(op, rw, b))


#: binary ops whose operands can be swapped without changing any result bit that matters
COMMUTATIVE = ("sc.add", "sc.mul", "sc.maximum", "sc.minimum", "sc.equal", "sc.not_equal", "sc.logical_and",
               "sc.logical_or")


@canonicalization(*COMMUTATIVE, name="constant-to-right")
def constant_to_right(op: Operation, rw: Rewriter) -> bool:
    """``op(constant, x) -> op(x, constant)`` for commutative ops, so ``2 * x`` and ``x * 2``
    become one spelling that CSE can merge. Broadcasting is symmetric, so the type is kept;
    it fires only when the right operand is not a constant, so it cannot undo itself."""
    a, b = op.operands
    if constant_value(a) is None or constant_value(b) is not None:
        return False
    rw.replace(op, [rw.create(op, op.name, [b, a], dict(op.attrs)).result])
    return True


# ---------------------------------------------------------------------------------------------
# constant folding

#: ops that are never folded: weights (``fold-constants`` handles them) and constants themselves
_NOT_FOLDED = ("sc.param", "sc.constant")


def fold_constant_pattern(max_elements: int = 4096) -> Pattern:
    """A pattern for every op that evaluates a pure op without regions whose operands are all
    ``sc.constant`` with its NumPy reference, and replaces it by ``sc.constant`` ops holding
    the results (dtype exactly as declared). It fires only when all results are static tensors
    of at most ``max_elements`` elements in total; an op whose reference fails on the constants
    (an integer division by zero) is left alone, to fail at run time as it would unfolded."""

    def fold_constant(op: Operation, rw: Rewriter) -> bool:
        d = op.opdef
        if (d is None or op.name in _NOT_FOLDED or "pure" not in d.traits or d.regions or op.regions
                or d.reference is None or d.declared_result or not op.results):
            return False
        arrays = [constant_value(v) for v in op.operands]
        if any(a is None for a in arrays):
            return False
        types = [r.type for r in op.results]
        if not all(isinstance(t, TensorType) and t.is_static for t in types):
            return False
        if sum(int(np.prod(t.shape, dtype=np.int64)) for t in types) > max_elements:
            return False
        try:
            with np.errstate(all="ignore"):
                outs = d.run_reference(arrays, op.attrs)
        except Exception:  # noqa: BLE001 - the op fails on these values: keep it, it fails when run
            return False
        if len(outs) != len(types):
            return False
        values = []
        for t, o in zip(types, outs):
            o = np.asarray(o)
            if o.dtype != t.dtype.np or o.shape != t.shape:
                return False  # a reference that disagrees with its shape rule: leave the op to the interpreter
            if t.dtype.name == "bf16" and not np.isfinite(o.astype(np.float32)).all():
                # the printer writes bf16 inf/NaN as 32-bit patterns the parser rejects
                # (sparsec/ir/attributes.py format_float); keep such IR printable
                return False
            values.append(np.array(o, copy=True))
        rw.replace(op, [rw.create(op, "sc.constant", attrs={"value": v}).result for v in values])
        return True

    return Pattern(None, fold_constant, "fold-constant")


# ---------------------------------------------------------------------------------------------
# the pass

@register_pass
@dataclass(frozen=True)
class Canonicalize(Pass):
    """simplify algebra and shape ops, fold small constant expressions, erase dead ops"""
    name = "canonicalize"
    max_fold_elements: int = option(4096, doc="fold an op of constants only when its results hold at most this "
                                              "many elements (0: no folding)")
    max_iterations: int = option(10, doc="sweeps of the pattern driver before it reports that the patterns "
                                         "do not converge")

    def __post_init__(self):
        if self.max_fold_elements < 0:
            raise ValueError(f"max-fold-elements must be >= 0, got {self.max_fold_elements}")
        if self.max_iterations < 1:
            raise ValueError(f"max-iterations must be >= 1, got {self.max_iterations}")

    def patterns(self) -> list[Pattern]:
        """The registered op patterns, then constant folding (unless ``max-fold-elements=0``)."""
        out = canonicalization_patterns()
        if self.max_fold_elements > 0:
            out.append(fold_constant_pattern(self.max_fold_elements))
        return out

    def run(self, graph, stats: Statistics) -> None:
        apply_patterns(graph, self.patterns(), stats, max_iterations=self.max_iterations)
