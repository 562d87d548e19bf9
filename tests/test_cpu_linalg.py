"""CPU kernels of sc.linear and sc.matmul against the reference interpreter: random graphs
(hypothesis) and shapes large enough to take the parallel GEMV/tile paths and the BLAS path.

``check_op`` / ``run_kernels`` here are shared by the other ``test_cpu_*`` kernel tests."""
import contextlib
import math

import ml_dtypes
import numba
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import sparsec as sc
from sparsec.frontend.tracer import Parameter
from sparsec.ir.opdef import REGISTRY
from sparsec.lower.cpu import lower_op, run_naive
from sparsec.runtime.cpu import linalg as L
from sparsec.testing import compare_outputs, graphs, inputs_for

#: the ops whose CPU kernels these tests check (the rule modules linalg, attention, index, moe)
KERNEL_OPS = frozenset({
    "sc.matmul", "sc.linear", "sc.attention", "sc.take", "sc.take_along_axis", "sc.embedding", "sc.scatter",
    "sc.scatter_add", "sc.index_add", "sc.one_hot", "sc.softmax_topk", "sc.moe_dispatch", "sc.moe_permute",
    "sc.grouped_matmul", "sc.moe_gated_grouped_matmul", "sc.moe_combine",
})
#: every other op runs its reference around the kernel under test
OTHER_OPS = frozenset(REGISTRY) - KERNEL_OPS
#: dtype sets for the random graphs beyond the default (f32, i64)
OTHER_DTYPES = [("f16", "i32"), ("bf16", "i8"), ("f64", "ui8")]


@contextlib.contextmanager
def only_kernels_under_test():
    """Hide the CPU rules of the other ops (written elsewhere), so the helper ops around a
    kernel under test run their references and a failure points at this kernel."""
    hidden = {n: d.lowerings.pop("cpu") for n, d in REGISTRY.items() if n not in KERNEL_OPS and "cpu" in d.lowerings}
    try:
        yield
    finally:
        for n, rule in hidden.items():
            REGISTRY[n].lowerings["cpu"] = rule


def run_kernels(g, *inputs):
    """``run_naive`` with this family's kernels and references for everything else."""
    with only_kernels_under_test(), np.errstate(all="ignore"):
        return run_naive(g, *inputs, reference_fallback=OTHER_OPS)


def check_graph(g, inputs, op: str | None = None):
    with np.errstate(all="ignore"):
        expected = sc.interpret(g, *inputs)
    actual = run_kernels(g, *inputs)
    if op is not None:
        assert op in run_naive.last_kernels, f"{op} did not run as a kernel: {run_naive.last_kernels}"
    msg = compare_outputs(expected, actual, g.main.output_names())
    assert msg is None, f"{msg}\ninputs {[(a.shape, a.dtype) for a in inputs]}\n{g}"
    return actual


def check_op(data, op: str, dtypes=("f32", "i64"), max_size: int = 4):
    """One random graph using ``op`` (up to 3 drawn ops), run with the kernels and the interpreter."""
    g = data.draw(graphs(ops=[op], max_ops=3, dtypes=dtypes), label="graph")
    assume(any(o.name == op for o in g.main.ops))
    inputs = data.draw(inputs_for(g, max_size=max_size), label="inputs")
    check_graph(g, inputs, op)


def trace(fn, *specs):
    return sc.trace(fn, *[sc.TensorSpec(s[0], s[1]) for s in specs])


# ---------------------------------------------------------------------------------------------
# random graphs

@pytest.mark.parametrize("op", ["sc.linear", "sc.matmul"])
@given(data=st.data())
def test_random_graphs_f32(op, data):
    check_op(data, op)


@pytest.mark.parametrize("dtypes", OTHER_DTYPES, ids="-".join)
@pytest.mark.parametrize("op", ["sc.linear", "sc.matmul"])
@settings(max_examples=8)
@given(data=st.data())
def test_random_graphs_other_dtypes(op, dtypes, data):
    check_op(data, op, dtypes)


@pytest.mark.slow
@pytest.mark.parametrize("dtypes", [("f32", "i64")] + OTHER_DTYPES, ids="-".join)
@pytest.mark.parametrize("op", ["sc.linear", "sc.matmul"])
@settings(max_examples=300)
@given(data=st.data())
def test_random_graphs_thorough(op, dtypes, data):
    check_op(data, op, dtypes, max_size=9)


# ---------------------------------------------------------------------------------------------
# shapes that take the parallel GEMV, the tile kernel and BLAS

