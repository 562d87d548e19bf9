"""The canonicalize pass: each pattern fires where it should and only there (never when the
replacement would change a type), constant folding, convergence, the greedy driver's errors,
and property tests against the reference interpreter."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings

import sparsec as sc
from sparsec.ir import Builder, Function, Graph, TensorType, as_dtype, get_opdef
from sparsec.passes import (PassManager, PipelineError, Pattern, RewriteError, Rewriter, Statistics,
                            apply_patterns, parse_pipeline)
from sparsec.passes.canonicalize import (COMMUTATIVE, Canonicalize, canonicalization, canonicalization_patterns,
                                         exact_cast)
from sparsec.testing import assert_equivalent, check_pass
from sparsec.testing.strategies import graphs


# ---------------------------------------------------------------------------------------------
# helpers

def build(body, *types):
    """A one-function graph: ``types`` are ``(shape, dtype)`` inputs named x, y, z...;
    ``body(b, *args)`` emits ops through the builder ``b`` and returns the outputs."""
    names = list("xyzw")[:len(types)]
    f = Function("main", [TensorType(s, d) for s, d in types], names)
    b = Builder(f.body)
    outs = body(b, *f.args)
    b.create("func.return", list(outs) if isinstance(outs, (list, tuple)) else [outs])
    return Graph([f]).verify()


def const(b, value, dtype):
    return b.emit("sc.constant", value=np.asarray(value, dtype=as_dtype(dtype).np))


def canon(g, text="canonicalize"):
    """(graph after the pipeline, its statistics), the input left untouched."""
    pm = PassManager.parse(text)
    out = pm.run(g)
    stats = Counter()
    for r in pm.report:
        stats.update(r.stats)
    return out, stats


def op_names(g):
    return [op.name for op in g.walk() if op.name != "func.return"]


def fired(stats, pattern):
    return stats[f"rewrites by {pattern}"]


def check_fires(g, pattern, remaining, examples=5):
    """``pattern`` fires, only ``remaining`` ops are left (in order) and the meaning is kept."""
    g2, stats = canon(g)
    assert fired(stats, pattern) >= 1, f"{pattern} did not fire: {dict(stats)}\n{g2}"
    assert op_names(g2) == remaining, str(g2)
    assert_equivalent(g, g2, examples=examples)
    return g2


def check_kept(g, pattern):
    """``pattern`` does not fire and the graph is unchanged."""
    g2, stats = canon(g)
    assert fired(stats, pattern) == 0, f"{pattern} fired: {dict(stats)}\n{g2}"
    assert str(g2) == str(g)
    return g2


F32, I64 = "f32", "i64"


# ---------------------------------------------------------------------------------------------
# registration and the pass object

def test_patterns_are_registered_on_op_definitions():
    labels = {(p.op, p.label) for p in canonicalization_patterns()}
    assert ("sc.add", "add-zero") in labels and ("sc.transpose", "transpose-transpose") in labels
    assert all(p in get_opdef(p.op).canonicalizers for p in canonicalization_patterns())
    assert {p.op for p in canonicalization_patterns() if p.label == "constant-to-right"} == set(COMMUTATIVE)


def test_canonicalization_decorator_replaces_a_pattern_of_the_same_name_and_names_unknown_ops():
    def first(op, rw):
        return False

    def second(op, rw):
        return False

    opdef = get_opdef("sc.tanh")
    try:
        canonicalization("sc.tanh", name="test-tanh")(first)
        canonicalization("sc.tanh", name="test-tanh")(second)
        mine = [p for p in opdef.canonicalizers if p.label == "test-tanh"]
        assert [p.fn for p in mine] == [second]
    finally:
        opdef.canonicalizers[:] = [p for p in opdef.canonicalizers if p.label != "test-tanh"]
    with pytest.raises(ValueError, match="no op named 'sc.nope'"):
        canonicalization("sc.nope", name="x")(first)


def test_pipeline_options():
    (p,) = parse_pipeline("canonicalize{max-fold-elements=16,max-iterations=3}")
    assert p == Canonicalize(max_fold_elements=16, max_iterations=3)
    assert str(p) == "canonicalize{max-fold-elements=16,max-iterations=3}"
    assert "fold-constant" not in [q.label for q in Canonicalize(max_fold_elements=0).patterns()]
    with pytest.raises(PipelineError, match="max-fold-elements must be >= 0"):
        parse_pipeline("canonicalize{max-fold-elements=-1}")
    with pytest.raises(PipelineError, match="max-iterations must be >= 1"):
        parse_pipeline("canonicalize{max-iterations=0}")


def test_statistics_are_reported_per_pattern():
    g = build(lambda b, x: b.emit("sc.neg", b.emit("sc.neg", x)), ((4,), F32))
    pm = PassManager.parse("canonicalize")
    pm.run(g)
    assert "canonicalize: 1 rewrites by neg-neg" in pm.statistics()
    assert "canonicalize: 1 dead ops erased" in pm.statistics()


# ---------------------------------------------------------------------------------------------
# arithmetic identities

@pytest.mark.parametrize("dtype", [F32, I64, "f16", "i32"])
@pytest.mark.parametrize("op,value,pattern,swap", [
    ("sc.add", 0, "add-zero", False), ("sc.add", 0, "add-zero", True), ("sc.sub", 0, "sub-zero", False),
    ("sc.mul", 1, "mul-one", False), ("sc.mul", 1, "mul-one", True), ("sc.div", 1, "div-one", False),
])
def test_identity_element_is_removed(dtype, op, value, pattern, swap):
    if op == "sc.add" and dtype in (F32, "f16"):
        value = -0.0  # the float additive identity (see the next test)

    def body(b, x):
        c = const(b, np.full((1, 4), value), dtype)  # broadcasts, but not beyond x
        return b.emit(op, *((c, x) if swap else (x, c)))
    check_fires(build(body, (("tokens", 4), dtype)), pattern, [])


def test_float_plus_positive_zero_is_kept_because_of_negative_zero():
    g = build(lambda b, x: b.emit("sc.add", x, const(b, 0.0, F32)), ((4,), F32))
    check_kept(g, "add-zero")
    x = np.array([-0.0, 1.0, -0.0, 2.0], np.float32)
    (y,) = sc.interpret(g, x)
    assert not np.signbit(y[0])  # -0.0 + 0.0 is +0.0: dropping the add would change it


@pytest.mark.parametrize("op,value,pattern", [("sc.add", 0, "add-zero"), ("sc.sub", 0, "sub-zero"),
                                              ("sc.mul", 1, "mul-one"), ("sc.div", 1, "div-one")])
def test_identity_element_that_broadcasts_x_to_a_bigger_shape_is_kept(op, value, pattern):
    g = build(lambda b, x: b.emit(op, x, const(b, np.full((3, 4), value), F32)), ((4,), F32))
    check_kept(g, pattern)


def test_identity_element_seen_through_broadcast_to():
    """Zeros of a symbolic shape are a broadcast constant; they still count as zero."""
    def body(b, x):
        zeros = b.emit("sc.broadcast_to", const(b, -0.0, F32), shape=["tokens", 4])
        return b.emit("sc.add", zeros, x)
    check_fires(build(body, (("tokens", 4), F32)), "add-zero", [])

    def cond(b, x, y):
        c = b.emit("sc.broadcast_to", const(b, [False], "i1"), shape=["tokens", 4])
        return b.emit("sc.where", c, x, y)
    check_fires(build(cond, (("tokens", 4), F32), (("tokens", 4), F32)), "where-constant-condition", [])


def test_identity_needs_every_element_equal():
    g = build(lambda b, x: b.emit("sc.add", x, const(b, [0, 0, 1, 0], F32)), ((4,), F32))
    check_kept(g, "add-zero")


def test_integer_mul_by_zero_gives_zeros_of_the_result_type():
    def body(b, x):
        return b.emit("sc.mul", const(b, 0, I64), x)
    g2 = check_fires(build(body, (("tokens", 4), I64)), "int-mul-zero", ["sc.constant", "sc.broadcast_to"])
    assert str(g2.main.outputs[0].type) == "tensor<?x4xi64>"
    # a static result of a small size folds into one constant
    g3 = check_fires(build(body, ((2, 4), I64)), "int-mul-zero", ["sc.constant"])
    assert g3.main.ops[0].attrs["value"].shape == (2, 4)
    # a zero constant of the result's type is reused as it is
    g4 = build(lambda b, x: b.emit("sc.mul", x, const(b, np.zeros((2, 4)), I64)), ((4,), I64))
    check_fires(g4, "int-mul-zero", ["sc.constant"])


def test_float_mul_by_zero_and_float_x_minus_x_are_kept():
    g = build(lambda b, x: b.emit("sc.mul", x, const(b, 0.0, F32)), ((4,), F32))
    check_kept(g, "int-mul-zero")
    # inf * 0 is NaN: the float product must stay
    x = np.array([np.inf, np.nan, 1.0, -2.0], np.float32)
    with np.errstate(invalid="ignore"):
        (y,) = sc.interpret(canon(g)[0], x)
    assert np.isnan(y[:2]).all() and (y[2:] == 0).all()
    check_kept(build(lambda b, x: b.emit("sc.sub", x, x), ((4,), F32)), "int-sub-self")


def test_integer_x_minus_x_is_zero():
    check_fires(build(lambda b, x: b.emit("sc.sub", x, x), (("batch", 3), "i32")), "int-sub-self",
                ["sc.constant", "sc.broadcast_to"])


def test_zero_minus_x_and_x_minus_y_are_kept():
    check_kept(build(lambda b, x: b.emit("sc.sub", const(b, 0, I64), x), ((4,), I64)), "sub-zero")
    check_kept(build(lambda b, x, y: b.emit("sc.sub", x, y), ((4,), I64), ((4,), I64)), "int-sub-self")


def test_arithmetic_identities_leave_booleans_alone():
    g = build(lambda b, x: b.emit("sc.add", x, const(b, False, "i1")), ((4,), "i1"))
    check_kept(g, "add-zero")


# ---------------------------------------------------------------------------------------------
# unary ops

@pytest.mark.parametrize("name,dtype,pattern,remaining", [
    ("sc.neg", F32, "neg-neg", []), ("sc.neg", "i8", "neg-neg", []),
    ("sc.logical_not", "i1", "not-not", []),
    ("sc.abs", F32, "idempotent-unary", ["sc.abs"]), ("sc.relu", I64, "idempotent-unary", ["sc.relu"]),
])
def test_unary_op_applied_twice(name, dtype, pattern, remaining):
    check_fires(build(lambda b, x: b.emit(name, b.emit(name, x)), (("tokens", 2), dtype)), pattern, remaining)


def test_neg_neg_restores_the_minimum_integer():
    g = build(lambda b, x: b.emit("sc.neg", b.emit("sc.neg", x)), ((2,), "i8"))
    x = np.array([-128, 127], np.int8)
    check_fires(g, "neg-neg", [])
    assert_equivalent(g, canon(g)[0], inputs=[(x,)])


def test_abs_of_neg():
    check_fires(build(lambda b, x: b.emit("sc.abs", b.emit("sc.neg", x)), ((3,), I64)), "abs-neg", ["sc.abs"])
    # unsigned: neg(7) wraps to 249, which abs keeps
    check_kept(build(lambda b, x: b.emit("sc.abs", b.emit("sc.neg", x)), ((3,), "ui8")), "abs-neg")


def test_neg_of_abs_is_kept():
    check_kept(build(lambda b, x: b.emit("sc.neg", b.emit("sc.abs", x)), ((3,), F32)), "neg-neg")


# ---------------------------------------------------------------------------------------------
# casts

def test_cast_to_the_same_dtype():
    check_fires(build(lambda b, x: b.emit("sc.cast", x, dtype="f16"), ((3,), "f16")), "cast-noop", [])


@pytest.mark.parametrize("src,wide", [("f16", "f32"), ("bf16", "f32"), ("f32", "f64"), ("i32", "i64"),
                                      ("i8", "f16"), ("ui8", "bf16"), ("i1", "f32"), ("i1", "i8")])
def test_exact_cast_round_trip_is_removed(src, wide):
    g = build(lambda b, x: b.emit("sc.cast", b.emit("sc.cast", x, dtype=wide), dtype=src), (("tokens", 4), src))
    check_fires(g, "cast-round-trip", [])


@pytest.mark.parametrize("src,mid", [("f32", "f16"), ("f32", "bf16"), ("f16", "bf16"), ("i32", "f32"),
                                     ("i64", "f64"), ("f32", "i64"), ("i32", "i8"), ("i8", "ui8"), ("f32", "i1")])
def test_inexact_cast_round_trip_is_kept(src, mid):
    g = build(lambda b, x: b.emit("sc.cast", b.emit("sc.cast", x, dtype=mid), dtype=src), ((4,), src))
    check_kept(g, "cast-round-trip")


def _probe_values(dt):
    """Values of ``dt`` that break inexact casts: extremes, fractions, big odd integers, specials."""
    if dt.is_bool:
        return np.array([False, True])
    if dt.is_int:
        info = np.iinfo(dt.np)
        vals = [info.min, info.max, 0, 1, -1, 2 ** 8 + 1, 2 ** 11 + 1, 2 ** 24 + 1, 2 ** 53 + 1]
        return np.array([v for v in vals if info.min <= v <= info.max], dtype=object).astype(dt.np)
    vals = [0.0, -0.0, 0.5, 0.1, 1 + 2.0 ** -10, 3.0e38, 1.0e-40, 6.0e-8, 65504.0, np.inf, -np.inf, 2.0 ** 24 + 2]
    with np.errstate(all="ignore"):
        return np.array(vals, dtype=np.float64).astype(dt.np)


@pytest.mark.parametrize("src", ["f32", "f16", "bf16", "f64", "i8", "i32", "i64", "ui8", "i1"])
def test_exact_cast_table_matches_numpy(src):
    """``exact_cast`` says yes exactly when no probe value changes, neither in the wide type nor
    back (so the table is neither wrong nor needlessly strict; i8 -> ui8 -> i8 restores the
    bits but not the values in between, and is not counted as exact)."""
    def equal(a, b):
        nan = np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64))
        return bool(np.all((a == b) | nan))

    s = as_dtype(src)
    x = _probe_values(s)
    for dst_name in ["f32", "f16", "bf16", "f64", "i8", "i32", "i64", "ui8", "i1"]:
        d = as_dtype(dst_name)
        with np.errstate(all="ignore"):
            wide = x.astype(d.np)
            same = equal(wide.astype(s.np), x) and equal(wide, x)
        assert exact_cast(s, d) == same, f"{src} -> {dst_name} -> {src}: exact_cast says {exact_cast(s, d)}"


# ---------------------------------------------------------------------------------------------
# shape ops

@pytest.mark.parametrize("name,attrs", [("sc.reshape", {"shape": ["tokens", -1]}), ("sc.broadcast_to",
                                        {"shape": ["tokens", 4]}), ("sc.expand_dims", {"axes": []}),
                                       ("sc.squeeze", {"axes": []})])
def test_shape_op_to_its_operand_type(name, attrs):
    check_fires(build(lambda b, x: b.emit(name, x, **attrs), (("tokens", 4), F32)), "shape-noop", [])


def test_reshape_of_reshape_is_one_reshape():
    def body(b, x):
        return b.emit("sc.reshape", b.emit("sc.reshape", x, shape=[-1]), shape=[2, "tokens", 2])
    g2 = check_fires(build(body, (("tokens", 4), F32)), "reshape-of-view", ["sc.reshape"])
    assert g2.main.ops[0].operands[0] is g2.main.args[0]


@pytest.mark.parametrize("view,attrs", [("sc.expand_dims", {"axes": [0, 2]}), ("sc.squeeze", {"axes": [1]})])
def test_reshape_of_expand_dims_or_squeeze(view, attrs):
    def body(b, x):
        return b.emit("sc.reshape", b.emit(view, x, **attrs), shape=[-1, 2])
    g2 = check_fires(build(body, (("batch", 1, 4), I64)), "reshape-of-view", ["sc.reshape"])
    assert g2.main.ops[0].operands[0] is g2.main.args[0]


def test_reshape_chain_back_to_x_disappears():
    def body(b, x):
        return b.emit("sc.reshape", b.emit("sc.reshape", x, shape=[-1]), shape=["batch", 3])
    check_fires(build(body, (("batch", 3), F32)), "view-chain-noop", [])


@pytest.mark.parametrize("first,second", [("sc.expand_dims", "sc.squeeze"), ("sc.squeeze", "sc.expand_dims")])
def test_expand_dims_and_squeeze_that_cancel(first, second):
    g = build(lambda b, x: b.emit(second, b.emit(first, x, axes=[1]), axes=[1]), ((3, 1, 2), F32))
    check_fires(g, "view-chain-noop", [])


def test_expand_dims_and_squeeze_of_other_axes_are_kept():
    g = build(lambda b, x: b.emit("sc.squeeze", b.emit("sc.expand_dims", x, axes=[0]), axes=[2]), ((3, 1), F32))
    g2, stats = canon(g)
    assert fired(stats, "view-chain-noop") == 0 and op_names(g2) == ["sc.expand_dims", "sc.squeeze"]


def test_reshape_of_a_transpose_back_to_the_input_shape_is_kept():
    """A transpose moves elements: reshaping its result to ``x``'s shape is not ``x``."""
    g = build(lambda b, x: b.emit("sc.reshape", b.emit("sc.transpose", x, perm=[1, 0]), shape=[2, 3]), ((2, 3), F32))
    check_kept(g, "view-chain-noop")


