"""The Hugging Face "index the tokens routed to me" expert loop: sc.nonzero (a data-dependent
size: shape rule, reference, text round trip, verifier, interpreter binding, no CPU lowering),
advanced indexing w[tok, slot], and the sparse-activation pass rewriting the loop into top-k
dispatch (hand-written Mixtral/DeepSeek-style loops, every router family, near misses that stay,
the compiled result)."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsec as sc
from sparsec import ops
from sparsec.lower.cpu import LoweringError
from sparsec.testing import assert_equivalent, compare_outputs
from test_pass_sparse_activation import (EXPERTS, FAMILY_NAMES, _expert, _expert_weights, assert_compiled_matches,
                                         assert_sparse, assert_untouched, check_rewrite, families, names, sparsify,
                                         tokens)

H, F = 16, 12
RNG = np.random.default_rng(11)


def no_loop_left(g2):
    n = names(g2)
    assert "sc.nonzero" not in n and "sc.index_add" not in n and "sc.take" not in n, n


# ---------------------------------------------------------------------------------------------
# sc.nonzero: the op

def trace_nonzero(shape, dtype="bool", dims=None):
    return sc.trace(lambda c: ops.nonzero(c), sc.TensorSpec(dims or shape, dtype))


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2)])
def test_nonzero_shape_rule_and_round_trip(shape):
    g = trace_nonzero(shape, dims=("n",) + shape[1:])
    ops_ = [op for op in g.main.ops if op.name == "sc.nonzero"]
    assert len(ops_) == 1 and ops_[0].attrs["size"] == "nnz0"
    assert [r.type.shape for r in ops_[0].results] == [("nnz0",)] * len(shape)
    assert all(r.type.dtype.name == "i64" for r in ops_[0].results)
    text = str(g)
    assert 'size = "nnz0"' in text
    g2 = sc.parse(text)
    assert str(g2) == text
    assert [r.type.shape for r in g2.main.ops[0].results] == [("nnz0",)] * len(shape)
    c = RNG.random(shape) < 0.4
    for got, want in zip(sc.interpret(g2, c), np.nonzero(c)):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.int64


def test_nonzero_shape_rule_errors():
    with pytest.raises(sc.TraceError, match="rank >= 1"):
        sc.trace(lambda c: ops.nonzero(c), sc.TensorSpec((), "bool"))
    g = trace_nonzero((4,))
    bad = str(g).replace('size = "nnz0"', 'size = "2*n"')
    with pytest.raises(sc.ParseError, match="plain symbol name"):
        sc.parse(bad)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=3), st.sampled_from(["bool", "float32", "int32"]),
       st.integers(0, 2**16))
def test_nonzero_reference_matches_numpy(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.random(shape) < 0.5).astype(dtype) * (rng.integers(1, 3, shape) if dtype != "bool" else 1)
    x = x.astype(dtype)
    g = trace_nonzero(tuple(shape), dtype)
    outs = sc.interpret(g, x)
    want = np.nonzero(x)
    assert len(outs) == len(want)
    for o, w in zip(outs, want):
        assert o.dtype == np.int64
        np.testing.assert_array_equal(o, w)


def test_fresh_symbols_avoid_input_dims_and_each_other():
    def fn(a, b):
        i, = ops.nonzero(a > 0)
        j, = ops.nonzero(b > 0)
        return ops.take(a, i), ops.take(b, j)
    g = sc.trace(fn, sc.TensorSpec(("nnz0",)), sc.TensorSpec(("nnz2",)))
    sizes = [op.attrs["size"] for op in g.main.ops if op.name == "sc.nonzero"]
    assert sizes == ["nnz1", "nnz3"]
    a, b = np.array([1.0, -1.0, 2.0], np.float32), np.array([-1.0, -2.0], np.float32)
    ra, rb = sc.interpret(g, a, b)
    np.testing.assert_array_equal(ra, [1.0, 2.0])
    assert rb.shape == (0,)   # nothing selected: a zero-length dim


def test_verifier_refuses_a_size_defined_twice_or_clashing_with_an_input():
    def fn(a):
        i, = ops.nonzero(a > 0)
        j, = ops.nonzero(a < 0)
        return i, j
    text = str(sc.trace(fn, sc.TensorSpec(("n",))))
    with pytest.raises(sc.VerifyError, match="defined by another op too"):
        sc.parse(text.replace('"nnz1"', '"nnz0"'))
    with pytest.raises(sc.VerifyError, match="dim of a function input"):
        sc.parse(text.replace('"nnz1"', '"n"'))


def test_interpreter_binds_the_size_for_later_ops():
    """A reshape to the data-dependent size reads the count bound when sc.nonzero ran."""
    def fn(a):
        i, = ops.nonzero(a > 0)
        v = ops.take(a, i)
        return ops.reshape(v, (v.shape[0], 1)) * 2.0
    g = sc.trace(fn, sc.TensorSpec(("n",)))
    (out,) = sc.interpret(g, np.array([3.0, -1.0, 0.5, 2.0], np.float32))
    np.testing.assert_array_equal(out, [[6.0], [1.0], [4.0]])


def test_where_with_the_condition_alone_is_nonzero():
    g = sc.trace(lambda ids: ops.where(ids == 2), sc.TensorSpec(("t", 3), "int64"))
    assert names(g).count("sc.nonzero") == 1
    ids = np.array([[2, 0, 1], [1, 2, 2]])
    for got, want in zip(sc.interpret(g, ids), np.where(ids == 2)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(sc.TraceError, match="both a and b, or neither"):
        sc.trace(lambda ids: ops.where(ids == 2, 1), sc.TensorSpec(("t", 3), "int64"))


def test_compiling_a_nonzero_names_the_op_the_line_and_the_pass():
    g = sc.trace(lambda a: ops.take(a, ops.nonzero(a > 0)[0]), sc.TensorSpec(("n",)))
    line = [op.loc for op in g.main.ops if op.name == "sc.nonzero"][0]
    assert line.startswith("test_pass_hf_loop.py:")
    for pipeline in ("", "default"):
        with pytest.raises(LoweringError, match=rf"sc\.nonzero \(from {re.escape(line)}\).*data-dependent.*"
                                               rf"sparse-activation pass"):
            sc.compile(g, pipeline=pipeline, progress=False)


# ---------------------------------------------------------------------------------------------
# advanced indexing: several index tensors

@pytest.mark.parametrize("index", ["adjacent", "adjacent_none", "separated", "broadcast", "three"])
def test_getitem_with_several_index_tensors_matches_numpy(index):
    x = RNG.standard_normal((5, 3, 4)).astype(np.float32)
    i = np.array([4, 0, 2, 2], np.int64)
    j = np.array([1, 2, 0, 1], np.int64)
    k = np.array([3, 0, 1, 3], np.int32)
    fns = {
        "adjacent": (lambda x, i, j, k: x[i, j], lambda: x[i, j]),
        "adjacent_none": (lambda x, i, j, k: x[i, j, None], lambda: x[i, j, None]),
        "separated": (lambda x, i, j, k: x[i, :, k], lambda: x[i, :, k]),
        "broadcast": (lambda x, i, j, k: x[:, j[:, None], k[None, :]], lambda: x[:, j[:, None], k[None, :]]),
        "three": (lambda x, i, j, k: x[i, j, k], lambda: x[i, j, k]),
    }
    traced, numpy = fns[index]
    g = sc.trace(traced, sc.TensorSpec(("t", 3, 4)), sc.TensorSpec(("n",), "int64"), sc.TensorSpec(("n",), "int64"),
                 sc.TensorSpec(("n",), "int32"))
    assert str(sc.parse(str(g))) == str(g)
    (got,) = sc.interpret(g, x, i, j, k)
    np.testing.assert_array_equal(got, numpy())


@pytest.mark.parametrize("bad", ["second", "first"])
def test_getitem_with_several_index_tensors_checks_each_axis(bad):
    """x[i, j] with j past its axis raises as NumPy does (the flat index alone would read the next
    row), in the interpreter and compiled."""
    x = RNG.standard_normal((5, 3)).astype(np.float32)
    i, j = np.array([1, 2], np.int64), np.array([0, 2], np.int64)
    if bad == "second":
        j = np.array([0, 3], np.int64)   # (1, 3) flattens to 6, a valid element of another row
    else:
        i = np.array([5, 0], np.int64)
    g = sc.trace(lambda x, i, j: x[i, j], sc.TensorSpec((5, 3)), sc.TensorSpec((2,), "int64"),
                 sc.TensorSpec((2,), "int64"))
    with pytest.raises(Exception, match=r"test_pass_hf_loop.py:\d+.*index \d+ is out of range"):
        sc.interpret(g, x, i, j)
    cm = sc.compile(g, progress=False)
    with pytest.raises(Exception, match=r"out of range"):
        cm(x, i, j)


def test_getitem_with_several_index_tensors_needs_static_inner_dims():
    with pytest.raises(sc.TraceError, match="must be static"):
        sc.trace(lambda x, i: x[i, i], sc.TensorSpec((3, "s")), sc.TensorSpec((2,), "int64"))


# ---------------------------------------------------------------------------------------------
# hand-written Hugging Face loops

def _indices(mask, ids, e, E):
    """(tok, slot) of the pairs routed to expert e, spelled ``mask``."""
    if mask == "compare":
        return ops.nonzero(ids == e)
    if mask == "compare_swapped":                   # torch.where(e == ids)
        return ops.where(ops.equal(e, ids))
    if mask == "transposed":                        # nonzero of [k, T]: (slot, tok)
        slot, tok = ops.nonzero((ids == e).T)
        return tok, slot
    if mask == "one_hot_mixtral":                   # one_hot(ids, E).permute(2, 1, 0)[e] -> (slot, tok)
        idx, top_x = ops.nonzero(ops.transpose(ops.one_hot(ids, E, dtype="int64"), (2, 1, 0))[e])
        return top_x, idx
    if mask == "one_hot_deepseek":                  # one_hot(ids, E).permute(2, 0, 1)[e] -> (tok, slot)
        return ops.nonzero(ops.transpose(ops.one_hot(ids, E), (2, 0, 1))[e])
    raise ValueError(mask)


def _routed_weight(style, w, tok, slot):
    if style == "column":                            # routing_weights[top_x, idx, None]
        return w[tok, slot, None]
    if style == "unsqueeze":                         # topk_weights[tok, slot].unsqueeze(-1)
        return ops.expand_dims(w[tok, slot], -1)
    if style == "slice_none":
        return w[tok, slot][:, None]
    raise ValueError(style)


MASKS = ["compare", "compare_swapped", "transposed", "one_hot_mixtral", "one_hot_deepseek"]
WEIGHTS = ["column", "unsqueeze", "slice_none"]


def make_weights(E, hidden, ffn, seed, zero_router=False):
    rng = np.random.default_rng(seed)

    def p(*shape):
        return sc.nn.Parameter((rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32))

    r = sc.nn.Parameter(np.zeros((E, hidden), np.float32)) if zero_router else p(E, hidden)
    bias = sc.nn.Parameter((rng.standard_normal(E) * 0.1).astype(np.float32))
    return r, bias, [_expert_weights(p, hidden, ffn) for _ in range(E)], p(hidden, hidden)


def route(x, r, bias, k, router):
    """Mixtral: softmax, top-k, renormalized. DeepSeek-V3: sigmoid, biased choice, gathered scores
    renormalized and scaled by routed_scaling_factor."""
    logits = ops.linear(x, r)
    if router == "softmax":
        w, ids = ops.topk(ops.softmax(logits, -1), k)
        return w / w.sum(-1, keepdims=True), ids
    scores = ops.sigmoid(logits)
    _, ids = ops.topk(scores + bias, k)
    w = ops.take_along_axis(scores, ids, -1)
    return w / (w.sum(-1, keepdims=True) + 1e-20) * 2.5, ids


def hf_moe(E, k, mask="compare", weight="column", expert="swiglu_linear", router="softmax", hidden=H, ffn=F,
           seed=0, zero_router=False, order=None, product="yw", base="zeros", skip=(), tweak=None, gather="take"):
    """The Hugging Face expert loop written by hand and traced with sc.trace. ``tweak(e, parts)``
    may change one expert's pieces (for near misses)."""
    r, bias, ws, w_shared = make_weights(E, hidden, ffn, seed, zero_router)

    def fn(x):
        w, ids = route(x, r, bias, k, router)
        out = ops.broadcast_to(ops.constant(0.0, "float32"), x.shape) if base == "zeros" else x @ w_shared.T
        for e in (order or range(E)):
            if e in skip:
                continue
            tok, slot = _indices(mask, ids, e, E)
            parts = dict(tok=tok, slot=slot, w=w, x=x, ids=ids, e=e)
            if tweak is not None:
                tweak(parts)
            if gather == "mixtral":                # hidden_states[None, top_x].reshape(-1, hidden_dim)
                cur = ops.reshape(parts["x"][None, parts.get("gather", parts["tok"])], (-1, hidden))
            else:
                cur = parts["x"][parts.get("gather", parts["tok"])]
            y = _expert(expert, cur, ws[e])
            rw = _routed_weight(weight, parts["w"], parts["tok"], parts["slot"])
            out = ops.index_add(out, parts["tok"], y * rw if product == "yw" else rw * y)
        return out

    return sc.trace(fn, sc.TensorSpec(("tokens", hidden), "float32"))


