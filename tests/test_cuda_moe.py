"""CUDA kernels of the MoE dispatch chain (``sparsec/lower/cuda/moe.py``, ``runtime/cuda/moe.py``)
against the reference interpreter, under numba's CUDA simulator (tiny shapes: every simulated
thread is a Python thread) or on a GPU when there is one:

* ``moe_dispatch`` gives exactly the reference's stable order and offsets (ties, experts
  without pairs, more experts than threads, more pairs than one staging sweep);
* ``moe_permute`` and ``moe_combine`` are exact on the simulator (one thread per output element
  summing the slots in order, as the reference);
* ``grouped_matmul`` (f32, f64) stays within the bound of the order of the f32/f64 sums, on the
  GEMV and the tiled path, with empty experts and 0 / 1 rows; the gated form for every activation;
* the whole chain, and the traced ``sc.nn.MoE`` layer compiled with ``target="cuda"``;
* malformed routing data raises ``KernelError`` naming the op;
* PTX for sm_90 of every kernel the chain launches, assembled with ``ptxas`` (in a subprocess
  without the simulator; skipped with the reason when ptxas or NVRTC is missing).
"""
from sparsec.lower.cuda.testing import cuda_test_process

MODE = cuda_test_process()

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.frontend.tracer import Parameter  # noqa: E402
from sparsec.lower.cuda.testing import assert_matches_reference, run_cuda  # noqa: E402
from sparsec.runtime.cuda import launch  # noqa: E402
from sparsec.runtime.cuda import moe as M  # noqa: E402
from sparsec.runtime.executable import KernelError  # noqa: E402
from test_cpu_quant import random_offsets  # noqa: E402

ACTIVATIONS = ["silu", "gelu", "gelu_tanh", "relu"]


def trace(fn, *specs):
    return sc.trace(fn, *[sc.TensorSpec(s, d) for s, d in specs])


def uses_kernel(graph, name_part):
    from sparsec.lower.lowering import lower_function
    return any(name_part in s.kernel for s in lower_function(graph, None, "cuda").steps)


def sum_order_bound(x, w, dtype):
    """``2 gamma_K sum_k |w x|`` per output: two sums of the same K products in different orders."""
    u = 2.0 ** -24 if np.dtype(dtype) == np.float32 else 2.0 ** -53
    k = x.shape[-1]
    gamma = k * u / (1 - k * u)
    return 2 * gamma * (np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T) + 1e-300


# ---------------------------------------------------------------------------------------------
# dispatch, permute, combine: exact

@settings(max_examples=6, deadline=None)
@given(t=st.integers(0, 7), k=st.integers(1, 3), e=st.integers(1, 5), idt=st.sampled_from(["int64", "int32"]),
       seed=st.integers(0, 999))
def test_dispatch_is_the_stable_sort(t, k, e, idt, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, e, (t, k)).astype(idt)
    g = trace(lambda i: sc.ops.moe_dispatch(i, e), (("tokens", k), idt))
    assert_matches_reference(g, ids, exact=True)


def test_dispatch_more_experts_than_threads_and_many_pairs():
    rng = np.random.default_rng(1)
    e = 40                     # experts owned several per thread; pairs over several staging sweeps
    ids = rng.integers(0, e, (25, 3))
    ids[:, 0] = 7              # a tie on every token
    ids[3] = [39, 39, 0]
    g = trace(lambda i: sc.ops.moe_dispatch(i, e), ((25, 3), "int64"))
    order, offsets = assert_matches_reference(g, ids, exact=True)
    assert offsets[8] - offsets[7] >= 24 and offsets[40] == 75


@settings(max_examples=5, deadline=None)
@given(t=st.integers(0, 6), k=st.integers(1, 3), h=st.integers(1, 5),
       dt=st.sampled_from(["float32", "float64", "int32"]), seed=st.integers(0, 999))
def test_permute(t, k, h, dt, seed):
    rng = np.random.default_rng(seed)
    order = rng.permutation(t * k).astype(np.int64)
    x = (rng.standard_normal((t, h)) * 10).astype(dt)
    g = trace(lambda a, o: sc.ops.moe_permute(a, o, k), ((t, h), dt), ((t * k,), "int64"))
    assert_matches_reference(g, x, order, exact=True)