def test_transpose_identity_and_composition():
    check_fires(build(lambda b, x: b.emit("sc.transpose", x, perm=[0, 1, 2]), ((2, 3, 4), F32)),
                "transpose-identity", [])
    g = build(lambda b, x: b.emit("sc.transpose", b.emit("sc.transpose", x, perm=[1, 2, 0]), perm=[1, 2, 0]),
              (("tokens", 3, 4), F32))
    g2 = check_fires(g, "transpose-transpose", ["sc.transpose"])
    assert list(g2.main.ops[0].attrs["perm"]) == [2, 0, 1]
    # permutations that do not commute: the order of composition matters
    g = build(lambda b, x: b.emit("sc.transpose", b.emit("sc.transpose", x, perm=[1, 0, 2]), perm=[0, 2, 1]),
              ((2, 3, 4), F32))
    g2 = check_fires(g, "transpose-transpose", ["sc.transpose"])
    assert list(g2.main.ops[0].attrs["perm"]) == [1, 2, 0]
    g = build(lambda b, x: b.emit("sc.transpose", b.emit("sc.transpose", x, perm=[1, 2, 0]), perm=[2, 0, 1]),
              (("tokens", 3, 4), F32))
    check_fires(g, "transpose-transpose", [])


def test_transpose_of_a_square_matrix_is_kept():
    """Same type but not the identity permutation: the values move."""
    check_kept(build(lambda b, x: b.emit("sc.transpose", x, perm=[1, 0]), ((3, 3), F32)), "transpose-identity")


