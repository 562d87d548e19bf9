"""CUDA kernels per op group against the reference interpreter (numba's CUDA simulator on small
shapes, or a GPU): elementwise and fused regions, shape ops, reductions, linalg, norms and rope,
gathers/scatters, attention and the KV-cache write; checked-kernel errors; the memory plan on the
device. Runs in the CUDA test process (see ``sparsec.lower.cuda.testing.cuda_test_process``)."""
from sparsec.lower.cuda.testing import cuda_test_process

MODE = cuda_test_process()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.lower import lower_function  # noqa: E402
from sparsec.lower.cuda import LoweringError, has_cuda_lowering  # noqa: E402
from sparsec.lower.cuda.testing import assert_matches_reference, run_cuda  # noqa: E402
from sparsec.passes import PassManager  # noqa: E402
from sparsec.runtime.executable import KernelError  # noqa: E402

ELEMENTWISE = [n for n in sc.testing.available_ops() if n.startswith("sc.") and has_cuda_lowering(n)
               and n in __import__("sparsec.lower.cpu.elementwise", fromlist=["x"]).ELEMENTWISE_OPS]
FEW = settings(max_examples=6, deadline=None)


def spec(a):
    return sc.TensorSpec(a.shape, a.dtype)


def check_random_graph(g, inputs):
    """CUDA vs the interpreter on a random graph: the same outputs, or both refuse the inputs."""
    try:
        expected = sc.testing.run(g, inputs)
    except sc.errors.SparsecError:  # e.g. an integer division by zero: the device reports it too
        with pytest.raises(KernelError):
            run_cuda(g, *inputs)
        return
    with np.errstate(all="ignore"):
        got = run_cuda(g, *inputs)
    msg = sc.testing.compare_outputs(expected, got)
    assert msg is None, f"{msg}\ninputs {[(a.shape, a.dtype) for a in inputs]}\n{g}"


# -- elementwise and fused regions ------------------------------------------------------------

@FEW
@given(data=st.data(), fuse=st.booleans())
def test_elementwise_random_graphs(data, fuse):
    g = data.draw(sc.testing.graphs(ops=ELEMENTWISE, max_ops=4, dtypes=("f32", "i64", "i32")), label="graph")
    assume(all(has_cuda_lowering(o.name) or o.name in ("sc.param", "sc.constant", "func.return") for o in g.main.ops))
    if fuse:
        g = PassManager.parse("fuse-elementwise").run(g)
    inputs = data.draw(sc.testing.inputs_for(g, max_size=3), label="inputs")
    check_random_graph(g, inputs)


def _all_cuda_ops():
    return [n for n in sc.testing.available_ops() if has_cuda_lowering(n)]


def _random_graph_check(data):
    g = data.draw(sc.testing.graphs(ops=_all_cuda_ops(), max_ops=6, dtypes=("f32", "i64", "i32", "i1")),
                  label="graph")
    assume(all(has_cuda_lowering(o.name) or o.name in ("sc.param", "sc.constant", "func.return") for o in g.main.ops))
    inputs = data.draw(sc.testing.inputs_for(g, max_size=3), label="inputs")
    check_random_graph(g, inputs)


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_random_graphs_over_every_cuda_op(data):
    """Random well-typed graphs over every op with a CUDA rule (of any op group)."""
    _random_graph_check(data)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_random_graphs_over_every_cuda_op_thorough(data):
    _random_graph_check(data)


def test_fused_region_with_broadcast_and_constants():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1, 5)).astype(np.float32)
    y = rng.standard_normal((4, 1)).astype(np.float32)

    def f(x, y):
        c = sc.ops.constant(np.arange(5, dtype=np.float32))
        a = sc.ops.silu(x) * y + c
        return sc.ops.where(a > 0.0, sc.ops.gelu(a), sc.ops.tanh(a) / 3.0), sc.ops.cast(a, "int32")
    g = PassManager.parse("fuse-elementwise").run(sc.trace(f, spec(x), spec(y)))
    assert any(o.name == "sc.fused" for o in g.main.ops)
    assert_matches_reference(g, x, y)


