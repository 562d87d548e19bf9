"""Prebinding (``Kernel.bind``): a step whose arrays are all static is bound once per set of sizes
and then called without arguments; small inputs are staged (copied into a buffer of their own
per call) so the steps reading them are static too. A bound step must compute exactly what the
unbound kernel computes: random graphs, the MoE layer (float and quantized), and a causal LM's
generation, each compiled with and without prebinding and staging, give the same bits (and
tokens)."""
import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsec as sc
import sparsec.runtime.executable as E


@contextlib.contextmanager
def prebind(on: bool):
    """Prebinding, input and output staging, the generated fast calls and native plans all on, or
    all off (the executable as it was before them)."""
    old = E.PREBIND, E.FAST_CALLS, E.Executable.stage_input_bytes, E.Executable.stage_output_bytes, E.NATIVE_AFTER
    E.PREBIND = E.FAST_CALLS = on
    E.Executable.stage_input_bytes = old[2] if on else 0
    E.Executable.stage_output_bytes = old[3] if on else 0
    E.NATIVE_AFTER = old[4] if on else 0
    try:
        yield
    finally:
        E.PREBIND, E.FAST_CALLS, E.Executable.stage_input_bytes, E.Executable.stage_output_bytes, E.NATIVE_AFTER = old


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_random_graphs_bind_to_the_same_bits(data):
    g = data.draw(sc.testing.graphs(max_ops=8, dtypes=("f32", "i64")), label="graph")
    inputs = data.draw(sc.testing.inputs_for(g, max_size=4), label="inputs")
    outs = {}
    for on in (True, False):
        with prebind(on), np.errstate(all="ignore"):
            try:
                m = sc.compile(g, pipeline="classic", progress=False, warmup=False, accuracy_samples=0)
                outs[on] = m.run(*inputs)
                again = m.run(*inputs)  # (on: through the fast call the first call made)
                assert len(again) == len(outs[on]) and all(same_bits(a, b) for a, b in zip(again, outs[on]))
            except sc.errors.SparsecError as e:  # both must refuse alike (an index out of range)
                outs[on] = type(e).__name__
    if isinstance(outs[True], str) or isinstance(outs[False], str):
        assert outs[True] == outs[False]
        return
    assert len(outs[True]) == len(outs[False])
    for a, b in zip(outs[True], outs[False]):
        assert same_bits(a, b), (a, b)


@pytest.mark.parametrize("mode", [None, "q8_0", "q4_0"])
def test_moe_layer_binds_to_the_same_bits(mode):
    moe = sc.nn.MoE(64, 96, 8, 2, router="softmax", norm_topk_prob=True, naming="mixtral", seed=4)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 64), "float32"))
    xs = [np.random.default_rng(t).standard_normal((t, 64)).astype(np.float32) for t in (1, 3, 1, 40)]
    outs, bound = {}, {}
    for on in (True, False):
        with prebind(on):
            m = sc.compile(g, quantize=mode, progress=False, accuracy_samples=0)
            outs[on] = [m(x) for x in xs]
            bound[on] = sum(1 for prep in m.executables["main"]._prepared.values()
                            for _fn, args, _p, _k in prep.entries if args == ())
    assert bound[False] == 0 and bound[True] >= 2 * 3  # router top-k, dispatch, expert kernels per size
    for a, b in zip(outs[True], outs[False]):
        assert same_bits(a, b)


def test_generation_binds_to_the_same_tokens_and_logits():
    lm = sc.nn.CausalLM(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, ffn=48, seed=0,
                        mlp=lambda i: sc.nn.MoE(hidden=32, ffn=48, num_experts=4, top_k=2, router="softmax",
                                                norm_topk_prob=True, naming="mixtral", seed=i))
    ids = np.array([[3, 9, 27, 1]], np.int64)
    got = {}
    for on in (True, False):
        with prebind(on):
            cm = sc.compile(lm, sc.TensorSpec(("batch", "seq"), "int64"), quantize="q8_0", progress=False,
                            accuracy_samples=0)
            got[on] = (cm.generate(ids, 6), cm(ids))
            bound = sum(1 for prep in cm.executables["decode"]._prepared.values()
                        for _fn, args, _p, _k in prep.entries if args == ())
            assert (bound > 10) == on, bound  # per layer: norms, slices, router, experts, ...
    assert np.array_equal(got[True][0], got[False][0])
    assert same_bits(got[True][1], got[False][1])