def test_broadcast_of_broadcast():
    def body(b, x, y):  # y brings the symbol "tokens"
        return b.emit("sc.broadcast_to", b.emit("sc.broadcast_to", x, shape=[3, 4]), shape=["tokens", 3, 4])
    check_fires(build(body, ((1, 4), F32), (("tokens", 1), F32)), "broadcast-broadcast", ["sc.broadcast_to"])


@pytest.mark.parametrize("shape,attrs", [
    (("tokens", 4), {"axis": 0}), ((3, 4), {"axis": 1, "start": 0, "stop": 4}),
    ((3, 4), {"axis": 0, "start": -3, "stop": 100}), ((3, 1), {"axis": 1, "step": -1}),
])
def test_slice_of_everything(shape, attrs):
    check_fires(build(lambda b, x: b.emit("sc.slice", x, **attrs), (shape, F32)), "slice-full", [])


@pytest.mark.parametrize("shape,attrs", [(("tokens", 4), {"axis": 0, "step": -1}), ((3, 4), {"axis": 1, "step": -1}),
                                         ((3, 4), {"axis": 1, "start": 1})])
def test_reversing_or_partial_slice_is_kept(shape, attrs):
    check_kept(build(lambda b, x: b.emit("sc.slice", x, **attrs), (shape, F32)), "slice-full")