def numpy_hf_moe(x, E, k, seed, router, ffn=F):
    """The same Mixtral/DeepSeek loop (SwiGLU experts) in NumPy, the Hugging Face way."""
    r, bias, ws, _ = make_weights(E, x.shape[1], ffn, seed)
    logits = x @ r.data.T
    if router == "softmax":
        z = np.exp(logits - logits.max(-1, keepdims=True))
        probs = z / z.sum(-1, keepdims=True)
        ids = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
        w = np.take_along_axis(probs, ids, -1)
        w = w / w.sum(-1, keepdims=True)
    else:
        scores = 1 / (1 + np.exp(-logits))
        ids = np.argsort(-(scores + bias.data), axis=-1, kind="stable")[:, :k]
        w = np.take_along_axis(scores, ids, -1)
        w = w / (w.sum(-1, keepdims=True) + 1e-20) * 2.5
    out = np.zeros_like(x)
    expert_mask = np.transpose(np.eye(E, dtype=np.int64)[ids], (2, 1, 0))     # [E, k, T]
    for e in range(E):
        idx, top_x = np.nonzero(expert_mask[e])
        cur = x[top_x]
        g, u, d = (ws[e][n].data for n in ("gate", "up", "down"))
        h = cur @ g.T
        y = ((h / (1 + np.exp(-h))) * (cur @ u.T)) @ d.T
        np.add.at(out, top_x, y * w[top_x, idx, None])
    return out


