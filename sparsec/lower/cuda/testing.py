"""Helpers for tests of the CUDA target (under numba's simulator or on a device): run a graph's
main function through the CUDA plan and executable, and compare with the reference interpreter."""
from __future__ import annotations

import numpy as np


def run_cuda(graph, *arrays, function: str | None = None):
    """Lower ``function`` (default main) for CUDA and run it once; a tuple of NumPy arrays."""
    from ...runtime.cuda.executable import CudaExecutable
    from ..lowering import lower_function
    ex = CudaExecutable(lower_function(graph, function, "cuda"))
    return ex(*arrays)


def assert_matches_reference(graph, *arrays, rtol: float = 1e-4, exact: bool = False):
    """CUDA outputs vs ``sc.interpret``: same shapes and dtypes; floats within
    ``rtol * max(1, max|ref|)`` (DESIGN.md section 5), everything else exactly."""
    from ...interpreter import interpret
    ref = interpret(graph, *arrays)
    got = run_cuda(graph, *arrays)
    assert len(ref) == len(got)
    for i, (r, g) in enumerate(zip(ref, got)):
        r = np.asarray(r)
        assert g.shape == r.shape, f"output {i}: shape {g.shape}, reference {r.shape}"
        assert g.dtype == r.dtype, f"output {i}: dtype {g.dtype}, reference {r.dtype}"
        if r.dtype.kind == "f" and not exact:
            fin = np.isfinite(r)
            assert np.array_equal(np.isnan(g), np.isnan(r)), f"output {i}: NaNs differ"
            assert np.array_equal(g[~fin & ~np.isnan(r)], r[~fin & ~np.isnan(r)]), f"output {i}: infs differ"
            if fin.any():
                tol = rtol * max(1.0, float(np.max(np.abs(r[fin]))))
                err = float(np.max(np.abs(g[fin].astype(np.float64) - r[fin])))
                assert err <= tol, f"output {i}: max abs error {err:.3g} > {tol:.3g}"
        else:
            assert np.array_equal(g, r), f"output {i}: differs from the reference"
    return got


#: how the CUDA tests run: "sim" (numba's simulator; tests/test_cuda_suite.py starts a pytest
#: process with it) or "device" (a GPU; benchmarks/cuda_check.py)
CUDA_TESTS_ENV = "SPARSEC_CUDA_TESTS"


def cuda_test_process() -> str:
    """Call at the top of a CUDA test module. In the CUDA test process returns its mode
    ("sim" or "device"); elsewhere skips the module: the simulator must be switched on before
    numba.cuda is imported, and in the main test process it would also change what
    ``target="cuda"`` does for the other tests, so these tests run in their own process
    (``tests/test_cuda_suite.py`` runs them and fails when any of them fails)."""
    import os
    import sys

    import pytest
    mode = os.environ.get(CUDA_TESTS_ENV, "")
    if mode not in ("sim", "device"):
        pytest.skip("CUDA tests run in their own process (tests/test_cuda_suite.py under the simulator, "
                    "benchmarks/cuda_check.py on a GPU)", allow_module_level=True)
    from ...runtime.cuda.device import require_device
    from ...runtime.cuda.launch import simulator
    if mode == "sim" and not simulator():
        raise RuntimeError(f"{CUDA_TESTS_ENV}=sim needs NUMBA_ENABLE_CUDASIM=1 in the environment before Python "
                           f"starts")
    require_device("the CUDA tests")
    if simulator():
        # the simulator's barriers poll threads: a short switch interval makes them ~6x faster
        sys.setswitchinterval(2e-5)
    return mode


def cuda_test_files(tests_dir: str) -> list[str]:
    """The test modules that run in the CUDA test process (those calling ``cuda_test_process``)."""
    import glob
    import os
    out = []
    for p in sorted(glob.glob(os.path.join(tests_dir, "test_cuda_*.py"))):
        with open(p) as f:
            if "cuda_test_process()" in f.read():
                out.append(p)
    return out