def test_concat_of_one_tensor():
    check_fires(build(lambda b, x: b.emit("sc.concat", x, axis=1), (("batch", 2), I64)), "concat-single", [])


# ---------------------------------------------------------------------------------------------
# where, logic, commutative ops

def test_where_with_equal_branches():
    g = build(lambda b, c, x: b.emit("sc.where", c, x, x), (("tokens", 1), "i1"), (("tokens", 4), F32))
    check_fires(g, "where-same-branches", [])
    # a condition that broadcasts x to a bigger shape keeps the where
    check_kept(build(lambda b, c, x: b.emit("sc.where", c, x, x), ((3, 4), "i1"), ((4,), F32)),
               "where-same-branches")


@pytest.mark.parametrize("value,which", [(True, 1), (False, 2)])
def test_where_with_a_constant_condition(value, which):
    def body(b, x, y):
        return b.emit("sc.where", const(b, np.full((1, 4), value), "i1"), x, y)
    g2 = check_fires(build(body, (("tokens", 4), F32), (("tokens", 4), F32)), "where-constant-condition", [])
    assert g2.main.outputs[0] is g2.main.args[which - 1]
    mixed = build(lambda b, x, y: b.emit("sc.where", const(b, [True, False, True, True], "i1"), x, y),
                  ((4,), F32), ((4,), F32))
    check_kept(mixed, "where-constant-condition")
    # the chosen branch is smaller than the result: kept
    chosen, other = ((4,), F32), ((3, 4), F32)
    small = build(lambda b, x, y: b.emit("sc.where", const(b, value, "i1"), x, y),
                  *((chosen, other) if value else (other, chosen)))
    check_kept(small, "where-constant-condition")