@pytest.mark.parametrize("router", ["softmax", "sigmoid"])
def test_traced_loop_matches_numpy(router):
    E, k = 6, 2
    g = hf_moe(E, k, mask="one_hot_mixtral", router=router, seed=3)
    for t in (1, 4, 19):
        x = RNG.standard_normal((t, H)).astype(np.float32)
        (got,) = sc.interpret(g, x)
        np.testing.assert_allclose(got, numpy_hf_moe(x, E, k, 3, router), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("router", ["softmax", "sigmoid"])
@pytest.mark.parametrize("mask", MASKS)
def test_loop_masks_are_rewritten(mask, router):
    g2 = check_rewrite(hf_moe(4, 2, mask=mask, router=router, seed=1), experts=4, counts=(1, 2, 5, 33))
    no_loop_left(g2)


@pytest.mark.parametrize("weight", WEIGHTS)
@pytest.mark.parametrize("product", ["yw", "wy"])
def test_loop_weight_spellings_are_rewritten(weight, product):
    no_loop_left(check_rewrite(hf_moe(4, 2, weight=weight, product=product, seed=2), experts=4))


def test_loop_mixtral_gather_spelling_is_rewritten():
    """Mixtral: current_state = hidden_states[None, top_x].reshape(-1, hidden_dim)."""
    g = hf_moe(4, 2, mask="one_hot_mixtral", gather="mixtral", seed=13)
    assert "sc.expand_dims" in names(g)
    no_loop_left(check_rewrite(g, experts=4))
    assert_untouched(hf_moe(4, 2, gather="mixtral", tweak=_tokens_reversed, seed=13))


@pytest.mark.parametrize("expert", EXPERTS)
def test_loop_expert_styles_are_rewritten(expert):
    g2 = check_rewrite(hf_moe(4, 2, expert=expert, mask="one_hot_deepseek", router="sigmoid", seed=4), experts=4)
    no_loop_left(g2)


def test_loop_result_is_the_dispatch_chain_of_the_dense_forms():
    """The same ops as the rewritten masked-sum formulation (one block, experts stacked in order)."""
    g2 = check_rewrite(hf_moe(3, 1, order=[2, 0, 1], seed=5), experts=3)
    n = names(g2)
    assert n.count("sc.moe_dispatch") == n.count("sc.moe_permute") == n.count("sc.moe_combine") == 1
    assert n.count("sc.grouped_matmul") == 3 and n.count("sc.stack") == 3


def test_loop_into_a_nonzero_base_adds_the_base():
    g2 = check_rewrite(hf_moe(4, 2, base="shared", seed=6), experts=4)
    assert names(g2).count("sc.add") == 1
    no_loop_left(g2)


def test_loop_single_expert():
    no_loop_left(check_rewrite(hf_moe(1, 1, mask="one_hot_mixtral", seed=7), experts=1))


def test_loop_ties_idle_experts_and_single_tokens():
    """A zero router: every score ties, topk keeps experts 0 and 1, the others get no token."""
    for mask in ("compare", "one_hot_mixtral"):
        g = hf_moe(4, 2, mask=mask, zero_router=True, seed=8)
        check_rewrite(g, counts=(1, 3))


def test_loop_compiled_with_the_default_pipeline():
    g = hf_moe(4, 2, mask="one_hot_mixtral", router="sigmoid", seed=9)
    g2 = check_rewrite(g)
    inputs = tokens(np.random.default_rng(9), (1, 5, 33))
    assert_compiled_matches(g, g2, inputs)
    cm = sc.compile(g, progress=False)           # the traced loop itself: the default pipeline removes it
    for (x,) in inputs:
        (ref,) = sc.interpret(g, x)
        msg = compare_outputs((ref,), (cm(x),), rtol=0, atol=1e-4)
        assert msg is None, msg


class HFLoopMoE(sc.nn.MoE):
    """sc.nn.MoE with the experts written as the Hugging Face loop (a user's own module)."""

    def _dense_experts(self, x, weights, ids):
        out = ops.broadcast_to(ops.constant(0.0, "float32"), x.shape)
        mask = ops.transpose(ops.one_hot(ids, self.num_experts, dtype="int64"), (2, 1, 0))
        for e, expert in enumerate(self.experts):
            idx, top_x = ops.nonzero(mask[e])
            out = ops.index_add(out, top_x, expert(x[top_x]) * weights[top_x, idx, None])
        return out


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_router_family_as_a_loop(family):
    E, k = 8, 2
    kw = dict(hidden=H, ffn=F, num_experts=E, top_k=k, seed=21, **families(E)[family])
    g = sc.trace(HFLoopMoE(**kw), sc.TensorSpec(("tokens", H), "float32"))
    g2 = check_rewrite(g, experts=E, counts=(1, 6))
    no_loop_left(g2)
    dense = sc.trace(sc.nn.MoE(**kw), sc.TensorSpec(("tokens", H), "float32"))
    assert_equivalent(g, dense, inputs=tokens(np.random.default_rng(1), (1, 6)))


# ---------------------------------------------------------------------------------------------
# near misses: the loop stays (and then cannot be compiled)

def _other_tokens(parts):
    if parts["e"] == 2:
        parts["x"] = parts["x"][::-1]            # x reversed: not the tokens routed to the expert


def _tokens_reversed(parts):
    if parts["e"] == 0:
        parts["gather"] = parts["tok"][::-1]      # rows of the right tokens, in the wrong order


def _outputs_swapped(parts):
    if parts["e"] == 1:
        parts["tok"], parts["slot"] = parts["slot"], parts["tok"]   # slot, tok = nonzero(ids == e)


def _weights_doubled(parts):
    if parts["e"] == 1:
        parts["w"] = parts["w"] * 2.0


def _slot_for_token(parts):
    if parts["e"] == 3:
        parts["slot"] = parts["tok"] * 0          # weights[tok, 0]: another pairing


NEAR_MISSES = {
    "missing_expert": dict(skip=(2,)),
    "expert_twice": dict(order=[0, 1, 2, 3, 1]),
    "gather_from_other_rows": dict(tweak=_other_tokens),
    "gather_by_another_index": dict(tweak=_tokens_reversed),
    "nonzero_outputs_swapped": dict(tweak=_outputs_swapped),
    "weights_of_another_routing": dict(tweak=_weights_doubled),
    "weights_of_another_pairing": dict(tweak=_slot_for_token),
}


@pytest.mark.parametrize("case", sorted(NEAR_MISSES))
def test_near_miss_loops_are_untouched(case):
    g = hf_moe(4, 2, seed=10, **NEAR_MISSES[case])
    assert_untouched(g)


def test_near_miss_ids_not_from_topk():
    r, bias, ws, _ = make_weights(4, H, F, 0)

    def fn(x, ids, w):
        out = ops.broadcast_to(ops.constant(0.0, "float32"), x.shape)
        for e in range(4):
            tok, slot = ops.nonzero(ids == e)
            out = ops.index_add(out, tok, _expert("swiglu_linear", x[tok], ws[e]) * w[tok, slot, None])
        return out
    g = sc.trace(fn, sc.TensorSpec(("tokens", H)), sc.TensorSpec(("tokens", 2), "int64"),
                 sc.TensorSpec(("tokens", 2)))
    assert_untouched(g)
    with pytest.raises(LoweringError, match="sc.nonzero"):
        sc.compile(g, progress=False)


def test_near_miss_partial_sum_or_product_used_elsewhere():
    r, bias, ws, _ = make_weights(4, H, F, 0)

    def body(keep):
        def fn(x):
            w, ids = route(x, r, bias, 2, "softmax")
            out = ops.broadcast_to(ops.constant(0.0, "float32"), x.shape)
            kept = None
            for e in range(4):
                tok, slot = ops.nonzero(ids == e)
                s = _expert("swiglu_linear", x[tok], ws[e]) * w[tok, slot, None]
                out = ops.index_add(out, tok, s)
                if e == 1:
                    kept = out if keep == "partial" else s
            return out, kept
        return sc.trace(fn, sc.TensorSpec(("tokens", H)))
    assert_untouched(body("partial"))
    assert_untouched(body("product"))


def test_near_miss_topk_over_more_experts_than_the_loop():
    r, bias, ws, _ = make_weights(4, H, F, 0)

    def fn(x, s):
        w, ids = ops.topk(s, 2)
        out = ops.broadcast_to(ops.constant(0.0, "float32"), x.shape)
        for e in range(4):
            tok, slot = ops.nonzero(ids == e)
            out = ops.index_add(out, tok, _expert("swiglu_linear", x[tok], ws[e]) * w[tok, slot, None])
        return out
    assert_untouched(sc.trace(fn, sc.TensorSpec(("tokens", H)), sc.TensorSpec(("tokens", 5))))


# ---------------------------------------------------------------------------------------------
# property test

@st.composite
def loop_graphs(draw):
    E = draw(st.integers(1, 6), label="experts")
    k = draw(st.integers(1, min(E, 3)), label="top k")
    kw = dict(
        mask=draw(st.sampled_from(MASKS), label="mask"),
        weight=draw(st.sampled_from(WEIGHTS), label="weight"),
        expert=draw(st.sampled_from(EXPERTS), label="expert"),
        router=draw(st.sampled_from(["softmax", "sigmoid"]), label="router"),
        hidden=draw(st.sampled_from([4, 8]), label="hidden"),
        ffn=draw(st.sampled_from([3, 8]), label="ffn"),
        seed=draw(st.integers(0, 2**16), label="seed"),
        zero_router=draw(st.booleans(), label="zero router (ties)"),
        product=draw(st.sampled_from(["yw", "wy"]), label="product order"),
        base=draw(st.sampled_from(["zeros", "shared"]), label="base"),
        order=draw(st.permutations(range(E)), label="loop order"),
        gather=draw(st.sampled_from(["take", "mixtral"]), label="gather"),
    )
    counts = draw(st.lists(st.integers(1, 9), min_size=1, max_size=3), label="token counts")
    return hf_moe(E, k, **kw), counts, kw["seed"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loop_graphs())
def test_property_loops_rewrite_and_match(case):
    g, counts, seed = case
    no_loop_left(check_rewrite(g, counts=counts, seed=seed))


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loop_graphs())
def test_property_loops_rewrite_and_match_thorough(case):
    g, counts, seed = case
    no_loop_left(check_rewrite(g, counts=counts, seed=seed))