def test_inputs_sized_by_a_symbol_outside_the_prepared_key_are_not_staged():
    """``n`` sizes only the input (the sums are scalars): one prepared state serves every ``n``,
    so the input must not be staged into a buffer of the first call's shape."""
    g = sc.trace(lambda x: (sc.ops.sum(x), sc.ops.max(x)), sc.TensorSpec(("n",), "float32"))
    m = sc.compile(g, pipeline="classic", progress=False, accuracy_samples=0)
    for n in (3, 5, 1, 4):
        x = np.arange(n, dtype=np.float32) - 1.5
        s, mx = m.run(x)
        assert s == np.float32(x.astype(np.float64).sum()) and mx == x.max()
    ex = m.executables["main"]
    assert len(ex._prepared) == 1 and all(not p.staged for p in ex._prepared.values())


def test_staged_input_is_copied_each_call():
    """A staged input: the caller may reuse and change its array between calls (generate's ids)."""
    g = sc.trace(lambda x: sc.ops.tanh(sc.ops.exp(x) + 1.0) * 3.0, sc.TensorSpec((4,), "float32"))
    m = sc.compile(g, pipeline="classic", progress=False, accuracy_samples=0)
    x = np.zeros(4, np.float32)
    for v in (0.0, 1.0, -2.0):
        x[...] = v
        np.testing.assert_array_equal(m(x), sc.interpret(g, x)[0])
    assert any(p.staged for p in m.executables["main"]._prepared.values())


def test_staged_results_are_new_arrays_each_call():
    """A small result is computed into a buffer of its own and copied out: what a caller kept from
    one call must not change with the next, and the step writing it is bound."""
    moe = sc.nn.MoE(64, 96, 8, 2, router="softmax", norm_topk_prob=True, naming="mixtral", seed=1)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 64), "float32"))
    m = sc.compile(g, progress=False, accuracy_samples=0)
    xs = [np.random.default_rng(s).standard_normal((1, 64)).astype(np.float32) for s in range(3)]
    outs = [m(x) for x in xs]
    for x, y in zip(xs, outs):  # the earlier results are intact
        np.testing.assert_allclose(y, sc.interpret(g, x)[0], rtol=1e-5, atol=1e-6)
    assert not np.shares_memory(outs[0], outs[1])
    (prep,) = m.executables["main"]._prepared.values()
    assert not prep.fresh and prep.result_sources[0][0] == "static"
    plan = m.executables["main"].plan
    assert [args for _fn, args, _p, k in prep.entries if plan.steps[k].op == "sc.moe_combine"] == [()]


def test_bound_calls_go_through_the_entry_point_only_for_accepted_types():
    """``common.bound``: the compiled entry point when the specialization takes the arguments as
    they are; otherwise the dispatcher, which converts or refuses them."""
    import functools

    from numba import types

    from sparsec.runtime.cpu import common

    def scale(x, k, out):
        for i in range(x.size):
            out[i] = x[i] * k
    d = common.specialize(numba_njit(scale), types.void(common.inp(np.float32), types.float64,
                                                        common.arr(np.float32)))
    x, out = np.arange(4, dtype=np.float32), np.zeros(4, np.float32)
    call = common.bound(d, x, 2.0, out)
    assert isinstance(call, functools.partial) and call.func is not d  # the entry point
    call()
    np.testing.assert_array_equal(out, x * 2)
    ro = x.copy()
    ro.flags.writeable = False
    assert common.entry_point(d, (ro, 2.0, out)) is not None       # read-only into a read-only parameter
    assert common.entry_point(d, (x, 2.0, ro)) is None             # never into a written one
    assert common.entry_point(d, (x[::2], 2.0, out[:2])) is None    # strided: not the C layout
    assert common.entry_point(d, (x.astype(np.float64), 2.0, out)) is None
    assert common.bound(d, x[::2], 2.0, out[:2]).func is d          # falls back to the dispatcher