def test_logical_and_true_and_or_false():
    check_fires(build(lambda b, x: b.emit("sc.logical_and", const(b, [True, True], "i1"), x), ((3, 2), "i1")),
                "and-true", [])
    check_fires(build(lambda b, x: b.emit("sc.logical_or", x, const(b, False, "i1")), ((3,), "i1")),
                "or-false", [])
    check_kept(build(lambda b, x: b.emit("sc.logical_or", x, const(b, True, "i1")), ((3,), "i1")), "or-false")


@pytest.mark.parametrize("name", COMMUTATIVE)
def test_constant_moves_to_the_right_of_commutative_ops(name):
    dt = "i1" if name.startswith("sc.logical") else F32
    value = [True, False, True] if dt == "i1" else [2.0, -1.0, 3.0]
    g = build(lambda b, x: b.emit(name, const(b, value, dt), x), ((2, 3), dt))
    g2 = check_fires(g, "constant-to-right", ["sc.constant", name])
    op = g2.main.ops[1]
    assert op.operands[0] is g2.main.args[0] and op.operands[1] is g2.main.ops[0].result


def test_constant_on_the_right_lets_cse_merge():
    g = build(lambda b, x: [b.emit("sc.mul", const(b, 2.0, F32), x), b.emit("sc.mul", x, const(b, 2.0, F32))],
              ((4,), F32))
    g2, _ = canon(g, "canonicalize,cse")
    assert op_names(g2) == ["sc.constant", "sc.mul"]
    assert_equivalent(g, g2)