@pytest.mark.parametrize("rows", [1, 3, 5, 17, L.BLAS_MIN_ROWS + 3])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_paths(rows, bias):
    rng = np.random.default_rng(rows)
    n, k = 203, 97  # not multiples of the 4x4 tile or the 16-row items
    w = Parameter((rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32))
    b = Parameter(rng.standard_normal(n).astype(np.float32))
    g = trace(lambda x: sc.ops.linear(x, w, b if bias else None), (("tokens", k), "float32"))
    out = check_graph(g, [rng.standard_normal((rows, k)).astype(np.float32)], "sc.linear")
    assert out[0].shape == (rows, n)


def test_linear_gemv_matches_float64_product():
    # one row, a weight big enough for the threads: the decode GEMV
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1030, 700)).astype(np.float32)
    x = rng.standard_normal((1, 700)).astype(np.float32)
    out = np.empty((1, 1030), np.float32)
    L.linear_f32(x, w, None, out)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_linear_other_float_dtypes(dtype):
    rng = np.random.default_rng(1)
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    w = (rng.standard_normal((37, 40)) / 7).astype(dt)
    b = rng.standard_normal(37).astype(dt)
    g = trace(lambda x: sc.ops.linear(x, w, b), (("batch", 3, 40), dtype))
    check_graph(g, [rng.standard_normal((2, 3, 40)).astype(dt)], "sc.linear")


@pytest.mark.parametrize("rows", [1, 6, L.BLAS_MIN_ROWS + 1])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_matmul_weight_paths(rows, transpose_b):
    rng = np.random.default_rng(rows)
    b = Parameter(rng.standard_normal((150, 70) if transpose_b else (70, 150)).astype(np.float32))
    g = trace(lambda a: sc.ops.matmul(a, b, transpose_b=transpose_b), (("tokens", 70), "float32"))
    check_graph(g, [rng.standard_normal((rows, 70)).astype(np.float32)], "sc.matmul")


@pytest.mark.parametrize("shapes", [((4,), (4,)), ((4,), (4, 3)), ((2, 3, 4), (4,)), ((2, 3, 4), (4, 5)),
                                    ((2, 1, 3, 4), (5, 4, 6)), ((3, 4), (2, 4, 5))])
@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_matmul_ranks_and_broadcasting(shapes, dtype):
    rng = np.random.default_rng(2)
    sa, sb = shapes
    ta = len(sa) >= 2 and dtype == "float32"
    a = rng.integers(-3, 4, sa).astype(dtype)
    if ta:
        a = np.ascontiguousarray(np.swapaxes(a, -1, -2))
    b = rng.integers(-3, 4, sb).astype(dtype)
    g = trace(lambda a, b: sc.ops.matmul(a, b, transpose_a=ta), (a.shape, dtype), (b.shape, dtype))
    check_graph(g, [a, b], "sc.matmul")


def test_matmul_integers_wrap_like_the_reference():
    a = np.full((2, 3), 100, np.int8)
    b = np.full((3, 2), 100, np.int8)
    g = trace(lambda a, b: sc.ops.matmul(a, b), (a.shape, "int8"), (b.shape, "int8"))
    out = check_graph(g, [a, b], "sc.matmul")
    assert out[0].dtype == np.int8


def test_quantized_weight_lowers_to_the_quantized_kernel():
    # (the quantized kernels are tested in test_cpu_quant.py)
    g = trace(lambda x: sc.ops.linear(x, np.ones((4, 32), np.float32)), ((2, 32), "float32"))
    op = next(o for o in g.main.ops if o.name == "sc.linear")
    from sparsec.ir.types import QuantType
    op.operands[1].type = QuantType("q8_0", (4, 32))
    assert lower_op(op).name.startswith("linear_q8_0_")


def test_zero_rows():
    w = Parameter(np.ones((3, 4), np.float32))
    for fn in (lambda x: sc.ops.linear(x, w), lambda x: sc.ops.matmul(x, w, transpose_b=True)):
        g = trace(fn, (("tokens", 4), "float32"))
        assert check_graph(g, [np.zeros((0, 4), np.float32)])[0].shape == (0, 3)


# ---------------------------------------------------------------------------------------------
# the f32 kernel directly: dot-product tiles (few rows) and outer-product panels (many rows),
# against float64 products

P, PMIN = L.PANEL_ROWS, L.PANEL_MIN_ROWS


def _close_to_f64(out, ref):
    assert out.dtype == np.float32
    err = np.abs(out.astype(np.float64) - ref).max(initial=0.0)
    assert err <= 1e-4 * max(1.0, np.abs(ref).max(initial=0.0)), err


def _act64(v, act):
    if act == L.ACT_SILU:
        return v / (1.0 + np.exp(-v))
    if act == L.ACT_GELU:
        return 0.5 * v * (1.0 + np.vectorize(math.erf, otypes=[float])(v / math.sqrt(2.0)))
    if act == L.ACT_GELU_TANH:
        return 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))
    if act == L.ACT_RELU:
        return np.maximum(v, 0.0)
    return v