@contextlib.contextmanager
def combine_path(one_block: bool):
    """The combine in one block (few tokens) or as fill, invert and sum launches; checks which
    kernels ran."""
    from sparsec.runtime.cuda import replay
    saved = M.COMBINE_ONE_BLOCK
    M.COMBINE_ONE_BLOCK = saved if one_block else -1
    try:
        with replay.recording() as launches:
            yield
    finally:
        M.COMBINE_ONE_BLOCK = saved
    names = [fn.name for fn, _, _ in launches]
    if names:
        assert any("one_block" in n for n in names) == one_block, names
        assert ("invert_order" in names) == (not one_block), names


@settings(max_examples=5, deadline=None)
@given(t=st.integers(0, 6), k=st.integers(1, 3), h=st.integers(1, 5), dt=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 999), one_block=st.booleans())
def test_combine_sums_the_slots_in_order(t, k, h, dt, seed, one_block):
    rng = np.random.default_rng(seed)
    order = rng.permutation(t * k).astype(np.int64)
    y = rng.standard_normal((t * k, h)).astype(dt)
    w = rng.random((t, k)).astype(dt)
    g = trace(lambda a, o, b: sc.ops.moe_combine(a, o, b), ((t * k, h), dt), ((t * k,), "int64"), ((t, k), dt))
    # exact on the simulator (the same f32 products and sums in the same order); a device may
    # contract each multiply-add into an FMA (one rounding fewer)
    with combine_path(one_block):
        assert_matches_reference(g, y, order, w, exact=launch.simulator())


# ---------------------------------------------------------------------------------------------
# grouped matmuls

@settings(max_examples=6, deadline=None)
@given(e=st.integers(1, 4), m=st.sampled_from([0, 1, 3, 13]), n=st.integers(1, 7), k=st.integers(1, 9),
       empty=st.booleans(), dt=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 999))