def test_sub_is_not_commuted():
    check_kept(build(lambda b, x: b.emit("sc.sub", const(b, 2.0, F32), x), ((4,), F32)), "constant-to-right")


# ---------------------------------------------------------------------------------------------
# constant folding

def test_constant_expression_folds_with_its_exact_dtype():
    def body(b, x):
        c = b.emit("sc.exp", const(b, [0.0, 1.0, 2.0], "f16"))
        s = b.emit("sc.sum", b.emit("sc.mul", c, const(b, [1.0, 2.0, 3.0], "f16")), axes=[0])
        return b.emit("sc.add", x, s)
    g = build(body, ((3,), "f16"))
    g2 = check_fires(g, "fold-constant", ["sc.constant", "sc.add"])
    value = g2.main.ops[0].attrs["value"]
    assert value.dtype == np.float16 and value.shape == ()
    assert_equivalent(g, g2, rtol=0, atol=0)


def test_folding_an_op_with_several_results():
    def body(b, x):
        vals, idx = b.emit("sc.topk", const(b, [[3, 1, 2, 5]], "i32"), k=2)
        return b.emit("sc.add", x, vals), idx
    g2 = check_fires(build(body, ((1, 2), "i32")), "fold-constant", ["sc.constant", "sc.constant", "sc.add"])
    assert [str(v.type) for v in g2.main.outputs] == ["tensor<1x2xi32>", "tensor<1x2xi64>"]


def test_folding_respects_max_fold_elements():
    def body(b, x):
        big = b.emit("sc.broadcast_to", const(b, 1.0, F32), shape=[64, 65])
        return b.emit("sc.add", x, big)
    g = build(body, ((65,), F32))
    g2, stats = canon(g)
    assert fired(stats, "fold-constant") == 0 and "sc.broadcast_to" in op_names(g2)
    g3, stats = canon(g, "canonicalize{max-fold-elements=5000}")
    assert fired(stats, "fold-constant") == 1 and "sc.broadcast_to" not in op_names(g3)
    assert_equivalent(g, g3)
    small = build(lambda b, x: b.emit("sc.add", x, b.emit("sc.neg", const(b, 1.0, F32))), ((2,), F32))
    _, stats = canon(small, "canonicalize{max-fold-elements=0}")
    assert fired(stats, "fold-constant") == 0


def test_params_and_symbolic_results_are_not_folded():
    def body(b, x):
        w = b.create("sc.param", [], {"name": "w"}, result_types=[TensorType((4,), F32)]).result
        wc = b.emit("sc.add", w, const(b, 1.0, F32))
        wide = b.emit("sc.broadcast_to", const(b, [1.0, 2.0, 3.0, 4.0], F32), shape=["tokens", 4])
        return b.emit("sc.add", b.emit("sc.add", x, wc), wide)
    g = build(body, (("tokens", 4), F32))
    g.weights["w"] = np.arange(4, dtype=np.float32)
    g2, stats = canon(g)
    assert fired(stats, "fold-constant") == 0
    assert op_names(g2).count("sc.param") == 1 and "sc.broadcast_to" in op_names(g2)
    assert_equivalent(g, g2)


