"""CPU kernels of the gather/scatter ops against the reference: random graphs, every dtype the
byte-moving kernels see, large gathers on the threads, and indices out of range (an error naming
the op and the index, never a silent read)."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cpu_linalg import OTHER_DTYPES, check_graph, check_op, run_kernels, trace

import sparsec as sc
from sparsec.frontend.tracer import Parameter

INDEX_OPS = ["sc.take", "sc.take_along_axis", "sc.embedding", "sc.scatter", "sc.scatter_add", "sc.index_add",
             "sc.one_hot"]


@pytest.mark.parametrize("op", INDEX_OPS)
@given(data=st.data())
def test_random_graphs_f32(op, data):
    check_op(data, op)


@pytest.mark.parametrize("dtypes", OTHER_DTYPES, ids="-".join)
@pytest.mark.parametrize("op", INDEX_OPS)
@settings(max_examples=5)
@given(data=st.data())
def test_random_graphs_other_dtypes(op, dtypes, data):
    check_op(data, op, dtypes)


@pytest.mark.slow
@pytest.mark.parametrize("dtypes", [("f32", "i64")] + OTHER_DTYPES, ids="-".join)
@pytest.mark.parametrize("op", INDEX_OPS)
@settings(max_examples=200)
@given(data=st.data())
def test_random_graphs_thorough(op, dtypes, data):
    check_op(data, op, dtypes, max_size=9)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "int8", "bool", "float64"])
def test_take_every_dtype_and_axis(dtype):
    rng = np.random.default_rng(0)
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    x = (rng.standard_normal((3, 5, 4)) * 3).astype(dt)
    idx = rng.integers(0, 5, (2, 3))
    for axis in (0, 1, 2, -1):
        n = x.shape[axis]
        g = trace(lambda x, i: sc.ops.take(x, i, axis=axis), (x.shape, dtype), (idx.shape, "int32"))
        check_graph(g, [x, (idx % n).astype(np.int32)], "sc.take")


def test_large_embedding_gather_runs_on_threads():
    rng = np.random.default_rng(1)
    table = Parameter(rng.standard_normal((1000, 512)).astype(np.float32))
    ids = rng.integers(0, 1000, (3, 90))  # 270 rows of 2 KiB: above the parallel threshold
    g = trace(lambda ids: sc.ops.embedding(ids, table), (("batch", "seq"), "int64"))
    check_graph(g, [ids], "sc.embedding")


def test_scatter_last_write_wins_and_adds_accumulate():
    base = np.zeros((2, 4), np.float32)
    idx = np.array([[1, 1, 3], [0, 0, 0]])
    upd = np.arange(6, dtype=np.float32).reshape(2, 3)
    for op, name in ((sc.ops.scatter, "sc.scatter"), (sc.ops.scatter_add, "sc.scatter_add")):
        g = trace(lambda b, i, u: op(b, i, u, axis=1), (base.shape, "float32"), (idx.shape, "int64"),
                  (upd.shape, "float32"))
        check_graph(g, [base, idx, upd], name)


def test_index_add_duplicates_in_f16():
    base = np.ones((3, 4), np.float16)
    src = np.full((3, 5), 0.1, np.float16)
    index = np.array([0, 2, 2, 2, 1])
    g = trace(lambda b, i, s: sc.ops.index_add(b, i, s, axis=1), (base.shape, "float16"), ((5,), "int64"),
              (src.shape, "float16"))
    check_graph(g, [base, index, src], "sc.index_add")


@pytest.mark.parametrize("make, what", [
    (lambda: (trace(lambda x, i: sc.ops.take(x, i, axis=1), ((2, 5), "float32"), ((3,), "int64")),
              [np.zeros((2, 5), np.float32), np.array([0, 5, 1])]), r"sc\.take.*index 5 is out of range \[0, 5\)"),
    (lambda: (trace(lambda x, i: sc.ops.take(x, i), ((4,), "float32"), ((2,), "int8")),
              [np.zeros(4, np.float32), np.array([1, -1], np.int8)]), r"sc\.take.*index -1 is out of range"),
    (lambda: (trace(lambda i: sc.ops.embedding(i, Parameter(np.zeros((6, 2), np.float32))), ((2,), "int64")),
              [np.array([6, 0])]), r"sc\.embedding.*index 6 is out of range \[0, 6\) for an embedding table"),
    (lambda: (trace(lambda x, i: sc.ops.take_along_axis(x, i, 0), ((3, 2), "float32"), ((1, 2), "int64")),
              [np.zeros((3, 2), np.float32), np.array([[0, 3]])]), r"sc\.take_along_axis.*index 3"),
    (lambda: (trace(lambda b, i, u: sc.ops.scatter(b, i, u, 0), ((3,), "float32"), ((2,), "int64"),
                    ((2,), "float32")),
              [np.zeros(3, np.float32), np.array([0, 9]), np.ones(2, np.float32)]), r"sc\.scatter.*index 9"),
    (lambda: (trace(lambda b, i, u: sc.ops.scatter_add(b, i, u, 0), ((3,), "float32"), ((2,), "int64"),
                    ((2,), "float32")),
              [np.zeros(3, np.float32), np.array([-2, 0]), np.ones(2, np.float32)]), r"sc\.scatter_add.*index -2"),
    (lambda: (trace(lambda b, i, s: sc.ops.index_add(b, i, s), ((3, 2), "float32"), ((1,), "int64"),
                    ((1, 2), "float32")),
              [np.zeros((3, 2), np.float32), np.array([3]), np.ones((1, 2), np.float32)]), r"sc\.index_add.*index 3"),
    (lambda: (trace(lambda i: sc.ops.one_hot(i, 4), ((3,), "int64"),), [np.array([0, 4, 1])]),
     r"sc\.one_hot.*index 4 is out of range \[0, 4\) for one_hot of depth 4"),
])
def test_index_out_of_range_is_an_error_naming_the_op(make, what):
    g, inputs = make()
    with pytest.raises(IndexError, match=what):
        run_kernels(g, *inputs)