def test_integer_division_by_zero_is_reported_with_the_op():
    g = sc.trace(lambda a, b: sc.ops.div(a, b), sc.TensorSpec((4,), "int64"), sc.TensorSpec((4,), "int64"))
    a = np.array([7, -7, 3, 5], np.int64)
    assert (run_cuda(g, a, np.array([2, 2, -2, 1]))[0] == sc.interpret(g, a, np.array([2, 2, -2, 1]))[0]).all()
    with pytest.raises(KernelError, match="sc.div .*integer division by zero"):
        run_cuda(g, a, np.array([1, 0, 1, 1]))


# -- shape ops --------------------------------------------------------------------------------

@FEW
@given(perm=st.permutations([0, 1, 2]), axis=st.integers(0, 2), start=st.integers(0, 2), step=st.integers(1, 2))
def test_shape_ops(perm, axis, start, step):
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    b = np.array([1, 0, 1], np.bool_)

    def f(x, b):
        t = sc.ops.transpose(x, perm)
        return (sc.ops.reshape(t, (-1,)), sc.ops.slice(x, axis=axis, start=start, step=step),
                sc.ops.broadcast_to(sc.ops.expand_dims(b, 0), (2, 3)), sc.ops.concat([x, x * 2.0], axis=axis),
                sc.ops.stack([x, x + 1.0], axis=axis), sc.ops.squeeze(sc.ops.expand_dims(x, 1), 1))
    assert_matches_reference(sc.trace(f, spec(x), spec(b)), x, b)


# -- reductions -------------------------------------------------------------------------------

@FEW
@given(shape=st.sampled_from([(2, 3, 70), (3, 1, 5), (1, 66), (4,)]), seed=st.integers(0, 99), nan=st.booleans())
def test_reductions(shape, seed, nan):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    if nan:
        x.reshape(-1)[rng.integers(x.size)] = np.nan
    last = len(shape) - 1

    def f(x):
        outs = [sc.ops.sum(x, axis=0), sc.ops.mean(x, axis=last), sc.ops.max(x), sc.ops.min(x, axis=0),
                sc.ops.argmax(x, axis=last), sc.ops.softmax(x, last), sc.ops.log_softmax(x, 0),
                *sc.ops.topk(x, min(3, shape[last]), axis=last), *sc.ops.topk(x, 1, axis=0, largest=False)]
        if len(shape) == 3:
            outs.append(sc.ops.sum(x, axis=(0, 2)))  # two passes
        return tuple(outs)
    assert_matches_reference(sc.trace(f, spec(x)), x)


@pytest.mark.parametrize("n", [5, 80])  # the one-thread-per-row and the block-per-row softmax
@pytest.mark.parametrize("first", [-np.inf, np.inf])
def test_softmax_rows_starting_with_an_infinity(n, first):
    """A masked (-inf) or +inf first logit: the row's max and sum were once taken into "x's type"
    with ``x[0] * 0 + ...``, which is NaN for an infinite x[0] (a whole NaN row)."""
    x = np.random.default_rng(n).standard_normal((3, n)).astype(np.float32)
    x[:, 0] = first
    x[2, 1] = -np.inf
    with np.errstate(all="ignore"):
        assert_matches_reference(sc.trace(lambda v: (sc.ops.softmax(v, -1), sc.ops.log_softmax(v, -1)), spec(x)), x)