@pytest.mark.parametrize("name,indices,error", [("sc.div", [1, 0], "division by zero"),
                                                ("sc.take", [0, 7], "out of range|7")])
def test_an_op_that_fails_on_its_constants_is_left_to_fail_at_run_time(name, indices, error):
    attrs = {"axis": 0} if name == "sc.take" else {}
    g = build(lambda b, x: b.emit("sc.add", x, b.emit(name, const(b, [1, 2], I64), const(b, indices, I64), **attrs)),
              ((2,), I64))
    g2, stats = canon(g)
    assert fired(stats, "fold-constant") == 0 and name in op_names(g2)
    with pytest.raises(sc.InterpretError, match=error):
        sc.interpret(g2, np.zeros(2, np.int64))


def test_folding_non_finite_values():
    g = build(lambda b, x: b.emit("sc.add", x, b.emit("sc.log", const(b, [0.0, -1.0, 1.0], F32))), ((3,), F32))
    g2 = check_fires(g, "fold-constant", ["sc.constant", "sc.add"])
    assert str(sc.parse(str(g2))) == str(g2)
    (y,) = sc.interpret(g2, np.zeros(3, np.float32))
    assert y[0] == -np.inf and np.isnan(y[1]) and y[2] == 0


def test_bf16_non_finite_results_are_not_folded_so_the_ir_still_prints():
    g = build(lambda b, x: b.emit("sc.add", x, b.emit("sc.reciprocal", const(b, [0.0, 2.0], "bf16"))),
              ((2,), "bf16"))
    g2, stats = canon(g)
    assert fired(stats, "fold-constant") == 0
    assert str(sc.parse(str(g2))) == str(g2)


def test_folding_inside_a_fused_region():
    from sparsec.ir import Block, Region

    def body(b, x):
        blk = Block([x.type])
        ib = Builder(blk)
        one = ib.emit("sc.neg", ib.emit("sc.constant", value=np.array(-1.0, np.float32)))
        ib.create("sc.yield", [ib.emit("sc.mul", blk.args[0], one)])
        return b.create("sc.fused", [x], {}, regions=[Region([blk])]).result
    g = build(body, ((3,), F32))
    g2, stats = canon(g)
    assert fired(stats, "fold-constant") == 1 and fired(stats, "mul-one") == 1
    inner = [op.name for op in g2.main.ops[0].regions[0].block.ops]
    assert inner == ["sc.yield"], inner
    assert_equivalent(g, g2)


# ---------------------------------------------------------------------------------------------
# convergence and the driver

def test_a_long_chain_converges_in_one_sweep():
    """Each rewrite's new op is revisited in the same sweep: 60 transposes become one, and a
    second sweep finds nothing (ops erased in a sweep never hide the ops created after them)."""
    perms = [(1, 0, 2), (0, 2, 1), (2, 1, 0), (1, 2, 0)]

    def body(b, x):
        for i in range(60):
            x = b.emit("sc.transpose", x, perm=perms[i % 4])
        return x
    g = build(body, ((2, 3, 4), F32))
    stats = Counter()
    assert apply_patterns(g, canonicalization_patterns(), stats, max_iterations=2)
    assert op_names(g) == ["sc.transpose"] and stats["rewrites by transpose-transpose"] > 0


def test_canonicalize_reaches_a_fixpoint():
    def body(b, x, y):
        z = b.emit("sc.add", const(b, 0.0, F32), b.emit("sc.neg", b.emit("sc.neg", x)))
        t = b.emit("sc.transpose", b.emit("sc.transpose", z, perm=[1, 0]), perm=[1, 0])
        k = b.emit("sc.mul", const(b, 2.0, F32), b.emit("sc.add", const(b, 1.0, F32), const(b, 1.0, F32)))
        return b.emit("sc.where", y, b.emit("sc.mul", k, t), b.emit("sc.mul", t, k))
    g = build(body, (("tokens", 3), F32), (("tokens", 3), "i1"))
    once, stats = canon(g)
    assert sum(n for k, n in stats.items() if k.startswith("rewrites by")) >= 5
    twice, stats2 = canon(once)
    assert str(twice) == str(once) and not stats2
    assert_equivalent(g, once)


