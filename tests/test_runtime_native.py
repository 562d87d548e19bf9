"""Native plans (``sparsec.runtime.cpu.native``): a prepared state's bound steps run by one
compiled function. Checked against the executable without prebinding, fast calls or native plans
(the same bits), and the plan builder on its own (arrays of every layout, scalars, statuses,
exceptions)."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

import sparsec as sc
import sparsec.runtime.executable as E
from sparsec.runtime.cpu import common, native

from test_runtime_prebind import prebind, same_bits


@contextlib.contextmanager
def native_after(n: int):
    old = E.NATIVE_AFTER
    E.NATIVE_AFTER = n
    try:
        yield
    finally:
        E.NATIVE_AFTER = old


def natives(m, fn="main"):
    return [p.native for p in m.executables[fn]._prepared.values() if p.native is not None]


def errors(m, fn="main"):
    return [p.native_error for p in m.executables[fn]._prepared.values() if p.native_error is not None]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_random_graphs_run_natively_to_the_same_bits(data):
    """Every call after the first goes through a native plan where the graph's steps allow one
    (``NATIVE_AFTER = 1``); the results are the bits of the executable without any of it."""
    g = data.draw(sc.testing.graphs(max_ops=8, dtypes=("f32", "i64")), label="graph")
    inputs = data.draw(sc.testing.inputs_for(g, max_size=4), label="inputs")
    outs = {}
    for on in (True, False):
        with prebind(on), native_after(1), np.errstate(all="ignore"):
            try:
                m = sc.compile(g, pipeline="classic", progress=False, warmup=False, accuracy_samples=0)
                outs[on] = [m.run(*inputs) for _ in range(3)]
                assert not errors(m)
            except sc.errors.SparsecError as e:  # both must refuse alike (an index out of range)
                outs[on] = type(e).__name__
    if isinstance(outs[True], str) or isinstance(outs[False], str):
        assert outs[True] == outs[False]
        return
    for got in outs[True]:
        assert len(got) == len(outs[False][0]) and all(same_bits(a, b) for a, b in zip(got, outs[False][0]))


@pytest.mark.parametrize("mode", [None, "q8_0", "q4_0", "int4"])
@pytest.mark.parametrize("tokens", [1, 3])
def test_moe_layer_runs_natively_to_the_same_bits(mode, tokens):
    """The quantized MoE layer's steps (router, top-k, dispatch, permute, expert kernels, combine)
    become one native plan after ``NATIVE_AFTER`` calls; every call gives the bits of the plain
    executable, for inputs that change from call to call (the staged input is copied each time).
    (The fp32 grouped matmuls are not bound steps: that layer keeps its fast call.)"""
    moe = sc.nn.MoE(64, 96, 8, 2, router="softmax", norm_topk_prob=True, naming="mixtral", seed=4)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 64), "float32"))
    xs = [np.random.default_rng(s).standard_normal((tokens, 64)).astype(np.float32) for s in range(8)]
    outs = {}
    for on in (True, False):
        with prebind(on):
            m = sc.compile(g, quantize=mode, progress=False, accuracy_samples=0)
            outs[on] = [m(x) for x in xs]
            if on:
                assert len(natives(m)) == (mode is not None) and not errors(m)
                kept = outs[on][0].copy()
    assert same_bits(outs[True][0], kept)  # a result handed out is not overwritten by later calls
    for a, b in zip(outs[True], outs[False]):
        assert same_bits(a, b)


def test_native_plan_status_names_the_failing_op():
    """A status-checked step failing inside the native plan (an embedding id out of range): the
    same error as on the general path; later good calls go on through the plan."""
    table = np.arange(15, dtype=np.float32).reshape(5, 3)
    g = sc.trace(lambda ids: sc.ops.embedding(ids, sc.frontend.tracer.Parameter(table)), sc.TensorSpec((2,), "int64"))
    with native_after(1):
        m = sc.compile(g, pipeline="classic", progress=False, accuracy_samples=0)
        ok = np.array([0, 4], np.int64)
        m(ok)
        m(ok)
        assert len(natives(m)) == 1
        msgs = []
        for plan in (True, False):
            if not plan:
                m.executables["main"]._fast = None
            with pytest.raises(sc.errors.SparsecError) as info:
                m(np.array([0, 7], np.int64))
            msgs.append(str(info.value))
        assert msgs[0] == msgs[1] and "embedding" in msgs[0], msgs
        np.testing.assert_array_equal(m(np.array([4, 1], np.int64)), table[[4, 1]])


def test_an_exception_in_the_plan_leaves_the_call_to_the_general_path():
    """A plan that raises (a kernel's exception): the fast call returns None, and the call runs
    through the general path, with the same results."""
    moe = sc.nn.MoE(64, 96, 8, 2, router="softmax", norm_topk_prob=True, naming="mixtral", seed=5)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 64), "float32"))
    m = sc.compile(g, quantize="q8_0", progress=False, accuracy_samples=0)
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    want = [m(x) for _ in range(4)][-1]
    ex = m.executables["main"]
    (prep,) = ex._prepared.values()
    assert prep.native is not None

    class Raising:
        status = np.zeros(1, np.int64)

        def run(self):
            raise ValueError("a kernel failed")
    fast = ex._fast_call(prep, [x], native=Raising())
    assert fast(x) is None
    ex._fast = prep.fast = fast
    assert same_bits(m(x), want)


# ---------------------------------------------------------------------------------------------
# the plan builder on its own

@njit(cache=False)
def _affine(x, scale, shift, flag, out):
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] * scale + shift + (1.0 if flag else 0.0)


@njit(cache=False)
def _check(x, limit):
    for i in range(x.size):
        if x[i] > limit:
            return i
    return -1


@njit(cache=False)
def _raise_if(x):
    if x[0] < 0:
        raise ValueError("negative first value")
    x[0] += 1


@njit(cache=False)
def _first(t):
    return t[0]


def entry(fn):
    return (fn, (), None, 0)


def test_plan_reads_arrays_of_every_layout_and_passes_scalars_exactly():
    base = np.arange(48, dtype=np.float32).reshape(6, 8)
    ro = base.copy()
    ro.setflags(write=False)
    for x in (base, base[::2, 1::3], base.T, ro):
        for scale, shift, flag in ((2.0, 0.5, False), (np.float32(3.0), np.float64(np.inf), True),
                                   (-1.0, np.nan, np.bool_(True))):
            out = np.full(x.shape, -7.0, np.float32)
            want = np.empty_like(out)
            _affine(x, scale, shift, flag, want)
            plan = native.plan_function([entry(common.bound(_affine, x, scale, shift, flag, out))])
            assert plan is not None
            assert plan.run() == -1
            assert same_bits(out, want), (x.strides, scale, shift, flag)


def test_plan_statuses_and_exceptions():
    x = np.array([1.0, 2.0, 3.0])
    calls = []

    def on_bad(r):
        calls.append(r)
        raise AssertionError("not called by the plan itself")
    chk = common.checked(common.bound(_check, x, 10.0), on_bad, ok=-1)
    y = np.array([5.0])
    plan = native.plan_function([(chk, (), None, 3), entry(common.bound(_raise_if, y))])
    assert plan.run() == -1 and y[0] == 6.0       # both steps ran
    x[1] = 11.0
    assert plan.run() == 3 and plan.status[0] == 1  # the step index, its status; later steps not run
    assert y[0] == 6.0 and not calls
    x[1] = 2.0
    y[0] = -1.0
    with pytest.raises(ValueError, match="negative first value"):
        plan.run()


def test_plan_needs_bound_native_steps():
    x = np.zeros(3)
    assert native.plan_function([entry(lambda: None)]) is None                 # a Python callable
    assert native.plan_function([(_raise_if, [x], None, 0)]) is None           # called with arguments
    assert native.plan_function([entry(common.bound(_raise_if, x))]) is not None
    assert native.plan_function([entry(common.bound(_first, (1, 2)))]) is None    # a tuple argument


def test_native_after_from_the_environment(monkeypatch):
    for value, want in (("", 3), (" 5 ", 5), ("0", 0)):
        monkeypatch.setenv("SPARSEC_NATIVE_AFTER", value)
        assert E._env_int("SPARSEC_NATIVE_AFTER", 3) == want
    for bad in ("x", "-1", "2.5"):
        monkeypatch.setenv("SPARSEC_NATIVE_AFTER", bad)
        with pytest.raises(sc.errors.SparsecError, match="SPARSEC_NATIVE_AFTER"):
            E._env_int("SPARSEC_NATIVE_AFTER", 3)
