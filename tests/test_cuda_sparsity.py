"""CUDA kernel of ``sc.sparse_input_linear`` (``sparsec/lower/cuda/sparsity.py``) against the
reference interpreter under numba's CUDA simulator: thresholds that skip some, none and all
inputs, rows over several passes of the kernel's row chunk, NaN / inf inputs (never skipped),
f32 and f64, and the PTX of the kernel."""
from sparsec.lower.cuda.testing import cuda_test_process

MODE = cuda_test_process()

import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_cuda_moe import run_ptx_script, sum_order_bound  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.frontend.tracer import Parameter  # noqa: E402
from sparsec.lower.cuda.testing import run_cuda  # noqa: E402


def graph(w, threshold, rows_dims=("rows",)):
    wp = Parameter(w)
    return sc.trace(lambda x: sc.ops.sparse_input_linear(x, wp, threshold),
                    sc.TensorSpec(rows_dims + (w.shape[0],), w.dtype.name))


@settings(max_examples=6, deadline=None)
@given(m=st.sampled_from([0, 1, 3, 9]), k=st.integers(0, 12), n=st.integers(1, 11),
       threshold=st.sampled_from([0.0, 0.5, 1.0, 100.0]), dt=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 999))
def test_matches_the_reference(m, k, n, threshold, dt, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n)).astype(dt)
    x = rng.standard_normal((m, k)).astype(dt)
    g = graph(w, threshold)
    (got,) = run_cuda(g, x)
    (want,) = sc.interpret(g, x)
    assert got.dtype == want.dtype and got.shape == want.shape
    xs = np.where(np.abs(x) < threshold, 0, x)
    assert np.all(np.abs(got.astype(np.float64) - want) <= sum_order_bound(xs, w.T, dt))


def test_non_finite_inputs_are_never_skipped():
    w = np.ones((4, 3), np.float32)
    g = graph(w, 1e9, (2,))
    x = np.array([[np.nan, 0, 0, 0], [0.5, np.inf, 0, 0]], np.float32)
    (got,) = run_cuda(g, x)
    (want,) = sc.interpret(g, x)
    assert np.isnan(got[0]).all() and np.isinf(got[1]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


PTX_SCRIPT = r"""
import json, sys, tempfile
import numpy as np
import sparsec as sc
from sparsec.frontend.tracer import Parameter
from sparsec.lower.lowering import lower_function
from sparsec.runtime.cuda.ptx import emit_ptx
plans = []
for dt in ("float32", "float64"):
    w = Parameter(np.ones((8, 5), dt))
    g = sc.trace(lambda x: sc.ops.sparse_input_linear(x, w, 0.5), sc.TensorSpec(("rows", 8), dt))
    plans.append(lower_function(g, None, "cuda"))
with tempfile.TemporaryDirectory() as d:
    print(json.dumps([(r.name, r.ptxas, r.op) for r in emit_ptx(plans, d)]))
"""


def test_ptx():
    from sparsec.runtime.cuda.ptx import find_ptxas
    results = run_ptx_script(PTX_SCRIPT)
    assert sorted(n for n, _, _ in results) == ["sparse_input_linear_float32__1", "sparse_input_linear_float64__1"]
    for name, status, _ in results:
        assert status == "ok" if find_ptxas() else status.startswith("skipped"), (name, status)