@settings(max_examples=40, deadline=None)
@given(graphs(max_ops=8, ops=["sc.add", "sc.mul", "sc.sub", "sc.neg", "sc.constant", "sc.cast", "sc.where",
                              "sc.transpose", "sc.reshape", "sc.maximum"]))
def test_canonicalize_is_idempotent(g):
    once, _ = canon(g)
    twice, stats = canon(once)
    assert str(twice) == str(once), f"a second run changed the IR: {dict(stats)}"


def _swap_max_min(op, rw):
    other = "sc.minimum" if op.name == "sc.maximum" else "sc.maximum"
    rw.replace(op, [rw.create(op, other, list(op.operands)).result])
    return True


def test_patterns_that_undo_each_other_raise_rewrite_error():
    g = build(lambda b, x, y: b.emit("sc.maximum", x, y), ((4,), F32), ((4,), F32))
    cycle = [Pattern("sc.maximum", _swap_max_min, "max-to-min"), Pattern("sc.minimum", _swap_max_min, "min-to-max")]
    with pytest.raises(RewriteError, match=r"did not converge after 3 sweeps.*max-to-min.*min-to-max|"
                                           r"did not converge after 3 sweeps.*min-to-max.*max-to-min"):
        apply_patterns(g, cycle, Statistics(), max_iterations=3)


def test_a_pattern_set_that_converges_does_not_raise():
    g = build(lambda b, x, y: b.emit("sc.maximum", x, y), ((4,), F32), ((4,), F32))
    once = [Pattern("sc.maximum", _swap_max_min, "max-to-min")]
    stats = Statistics()
    assert apply_patterns(g, once, stats, max_iterations=2)
    assert op_names(g) == ["sc.minimum"] and stats["rewrites by max-to-min"] == 1
    assert not apply_patterns(g, once, stats, max_iterations=1)


def test_rewriter_refuses_type_changing_replacements():
    g = build(lambda b, x, y: b.emit("sc.add", x, y), ((4,), F32), ((3, 4), F32))
    add = g.main.ops[0]
    rw = Rewriter()
    with pytest.raises(RewriteError, match=r"result 0 has type tensor<3 x 4 x f32>, the replacement has "
                                           r"tensor<4 x f32>"):
        rw.replace(add, [g.main.args[0]])
    with pytest.raises(RewriteError, match="replacing the uses"):
        rw.replace_uses(add.result, g.main.args[0])
    with pytest.raises(RewriteError, match="by its own result"):
        rw.replace(add, [add.result])
    with pytest.raises(ValueError, match="max_iterations"):
        apply_patterns(g, [], max_iterations=0)
    assert op_names(g) == ["sc.add"]  # nothing was changed by the refused rewrites


# ---------------------------------------------------------------------------------------------
# property tests against the reference interpreter

ARITH = ["sc.add", "sc.mul", "sc.sub", "sc.div", "sc.constant", "sc.neg", "sc.abs", "sc.relu", "sc.cast"]
SHAPE = ["sc.reshape", "sc.transpose", "sc.expand_dims", "sc.squeeze", "sc.slice", "sc.broadcast_to", "sc.concat",
         "sc.constant"]
LOGIC = ["sc.where", "sc.logical_not", "sc.logical_and", "sc.logical_or", "sc.equal", "sc.not_equal", "sc.maximum",
         "sc.minimum", "sc.constant"]


def test_preserves_meaning_on_random_graphs():
    check_pass("canonicalize", examples=200)


@pytest.mark.parametrize("ops,dtypes", [(ARITH, ("f32", "i64")), (ARITH, ("f16", "bf16", "i32", "i8", "ui8")),
                                        (SHAPE, ("f32", "i64")), (LOGIC, ("f32", "i64"))],
                         ids=["arith", "arith-narrow", "shape", "logic"])
def test_preserves_meaning_on_graphs_aimed_at_the_patterns(ops, dtypes):
    check_pass("canonicalize", examples=150, ops=ops, dtypes=dtypes)


def test_preserves_meaning_with_cse():
    check_pass("canonicalize,cse,canonicalize", examples=100, ops=ARITH + LOGIC)


@pytest.mark.slow
@pytest.mark.parametrize("ops", [None, ARITH, SHAPE, LOGIC], ids=["all", "arith", "shape", "logic"])
def test_preserves_meaning_many_examples(ops):
    check_pass("canonicalize", examples=1000, max_ops=12, ops=ops, dtypes=("f32", "i64", "f16", "bf16", "i32", "ui8"))