def test_rewritten_loop_round_trips_and_pass_is_idempotent():
    g = hf_moe(4, 2, mask="one_hot_mixtral", seed=12)
    assert str(sc.parse(str(g))) == str(g)
    g2, stats = sparsify(g)
    assert stats == {"moe blocks rewritten": 1, "experts sparsified": 4}
    assert_sparse(g2)
    assert_untouched(g2)


def test_loop_then_expert_fusion():
    g = hf_moe(4, 2, mask="one_hot_deepseek", router="sigmoid", seed=14)
    g2, stats = sparsify(g, "sparse-activation,expert-fusion")
    assert stats == {"moe blocks rewritten": 1, "experts sparsified": 4, "gate/up matmuls fused": 1,
                     "expert matmuls fused": 8}
    assert names(g2).count("sc.moe_gated_grouped_matmul") == 1
    assert_equivalent(g, g2, inputs=tokens(np.random.default_rng(14), (1, 7)))


def test_check_pass_graphs_of_the_loop_ops():
    """Random graphs over the ops the loop matcher looks at: nothing half-recognized breaks."""
    from test_pass_sparse_activation import MOE_OPS
    from sparsec.testing import check_pass
    check_pass("sparse-activation", examples=60, max_ops=10, ops=MOE_OPS + ["sc.index_add"])