@FEW
@given(axis=st.integers(0, 2), exclusive=st.booleans(), reverse=st.booleans(), seed=st.integers(0, 99))
def test_cumsum(axis, exclusive, reverse, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    xi = rng.integers(-9, 9, (3, 5, 2)).astype(np.int32)

    def f(x, xi):
        return (sc.ops.cumsum(x, axis, exclusive=exclusive, reverse=reverse),
                sc.ops.cumsum(xi, axis, exclusive=exclusive, reverse=reverse))
    assert_matches_reference(sc.trace(f, spec(x), spec(xi)), x, xi, exact=True)


def test_integer_reductions_and_ties():
    x = np.array([[3, 1, 3, -2], [0, 0, 0, 0], [-5, 9, 9, 1]], np.int32)

    def f(x):
        return sc.ops.sum(x, axis=1), sc.ops.max(x, axis=0), sc.ops.argmax(x, axis=1), *sc.ops.topk(x, 3)
    assert_matches_reference(sc.trace(f, spec(x)), x)


# -- linalg -----------------------------------------------------------------------------------

@FEW
@given(m=st.integers(1, 9), k=st.integers(1, 11), n=st.integers(1, 7), bias=st.booleans(), seed=st.integers(0, 99))
@example(m=4, k=37, n=5, bias=True, seed=0)   # the GEMV: 4 rows, K longer than the lanes
@example(m=6, k=9, n=7, bias=False, seed=1)   # the tiled GEMM: partial tiles
@example(m=3, k=0, n=4, bias=True, seed=2)    # no input features: the bias alone
@example(m=7, k=0, n=4, bias=False, seed=2)   # zeros
def test_linear_gemv_and_gemm(m, k, n, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    f = (lambda x, w, b: sc.ops.linear(x, w, b)) if bias else (lambda x, w, b: sc.ops.linear(x, w))
    assert_matches_reference(sc.trace(f, spec(x), spec(w), spec(b)), x, w, b)


@FEW
@given(ta=st.booleans(), tb=st.booleans(), seed=st.integers(0, 99))
def test_batched_matmul(ta, tb, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((2, 1, 3, 5)).astype(np.float32)
    b = rng.standard_normal((3, 5, 5)).astype(np.float32)
    v = rng.standard_normal(5).astype(np.float32)
    i = rng.integers(-3, 3, (3, 4)).astype(np.int32)

    def f(a, b, v, i):
        return (sc.ops.matmul(a, b, transpose_a=ta, transpose_b=tb) if not ta else
                sc.ops.matmul(sc.ops.transpose(a, (0, 1, 3, 2)), b, transpose_a=True, transpose_b=tb),
                sc.ops.matmul(b, v), sc.ops.matmul(v, b), sc.ops.matmul(i, sc.ops.transpose(i, (1, 0))))
    assert_matches_reference(sc.trace(f, spec(a), spec(b), spec(v), spec(i)), a, b, v, i)


# -- norms, rope ------------------------------------------------------------------------------

@FEW
@given(interleaved=st.booleans(), rotary=st.sampled_from([0, 4]), batched=st.booleans(), seed=st.integers(0, 99))
def test_norms_and_rope(interleaved, rotary, batched, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 4, 8)).astype(np.float32)
    w = rng.standard_normal(8).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    pos = rng.integers(0, 4096, (2, 4) if batched else (4,)).astype(np.int64)

    def f(x, w, b, pos):
        return (sc.ops.rms_norm(x, w, eps=1e-6), sc.ops.layer_norm(x, w, b, eps=1e-5), sc.ops.layer_norm(x, eps=1e-5),
                sc.ops.rope(x, pos, theta=10000.0, interleaved=interleaved, rotary_dim=rotary))
    assert_matches_reference(sc.trace(f, spec(x), spec(w), spec(b), spec(pos)), x, w, b, pos)


# -- gathers and scatters ---------------------------------------------------------------------

@FEW
@given(seed=st.integers(0, 999))
def test_index_ops(seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 9, (2, 3)).astype(np.int64)
    tab = rng.standard_normal((9, 4)).astype(np.float32)
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    col = rng.integers(0, 4, (3, 2, 2)).astype(np.int32)

    def f(ids, tab, x, col):
        row = sc.ops.reshape(ids, (-1,))
        return (sc.ops.embedding(ids, tab), sc.ops.take(x, col, axis=1),
                sc.ops.take_along_axis(x, col, axis=1), sc.ops.one_hot(ids, 9),
                sc.ops.scatter(x, col, x[:, :2, :], axis=1), sc.ops.scatter_add(x, col, x[:, 1:3, :], axis=1),
                sc.ops.index_add(tab, row, sc.ops.broadcast_to(sc.ops.expand_dims(sc.ops.sum(tab, axis=0), 0),
                                                               (6, 4)), axis=0))
    assert_matches_reference(sc.trace(f, spec(ids), spec(tab), spec(x), spec(col)), ids, tab, x, col)


def test_index_out_of_range_names_the_op_and_index():
    tab = np.zeros((5, 2), np.float32)
    g = sc.trace(lambda i, t: sc.ops.embedding(i, t), sc.TensorSpec((3,), "int64"), spec(tab))
    with pytest.raises(KernelError, match=r"sc.embedding .*index 7 is out of range for an embedding table"):
        run_cuda(g, np.array([1, 7, 2]), tab)
    # the error slot is reset: the next call with good ids runs
    assert run_cuda(g, np.array([1, 4, 2]), tab)[0].shape == (3, 2)


# -- attention and the KV cache ---------------------------------------------------------------

@FEW
@given(causal=st.booleans(), mask=st.sampled_from([None, "bool", "float"]), s=st.integers(1, 3),
       seed=st.integers(0, 99))
def test_attention(causal, mask, s, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((1, 4, s, 8)).astype(np.float32)
    k = rng.standard_normal((1, 2, 5, 8)).astype(np.float32)
    v = rng.standard_normal((1, 2, 5, 8)).astype(np.float32)
    m = (rng.random((s, 5)) > 0.3) if mask == "bool" else rng.standard_normal((1, 1, s, 5)).astype(np.float32)
    if mask == "bool":
        m[:, 0] = True

    def f(q, k, v, m):
        if mask is None:
            out = sc.ops.attention(q, k, v, causal=causal)
        else:
            out = sc.ops.attention(q, k, v, m, causal=causal, scale=0.3)
        return out, sc.ops.kv_write(k, sc.ops.slice(v, axis=2, start=0, stop=2))
    assert_matches_reference(sc.trace(f, spec(q), spec(k), spec(v), spec(m)), q, k, v, m)


@FEW
@given(stride=st.integers(1, 2), pad=st.sampled_from([0, 1, (1, 0, 2, 1)]), dilation=st.integers(1, 2),
       groups=st.sampled_from([1, 2]), bias=st.booleans(), seed=st.integers(0, 99))
def test_conv2d(stride, pad, dilation, groups, bias, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 4 // groups, 3, 2)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)

    def f(x, w, b):
        return sc.ops.conv2d(x, w, b if bias else None, stride=stride, padding=pad, dilation=dilation,
                             groups=groups)
    assert_matches_reference(sc.trace(f, spec(x), spec(w), spec(b)), x, w, b)


# -- lowering errors and the device memory plan -----------------------------------------------

def test_missing_rules_are_listed_in_one_error():
    g = sc.trace(lambda x: sc.ops.relu(x), sc.TensorSpec((4,), "float32"))
    op = g.main.ops[0]
    saved = op.opdef.lowerings.pop("cuda")
    try:
        with pytest.raises(LoweringError, match=r"no lowering for 1 op\(s\).*sc.relu"):
            lower_function(g, None, "cuda")
    finally:
        op.opdef.lowerings["cuda"] = saved


def test_intermediate_buffers_share_the_device_arena():
    from sparsec.runtime.cuda.executable import CudaExecutable

    def f(x):
        for _ in range(6):
            x = sc.ops.softmax(x * 2.0, -1)
        return x
    g = sc.trace(f, sc.TensorSpec(("n", 64), "float32"))
    ex = CudaExecutable(lower_function(g, None, "cuda"))
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(ex(x)[0], sc.interpret(g, x)[0], rtol=1e-5, atol=1e-6)
    rep = ex.memory_report({"n": 3})
    assert rep["arena_bytes"] < rep["unplanned_bytes"] / 3, rep


def test_zero_rows():
    g = sc.trace(lambda x, w: (sc.ops.softmax(sc.ops.linear(x * 2.0, w), -1), sc.ops.sum(x, axis=0)),
                 sc.TensorSpec(("n", 4), "float32"), sc.TensorSpec((3, 4), "float32"))
    outs = assert_matches_reference(g, np.zeros((0, 4), np.float32), np.ones((3, 4), np.float32))
    assert outs[0].shape == (0, 3)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_attention_rows_that_see_no_key_give_zeros(dtype):
    """A fully masked row (boolean False or additive -inf) gives zeros, as the reference; a NaN
    query gives a NaN row. (The kernel gave NaN for fully masked rows: hypothesis found it.)"""
    rng = np.random.default_rng(4)
    q = rng.standard_normal((1, 2, 3, 8)).astype(dtype)
    k, v = (rng.standard_normal((1, 2, 5, 8)).astype(dtype) for _ in range(2))
    q[0, 1, 2, 0] = np.nan
    for mask in (np.ones((1, 1, 3, 5), bool), np.zeros((1, 1, 3, 5), dtype)):
        if mask.dtype == bool:
            mask[0, 0, 1] = False
        else:
            mask[0, 0, 1] = -np.inf
        g = sc.trace(lambda q, k, v, m: sc.ops.attention(q, k, v, m), *map(spec, (q, k, v, mask)))
        (got,) = run_cuda(g, q, k, v, mask)
        (want,) = sc.interpret(g, q, k, v, mask)
        assert np.all(got[:, :, 1] == 0) and np.all(want[:, :, 1] == 0)
        assert np.all(np.isnan(got[0, 1, 2])) and np.all(np.isnan(want[0, 1, 2]))
        np.testing.assert_allclose(got[0, 0, 0], want[0, 0, 0], rtol=2e-3, atol=2e-3)



@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "softmax", "log_softmax"])
def test_block_reductions_of_long_rows(op):
    """Few long rows take the one-block-per-row kernels (a shared-memory tree): a NaN in one row
    propagates as in the reference, the other rows match it."""
    from sparsec.lower.cuda.reduce import _use_block
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 300)).astype(np.float32)
    x[1, 77] = np.nan
    assert _use_block(3, 300)  # the block kernels, not one thread per output
    g = sc.trace(lambda t: getattr(sc.ops, op)(t, axis=1), spec(x))
    assert_matches_reference(g, x)


# -- the simulator itself ---------------------------------------------------------------------

@pytest.mark.skipif(MODE != "sim", reason="a fix of numba-cuda's simulator")
def test_simulator_gives_all_threads_of_a_block_one_shared_array():
    """numba-cuda's simulator allocated a block's shared array check-then-act without a lock: a
    thread switched out in between got an array of its own (measured: 4 of 300 such trials with
    the original; about 1 in 1000 first allocations in this suite), which made simulated kernels
    compute with uninitialized "shared" memory now and then. ``runtime.cuda.launch`` installs a
    locked allocation under the simulator; 16 threads released at once must all get one array."""
    import sys
    import threading

    from numba.cuda.simulator import kernelapi
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible

    def threads_got_one_array(n=16) -> bool:
        shared = kernelapi.FakeCUDAShared(0)
        got, start = [None] * n, threading.Barrier(n)

        def thread(i):
            start.wait()
            got[i] = shared.array(8, np.int32)
        ts = [threading.Thread(target=thread, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return len({id(a) for a in got}) == 1
    try:
        bad = sum(not threads_got_one_array() for _ in range(1000))
    finally:
        sys.setswitchinterval(old)
    assert bad == 0, f"{bad} of 1000 blocks' threads got different shared arrays"