def numba_njit(f):
    from numba import njit
    return njit(cache=False)(f)


def test_fast_calls_match_the_prepared_path_and_fall_back_on_other_inputs():
    """The generated call of a prepared state (``Executable._fast_call``) runs for inputs of the
    shapes and dtypes it was made for; other sizes, dtypes or counts go through ``bind`` again
    (the same results and the same errors)."""
    moe = sc.nn.MoE(64, 96, 8, 2, router="softmax", norm_topk_prob=True, naming="mixtral", seed=2)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 64), "float32"))
    m = sc.compile(g, quantize="q8_0", progress=False, accuracy_samples=0)
    ex = m.executables["main"]
    rng = np.random.default_rng(0)
    for t in (1, 1, 3, 3, 1):
        x = rng.standard_normal((t, 64)).astype(np.float32)
        with prebind(False):
            (want,) = sc.compile(g, quantize="q8_0", progress=False, accuracy_samples=0).run(x)
        assert same_bits(m(x), want)
        assert ex._fast is not None and ex._fast(x) is not None  # made for this size, and it runs
    assert ex._fast(np.zeros((2, 64), np.float32)) is None       # another size: not this call's
    assert ex._fast(np.zeros((1, 64), np.float64)) is None
    assert ex._fast(np.zeros((1, 64), np.float32), np.zeros(1)) is None
    with pytest.raises(sc.errors.SparsecError, match="dtype"):
        m(np.zeros((1, 64), np.float64))
    with pytest.raises(sc.errors.SparsecError, match="takes 1 inputs"):
        m(np.zeros((1, 64), np.float32), np.zeros(1))


def test_fast_call_names_the_failing_op():
    """A kernel that raises inside the fast call: the error names the op, as on the prepared path."""
    g = sc.trace(lambda ids: sc.ops.embedding(ids, sc.frontend.tracer.Parameter(np.ones((5, 3), np.float32))),
                 sc.TensorSpec((2,), "int64"))
    m = sc.compile(g, pipeline="classic", progress=False, accuracy_samples=0)
    ok = np.array([0, 4], np.int64)
    m(ok)
    m(ok)
    assert m.executables["main"]._fast is not None
    msgs = []
    for fast in (True, False):
        E.FAST_CALLS = fast
        m.executables["main"]._fast = None if not fast else m.executables["main"]._fast
        try:
            with pytest.raises(sc.errors.SparsecError) as info:
                m(np.array([0, 7], np.int64))
            msgs.append(str(info.value))
        finally:
            E.FAST_CALLS = True
    assert msgs[0] == msgs[1] and "embedding" in msgs[0], msgs


def test_fast_call_of_a_large_strided_input():
    """An input too large to stage, given as a strided view: through the fast call as through the
    general path, the kernels read a C-contiguous copy and a result that is the input itself is
    the array given."""
    g = sc.trace(lambda x: (sc.ops.tanh(x) * 2.0, x), sc.TensorSpec((64, 400), "float32"))
    m = sc.compile(g, pipeline="classic", progress=False, accuracy_samples=0)
    with prebind(False):
        plain = sc.compile(g, pipeline="classic", progress=False, accuracy_samples=0)
    wide = np.random.default_rng(0).standard_normal((64, 800)).astype(np.float32)
    for _ in range(3):  # the second and third calls go through the fast call
        x = wide[:, ::2]
        y, same = m.run(x)
        assert same_bits(y, plain.run(x)[0]) and same is x
        np.testing.assert_allclose(y, sc.interpret(g, x)[0], rtol=1e-6, atol=1e-6)
        wide += 1.0
    assert m.executables["main"]._fast is not None