@pytest.mark.parametrize("rows, n, k", [
    (8, 9, 50),              # tiles: 4 + 4 rows; 9 weight rows: 2 groups of 4, then 1
    (13, 203, 97),           # tiles: 6 + 6 + 1 rows
    (PMIN, 203, 97),         # the smallest group with a panel (partly filled), N not a multiple of 4
    (P + 1, 70, 1),          # a panel and one row of tiles, K = 1
    (P + 8, 130, 300),       # a panel and 8 rows of tiles
    (P + PMIN + 1, 61, 1030),  # a full and a partly filled panel
    (2 * P, 64, 1024),       # rows of 4 KiB (aliasing in the packing)
    (4 * P + 2, 203, 97),    # 4 panels and 2 rows of tiles
])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_f32_tiles_and_panels(rows, n, k, bias):
    rng = np.random.default_rng(rows * 1000 + k)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    out = np.full((rows, n), np.nan, np.float32)
    L.linear_f32(x, w, b, out)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    _close_to_f64(out, ref if b is None else ref + b)


@pytest.mark.parametrize("rows", [5, P + 3])
def test_linear_f32_zero_inputs(rows):
    # K = 0: every product is empty, out is the bias
    b = np.arange(11, dtype=np.float32)
    out = np.full((rows, 11), np.nan, np.float32)
    L.linear_f32(np.zeros((rows, 0), np.float32), np.zeros((11, 0), np.float32), b, out)
    assert np.array_equal(out, np.broadcast_to(b, out.shape))


@pytest.mark.parametrize("rows", [7, 2 * P + 5])
def test_linear_f32_strided_operands(rows):
    # a weight whose rows are not contiguous takes the tiles (the panels need contiguous rows);
    # strided inputs are packed like contiguous ones
    rng = np.random.default_rng(3)
    x = rng.standard_normal((rows, 2 * 90)).astype(np.float32)[:, ::2]
    w = rng.standard_normal((37, 2 * 90)).astype(np.float32)[:, 1::2]
    for xs, ws in ((x, w), (np.ascontiguousarray(x), w), (x, np.ascontiguousarray(w))):
        out = np.empty((rows, 37), np.float32)
        L.linear_f32(xs, ws, None, out)
        _close_to_f64(out, xs.astype(np.float64) @ ws.T.astype(np.float64))


@pytest.mark.parametrize("act", [L.ACT_NONE, L.ACT_SILU, L.ACT_GELU, L.ACT_GELU_TANH, L.ACT_RELU])
def test_grouped_f32_tiles_and_panels(act):
    # groups of 0, 1, 5 rows (tiles), 130 rows (panels + tiles), PMIN rows (one panel) and
    # P + 8 rows, on the calling thread and on Numba's threads
    counts = [0, 1, 5, 130, PMIN, 0, P + 8]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    rng = np.random.default_rng(act)
    g, n, k = len(counts), 70, 203
    x = rng.standard_normal((offsets[-1], k)).astype(np.float32)
    w = (rng.standard_normal((g, n, k)) / np.sqrt(k)).astype(np.float32)
    w2 = (rng.standard_normal((g, n, k)) / np.sqrt(k)).astype(np.float32)
    ref = np.zeros((offsets[-1], n))
    for e in range(g):
        lo, hi = offsets[e], offsets[e + 1]
        ref[lo:hi] = x[lo:hi].astype(np.float64) @ w[e].T.astype(np.float64)
        if act != L.ACT_NONE:
            ref[lo:hi] = _act64(ref[lo:hi], act) * (x[lo:hi].astype(np.float64) @ w2[e].T.astype(np.float64))
    for threads in (1, numba.get_num_threads()):
        out = np.full(ref.shape, np.nan, np.float32)
        assert L.grouped_gemm_nt(x, w, w2, offsets, np.zeros(0, np.float32), act, L.BLAS_MIN_ROWS, threads, out) == 0
        _close_to_f64(out, ref)
    out = np.full(ref.shape, np.nan, np.float32)
    assert L.grouped_f32(x, w, w2 if act != L.ACT_NONE else None, offsets, act, out)
    _close_to_f64(out, ref)


def test_num_threads_follows_set_num_threads():
    """The kernels' cheap thread count (runtime/cpu/common.num_threads) is numba's, set_num_threads
    included."""
    import numba
    from sparsec.runtime.cpu.common import num_threads
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert num_threads() == 1
        numba.set_num_threads(n)
        assert num_threads() == n == numba.get_num_threads()
    finally:
        numba.set_num_threads(n)