def test_grouped_matmul_within_the_sum_order_bound(e, m, n, k, empty, dt, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((e, n, k)).astype(dt)
    wp = Parameter(w)
    g = trace(lambda x, off: sc.ops.grouped_matmul(x, wp, off), (("rows", k), dt), ((e + 1,), "int64"))
    x = rng.standard_normal((m, k)).astype(dt)
    offsets = random_offsets(rng, e, m, empty)
    (got,) = run_cuda(g, x, offsets)
    (want,) = sc.interpret(g, x, offsets)
    assert got.dtype == want.dtype and got.shape == want.shape
    for i in range(e):
        lo, hi = offsets[i], offsets[i + 1]
        err = np.abs(got[lo:hi].astype(np.float64) - want[lo:hi])
        assert np.all(err <= sum_order_bound(x[lo:hi], w[i], dt))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("rows", [3, 14])   # the GEMV (<= 4 rows per expert) and the tiled GEMM
def test_gated_grouped_matmul(activation, rows):
    rng = np.random.default_rng(rows)
    e, n, k = 3, 5, 6
    wg, wu = (Parameter(rng.standard_normal((e, n, k)).astype(np.float32)) for _ in range(2))
    g = trace(lambda x, off: sc.ops.moe_gated_grouped_matmul(x, wg, wu, off, activation=activation),
              (("rows", k), "float32"), ((e + 1,), "int64"))
    x = rng.standard_normal((rows, k)).astype(np.float32) * 2
    offsets = np.array([0, rows // 3, rows // 3, rows], np.int64)   # expert 1 without rows
    assert_matches_reference(g, x, offsets, rtol=1e-5)


def launched_paths(monkeypatch) -> list:
    """Record which grouped kernel each launch uses ("gemv", "gemv_words", "gemm")."""
    paths = []

    class Recorded:
        def __init__(self, fn, path):
            self.fn, self.path = fn, path

        def __getitem__(self, config):   # a launch
            paths.append(self.path)
            return self.fn[config]

        def spec(self, *a, **kw):
            return self.fn.spec(*a, **kw)

    for name, path in (("make_grouped_gemv", "gemv"), ("make_grouped_gemv_words", "gemv_words"),
                       ("make_grouped_gemm", "gemm")):
        def wrapped(*a, _f=getattr(M, name), _p=path):
            return Recorded(_f(*a), _p)
        monkeypatch.setattr(M, name, wrapped)
    return paths


def test_gemv_and_tiled_paths_are_both_taken(monkeypatch):
    rng = np.random.default_rng(0)
    e, n, k = 2, 9, 11     # N, K not multiples of the tiles; rows over several row tiles / passes
    w = Parameter(rng.standard_normal((e, n, k)).astype(np.float32))
    g = trace(lambda x, off: sc.ops.grouped_matmul(x, w, off), (("rows", k), "float32"), ((e + 1,), "int64"))
    paths = launched_paths(monkeypatch)
    for rows, offsets, path in ((2, [0, 1, 2], "gemv"), (8, [0, 0, 8], "gemv"), (9, [0, 9, 9], "gemm"),
                                (19, [0, 7, 19], "gemm")):
        assert_matches_reference(g, rng.standard_normal((rows, k)).astype(np.float32), np.array(offsets), rtol=1e-5)
        assert paths[-1] == path, (rows, paths)


@pytest.mark.parametrize("geometry", [(4, 1, 2), (8, 2, 2), (16, 1, 4), (8, 1, 1)])
def test_gemv_in_wide_geometries(geometry, monkeypatch):
    """On a device ``gemv_geometry`` widens a column to up to 256 threads with 1-2 columns per
    block; the same kernel in such shapes, scaled to the simulator, matches the reference
    (plain and gated, several rows, K not a multiple of the lanes, an expert without rows)."""
    monkeypatch.setattr(M, "gemv_geometry", lambda *a, **kw: geometry)
    rng = np.random.default_rng(sum(geometry))
    e, n, k = 3, 5, 37
    wg, wu = (Parameter(rng.standard_normal((e, n, k)).astype(np.float32)) for _ in range(2))
    x = rng.standard_normal((6, k)).astype(np.float32)
    offsets = np.array([0, 4, 4, 6], np.int64)
    paths = launched_paths(monkeypatch)
    g = trace(lambda a, off: sc.ops.grouped_matmul(a, wg, off), (("rows", k), "float32"), ((e + 1,), "int64"))
    assert_matches_reference(g, x, offsets, rtol=1e-5)
    g = trace(lambda a, off: sc.ops.moe_gated_grouped_matmul(a, wg, wu, off, activation="silu"),
              (("rows", k), "float32"), ((e + 1,), "int64"))
    assert_matches_reference(g, x, offsets, rtol=1e-5)
    assert paths == ["gemv", "gemv"]


def run_gemv_variants(g, monkeypatch, *arrays, kernel="grouped"):
    """Run ``g`` with the weights taken as 16-byte aligned, then as not: per run, ``(outputs,
    the name of the one launched kernel containing kernel)``; asserts the 16-byte variant
    (``_v4``) ran exactly when aligned."""
    from sparsec.lower.cuda import moe as rules
    from sparsec.runtime.cuda import replay
    runs = []
    for is_aligned in (True, False):
        monkeypatch.setattr(rules, "aligned", lambda a, _v=is_aligned: _v)
        with replay.recording() as launches:
            outs = run_cuda(g, *arrays)
        names = [fn.name for fn, _, _ in launches if kernel in fn.name]
        assert len(names) == 1 and names[0].endswith("_v4") == is_aligned, names
        runs.append(outs)
    return runs


@pytest.mark.parametrize("geometry", [None, (4, 1, 2), (8, 2, 1)])
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("k,dt", [(36, "float32"), (8, "float32"), (40, "bfloat16"), (8, "bfloat16")])
def test_gemv_reads_16_bytes_where_k_allows(geometry, gated, k, dt, monkeypatch):
    """Float weights whose rows are whole 16-byte vectors (f32: K % 4 == 0, bf16: K % 8 == 0):
    the GEMV's 16-byte variant (``vload.load4``), within the sum-order bound for f32 (it adds
    each 4 products first), within bf16 rounding of the reference for bf16; with misaligned
    weights the scalar variant."""
    from sparsec.ir.dtypes import as_dtype
    if geometry is not None:
        monkeypatch.setattr(M, "gemv_geometry", lambda *a, **kw: geometry)
    npdt = as_dtype(dt).np
    rng = np.random.default_rng(k + gated)
    e, n = 3, 5
    wg, wu = (Parameter(rng.standard_normal((e, n, k)).astype(npdt)) for _ in range(2))
    if gated:
        g = trace(lambda a, off: sc.ops.moe_gated_grouped_matmul(a, wg, wu, off, activation="gelu"),
                  (("rows", k), dt), ((e + 1,), "int64"))
    else:
        g = trace(lambda a, off: sc.ops.grouped_matmul(a, wg, off), (("rows", k), dt), ((e + 1,), "int64"))
    x = rng.standard_normal((5, k)).astype(npdt)
    offsets = np.array([0, 3, 3, 5], np.int64)
    (want,) = sc.interpret(g, x, offsets)
    for (got,) in run_gemv_variants(g, monkeypatch, x, offsets):
        assert got.dtype == want.dtype
        if dt == "bfloat16":  # each output rounded once from an f32 sum: one bf16 rounding of the reference
            g32, w32 = got.astype(np.float32), want.astype(np.float32)
            assert np.all(np.abs(g32 - w32) <= 2 ** -7 * np.abs(w32) + 1e-3 * max(1.0, np.abs(w32).max()))
        elif gated:
            assert np.max(np.abs(got - want)) <= 1e-5 * max(1.0, float(np.max(np.abs(want))))
        else:
            for i in range(e):
                lo, hi = offsets[i], offsets[i + 1]
                assert np.all(np.abs(got[lo:hi].astype(np.float64) - want[lo:hi])
                              <= sum_order_bound(x[lo:hi], np.asarray(wg.data)[i], np.float32))


@pytest.mark.parametrize("geometry", [(2, 4, 4, 1, 2), (4, 8, 2, 1, 4), (8, 4, 4, 2, 2), (8, 8, 3, 4, 2)])
@pytest.mark.parametrize("dt", ["float32", "bfloat16"])
def test_gemm_in_other_geometries(geometry, dt, monkeypatch):
    """On a device ``gemm_geometry`` picks the row-tile height from the rows per expert (8 to 64
    rows, 1 to 4 per thread); the kernel in such shapes (BM, BN, BK, TM, TN), scaled to the
    simulator: row tiles shorter and longer than the experts' rows, N and K not multiples of
    the tiles, an expert without rows, plain and gated, f32 and bf16 rows."""
    from sparsec.ir.dtypes import as_dtype
    monkeypatch.setattr(M, "gemm_geometry", lambda *a, **kw: geometry)
    npdt = as_dtype(dt).np
    rng = np.random.default_rng(sum(geometry))
    e, n, k = 3, 11, 13
    wg, wu = (Parameter(rng.standard_normal((e, n, k)).astype(npdt)) for _ in range(2))
    x = rng.standard_normal((19, k)).astype(npdt)
    offsets = np.array([0, 7, 7, 19], np.int64)
    paths = launched_paths(monkeypatch)
    for g in (trace(lambda a, off: sc.ops.grouped_matmul(a, wg, off), (("rows", k), dt), ((e + 1,), "int64")),
              trace(lambda a, off: sc.ops.moe_gated_grouped_matmul(a, wg, wu, off, activation="silu"),
                    (("rows", k), dt), ((e + 1,), "int64"))):
        (want,) = sc.interpret(g, x, offsets)
        (got,) = run_cuda(g, x, offsets)
        w32, g32 = want.astype(np.float64), got.astype(np.float64)
        tol = (2 ** -7 * np.abs(w32) + 1e-2 * max(1.0, np.abs(w32).max()) if dt == "bfloat16"
               else 1e-5 * max(1.0, np.abs(w32).max()))
        assert np.all(np.abs(g32 - w32) <= tol), np.max(np.abs(g32 - w32))
    assert paths == ["gemm", "gemm"]


@st.composite
def gemm_geometries(draw):
    """(BM, BN, BK, TM, TN) as ``gemm_geometry`` builds them (blocks of a power of two threads,
    ``locate_tile``'s prefix sum), scaled to the simulator: 2 to 16 threads."""
    tm, tn = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2, 4]))
    ny, nx = draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 2, 4]))
    if nx * ny == 1:
        nx = 2
    return (tm * ny, tn * nx, draw(st.integers(1, 5)), tm, tn)


@settings(max_examples=6, deadline=None)
@given(geometry=gemm_geometries(), e=st.integers(1, 4), n=st.integers(1, 9), k=st.integers(0, 9),
       rows=st.integers(0, 24), empty=st.booleans(), gated=st.booleans(), seed=st.integers(0, 999))
def test_gemm_geometries_property(geometry, e, n, k, rows, empty, gated, seed):
    """The tiled grouped matmul in random geometries and shapes against the interpreter: the
    rows forced onto the GEMM (whatever their count per expert), random offsets with and without
    an idle expert, plain and gated. ``-m slow`` runs more (``test_gemm_geometries_thorough``)."""
    check_gemm_geometry(geometry, e, n, k, rows, empty, gated, seed)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(geometry=gemm_geometries(), e=st.integers(1, 4), n=st.integers(1, 9), k=st.integers(0, 9),
       rows=st.integers(0, 24), empty=st.booleans(), gated=st.booleans(), seed=st.integers(0, 999))
def test_gemm_geometries_thorough(geometry, e, n, k, rows, empty, gated, seed):
    check_gemm_geometry(geometry, e, n, k, rows, empty, gated, seed)


def check_gemm_geometry(geometry, e, n, k, rows, empty, gated, seed):
    rng = np.random.default_rng(seed)
    wg, wu = (Parameter(rng.standard_normal((e, n, k)).astype(np.float32)) for _ in range(2))
    x = rng.standard_normal((rows, k)).astype(np.float32)
    offsets = random_offsets(rng, e, rows, empty)
    if gated:
        g = trace(lambda a, off: sc.ops.moe_gated_grouped_matmul(a, wg, wu, off, activation="gelu"),
                  (("rows", k), "float32"), ((e + 1,), "int64"))
    else:
        g = trace(lambda a, off: sc.ops.grouped_matmul(a, wg, off), (("rows", k), "float32"), ((e + 1,), "int64"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(M, "gemm_geometry", lambda *a, **kw: geometry)
        mp.setattr(M, "GEMV_MAX_ROWS", 0)             # every call with rows takes the GEMM
        paths = launched_paths(mp)
        (want,) = sc.interpret(g, x, offsets)
        (got,) = run_cuda(g, x, offsets)
    assert got.shape == want.shape and got.dtype == want.dtype
    if rows:
        assert paths == ["gemm"], paths
    if gated:
        assert np.max(np.abs(got - want), initial=0) <= 1e-5 * max(1.0, float(np.max(np.abs(want), initial=0)))
    else:
        for i in range(e):
            lo, hi = offsets[i], offsets[i + 1]
            assert np.all(np.abs(got[lo:hi].astype(np.float64) - want[lo:hi])
                          <= sum_order_bound(x[lo:hi], np.asarray(wg.data)[i], np.float32))


@pytest.mark.parametrize("rows", [2, 11])   # GEMV; tiled
def test_no_input_features(rows):
    """K = 0: every output is 0 (an empty sum), on both paths, plain and gated (silu(0) * 0)."""
    e, n = 2, 3
    w = Parameter(np.zeros((e, n, 0), np.float32))
    offsets = np.array([0, 1, rows], np.int64)
    x = np.zeros((rows, 0), np.float32)
    for g in (trace(lambda a, off: sc.ops.grouped_matmul(a, w, off), (("rows", 0), "float32"), ((e + 1,), "int64")),
              trace(lambda a, off: sc.ops.moe_gated_grouped_matmul(a, w, w, off, activation="silu"),
                    (("rows", 0), "float32"), ((e + 1,), "int64"))):
        (got,) = assert_matches_reference(g, x, offsets, exact=True)
        assert got.shape == (rows, n) and not got.any()


@pytest.mark.parametrize("rows", [5, 160])   # GEMV; tiled (> GEMV_MAX_ROWS per expert)
def test_more_experts_than_threads_per_block(rows, monkeypatch):
    """Blocks find their expert by a prefix sum over the offsets, a block's worth of experts at a
    time: here more experts (and idle ones) than a block has threads, on both paths."""
    rng = np.random.default_rng(rows)
    e, n, k = 37, 3, 4
    w = Parameter(rng.standard_normal((e, n, k)).astype(np.float32))
    g = trace(lambda x, off: sc.ops.grouped_matmul(x, w, off), (("rows", k), "float32"), ((e + 1,), "int64"))
    counts = np.zeros(e, np.int64)
    counts[rng.choice(e, min(rows, 7), replace=False)] = 1
    counts[-1] += rows - counts.sum()           # the last expert takes the rest
    offsets = np.concatenate([[0], np.cumsum(counts)])
    paths = launched_paths(monkeypatch)
    assert_matches_reference(g, rng.standard_normal((rows, k)).astype(np.float32), offsets, rtol=1e-5)
    assert paths == ["gemv" if rows == 5 else "gemm"]


def test_row_tiles_beyond_the_grid_limit(monkeypatch):
    """More row tiles than gridDim.y allows (65535 on a device; 1 or 2 here): blocks stride."""
    import sparsec.lower.cuda.moe as rules
    rng = np.random.default_rng(4)
    e, n, k = 3, 6, 5
    w = Parameter(rng.standard_normal((e, n, k)).astype(np.float32))
    g = trace(lambda x, off: sc.ops.grouped_matmul(x, w, off), (("rows", k), "float32"), ((e + 1,), "int64"))
    for limit in (1, 2):
        monkeypatch.setattr(rules, "MAX_GRID_Y", limit)
        assert_matches_reference(g, rng.standard_normal((21, k)).astype(np.float32), np.array([0, 9, 9, 21]),
                                 rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# the chain and the traced layer

def expert_chain(e, top_k, hidden, ffn, activation, rng):
    s = 1 / np.sqrt(hidden)
    wg, wu = (Parameter(rng.uniform(-s, s, (e, ffn, hidden)).astype(np.float32)) for _ in range(2))
    wd = Parameter(rng.uniform(-s, s, (e, hidden, ffn)).astype(np.float32))

    def fn(x, ids, weights):
        order, offsets = sc.ops.moe_dispatch(ids, e)
        xp = sc.ops.moe_permute(x, order, top_k)
        h = sc.ops.moe_gated_grouped_matmul(xp, wg, wu, offsets, activation=activation)
        return sc.ops.moe_combine(sc.ops.grouped_matmul(h, wd, offsets), order, weights)
    return trace(fn, (("tokens", hidden), "float32"), (("tokens", top_k), "int64"), (("tokens", top_k), "float32"))


@pytest.mark.parametrize("tokens", [1, 2, 9])
def test_chain_with_ties_and_idle_experts(tokens):
    rng = np.random.default_rng(tokens)
    g = expert_chain(5, 2, 8, 6, "silu", rng)
    ids = np.stack([np.zeros(tokens, np.int64), rng.choice([1, 3], tokens)], axis=1)   # experts 2, 4 idle
    x = rng.standard_normal((tokens, 8)).astype(np.float32)
    assert_matches_reference(g, x, ids, rng.random((tokens, 2)).astype(np.float32), rtol=1e-5)


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(tokens=st.integers(0, 12), e=st.integers(1, 6), k=st.integers(1, 3), h=st.integers(1, 9),
       f=st.integers(1, 9), activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 10**6))
def test_chain_thorough(tokens, e, k, h, f, activation, seed):
    k = min(k, e)
    rng = np.random.default_rng(seed)
    g = expert_chain(e, k, h, f, activation, rng)
    ids = np.array([rng.choice(e, k, replace=False) for _ in range(tokens)], np.int64).reshape(tokens, k)
    x = rng.standard_normal((tokens, h)).astype(np.float32)
    assert_matches_reference(g, x, ids, rng.random((tokens, k)).astype(np.float32), rtol=1e-5)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(t=st.integers(0, 40), k=st.integers(1, 4), e=st.integers(1, 70), seed=st.integers(0, 10**6))
def test_dispatch_thorough(t, k, e, seed):
    ids = np.random.default_rng(seed).integers(0, e, (t, k))
    g = trace(lambda i: sc.ops.moe_dispatch(i, e), ((t, k), "int64"))
    assert_matches_reference(g, ids, exact=True)


@pytest.fixture(scope="module")
def moe_layer():
    moe = sc.nn.MoE(16, 12, 4, 2, naming="mixtral", seed=0)
    return sc.trace(moe, sc.TensorSpec(("tokens", 16), "float32"))


def test_compiled_moe_layer(moe_layer):
    cm = sc.compile(moe_layer, target="cuda", progress=False, accuracy_samples=0)
    kernels = [s.kernel for s in cm.executables["main"].plan.steps]
    for name in ("softmax_topk_f32", "moe_dispatch_e4", "moe_permute", "grouped_gated_float32", "grouped_float32",
                 "moe_combine_float32"):
        assert name in kernels, kernels
    for t in (1, 6):
        x = np.random.default_rng(t).standard_normal((t, 16)).astype(np.float32)
        (want,) = sc.interpret(cm.graph, x)
        got = cm(x)
        got = got[0] if isinstance(got, tuple) else got
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) <= 1e-5 * max(1.0, float(np.max(np.abs(want))))


# ---------------------------------------------------------------------------------------------
# the router: sc.softmax_topk

@settings(max_examples=6, deadline=None)
@given(rows=st.integers(0, 5), n=st.integers(1, 12), data=st.data(), normalize=st.booleans(),
       dt=st.sampled_from(["float32", "float64", "float16", "bfloat16"]))
def test_softmax_topk(rows, n, data, normalize, dt):
    """Against the reference (softmax -> topk -> sum -> div): ties, repeated values, a NaN or
    inf row, every float dtype, k up to n."""
    import ml_dtypes
    k = data.draw(st.integers(1, n), label="k")
    seed = data.draw(st.integers(0, 99), label="seed")
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([-2.0, 0.5, 0.5, 3.0]), (rows, n)) + rng.standard_normal((rows, n)) * (seed % 2)
    if rows and seed % 3 == 0:
        x[0, rng.integers(n)] = [np.nan, np.inf, -np.inf][seed % 9 // 3]
    x = x.astype(ml_dtypes.bfloat16 if dt == "bfloat16" else dt)
    g = trace(lambda v: sc.ops.softmax_topk(v, k, normalize), (("t", n), dt))
    import sparsec.lower.cuda.moe as rules
    saved, got = rules.SOFTMAX_TOPK_BLOCK_FROM, []
    try:
        for start in (10 ** 9, 1):  # a thread per row; a block per row (rows past a warp on a device)
            rules.SOFTMAX_TOPK_BLOCK_FROM = start
            with np.errstate(all="ignore"):
                (w_ref, i_ref), (w, i) = sc.interpret(g, x), run_cuda(g, x)
            assert w.dtype == w_ref.dtype and i.dtype == np.int64
            np.testing.assert_array_equal(i, i_ref)
            half = dt in ("float16", "bfloat16")  # one rounding of the 16-bit output apart at most
            np.testing.assert_allclose(w.astype(np.float64), w_ref.astype(np.float64), rtol=1e-2 if half else 1e-6,
                                       atol=0, equal_nan=True)
            got.append((w, i))
    finally:
        rules.SOFTMAX_TOPK_BLOCK_FROM = saved
    # the block kernel gives the serial kernel's bits (NaN payloads aside)
    np.testing.assert_array_equal(got[0][1], got[1][1])
    np.testing.assert_array_equal(got[0][0].astype(np.float64), got[1][0].astype(np.float64))
    assert uses_kernel(g, "softmax_topk")


@pytest.mark.parametrize("n,k", [(128, 8), (40, 3), (9, 9)])
def test_softmax_topk_block_per_row_on_router_sized_rows(n, k, monkeypatch):
    """Rows longer than the block (more elements than threads), ties across threads."""
    import sparsec.lower.cuda.moe as rules
    rng = np.random.default_rng(n)
    x = np.round(rng.standard_normal((3, n)) * 2).astype(np.float32)   # many ties
    g = trace(lambda v: sc.ops.softmax_topk(v, k, True), (("t", n), "float32"))
    monkeypatch.setattr(rules, "SOFTMAX_TOPK_BLOCK_FROM", 1)
    (w_ref, i_ref), (w, i) = sc.interpret(g, x), run_cuda(g, x)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(w, w_ref, rtol=1e-6, atol=0)
    monkeypatch.setattr(rules, "SOFTMAX_TOPK_BLOCK_FROM", 10 ** 9)
    w2, i2 = run_cuda(g, x)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_array_equal(w, w2)


# ---------------------------------------------------------------------------------------------
# malformed routing data

def test_expert_id_out_of_range():
    g = trace(lambda ids: sc.ops.moe_dispatch(ids, 4), ((3, 2), "int64"))
    with pytest.raises(KernelError, match=r"sc\.moe_dispatch.*expert id 4 is outside \[0, 4\)"):
        run_cuda(g, np.array([[0, 1], [4, 2], [3, 3]]))
    with pytest.raises(KernelError, match=r"expert id -1 is outside"):
        run_cuda(g, np.array([[0, 1], [1, 2], [-1, 3]]))


@pytest.mark.parametrize("one_block", [True, False])
def test_order_not_a_permutation(one_block):
    g = trace(lambda y, o, w: sc.ops.moe_combine(y, o, w), ((4, 3), "float32"), ((4,), "int64"), ((2, 2), "float32"))
    y, w = np.ones((4, 3), np.float32), np.ones((2, 2), np.float32)
    with pytest.raises(KernelError, match=r"sc\.moe_combine.*not a permutation.*entry (1|5)"):
        with combine_path(one_block):
            run_cuda(g, y, np.array([0, 1, 1, 5]), w)
    p = trace(lambda x, o: sc.ops.moe_permute(x, o, 2), ((2, 3), "float32"), ((4,), "int64"))
    with pytest.raises(KernelError, match=r"sc\.moe_permute.*order entry 4 is out of range"):
        run_cuda(p, np.ones((2, 3), np.float32), np.array([0, 4, 1, 2]))


@pytest.mark.parametrize("offsets", [[0, 3, 2, 4], [1, 2, 3, 4], [0, 1, 2, 3]])
def test_bad_offsets(offsets):
    w = Parameter(np.ones((3, 2, 5), np.float32))
    g = trace(lambda x, off: sc.ops.grouped_matmul(x, w, off), ((4, 5), "float32"), ((4,), "int64"))
    with pytest.raises(KernelError, match=r"sc\.grouped_matmul.*offsets must rise from 0"):
        run_cuda(g, np.ones((4, 5), np.float32), np.array(offsets))


# ---------------------------------------------------------------------------------------------
# PTX for sm_90

PTX_SCRIPT = r"""
import json, sys, tempfile
import numpy as np
import sparsec as sc
from sparsec.frontend.tracer import Parameter
from sparsec.lower.lowering import lower_function
from sparsec.runtime.cuda.ptx import emit_ptx
e, k, h, f = 4, 2, 8, 6
wg, wu = (Parameter(np.ones((e, f, h), np.float32)) for _ in range(2))
wd = Parameter(np.ones((e, h, f), np.float32))

def chain(x, logits):
    weights, ids = sc.ops.softmax_topk(logits, k, True)
    order, offsets = sc.ops.moe_dispatch(ids, e)
    hh = sc.ops.moe_gated_grouped_matmul(sc.ops.moe_permute(x, order, k), wg, wu, offsets, activation="gelu")
    return sc.ops.moe_combine(sc.ops.grouped_matmul(hh, wd, offsets), order, weights)

g = sc.trace(chain, sc.TensorSpec(("tokens", h), "float32"), sc.TensorSpec(("tokens", e), "float32"))
with tempfile.TemporaryDirectory() as d:
    print(json.dumps([(r.name, r.ptxas, r.op, r.spill_bytes) for r in emit_ptx([lower_function(g, None, "cuda")], d)]))
"""


def run_ptx_script(script, *args):
    """Run ``script`` (printing JSON last) in a child without the simulator: compile_ptx needs the
    real numba.cuda, which needs no GPU."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    env.pop("SPARSEC_CUDA_TESTS", None)
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        if "nvrtc" in r.stderr.lower() or "libnvvm" in r.stderr.lower():
            pytest.skip(f"no NVRTC/NVVM to compile PTX: {r.stderr.strip().splitlines()[-1]}")
        raise AssertionError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_ptx_of_every_moe_kernel():
    from sparsec.runtime.cuda.ptx import find_ptxas
    results = run_ptx_script(PTX_SCRIPT)
    names = {n for n, _, _, _ in results}
    for part in ("softmax_topk_serial", "moe_dispatch", "moe_permute", "grouped_gemv", "grouped_gemm", "invert_order",
                 "moe_combine"):
        assert any(part in n for n in names), names
    for bm in M.GEMM_ROW_TILES:     # the tiled matmuls in every row-tile height, plain and gated
        assert sum(n.startswith(f"grouped_gemm_float32_{bm}x") for n in names) == 1, sorted(names)
        assert sum(n.startswith(f"grouped_gemm_float32_gelu_float32_{bm}x") for n in names) == 1, sorted(names)
    for name, status, op, spilled in results:
        if find_ptxas() is None:
            assert status.startswith("skipped"), (name, status)
        else:
            assert status == "ok", (name, op, status)
            assert not spilled, f"{name} ({op}) spills {spilled} bytes of registers to local memory (ptxas -v)"
