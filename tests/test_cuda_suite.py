"""Runs the CUDA test modules (``tests/test_cuda_*.py`` that start with the CUDA test-process
guard of ``sparsec.lower.cuda.testing``) in their own pytest process under numba's CUDA
simulator: the simulator must be switched on before numba.cuda is imported, and switching it on
in this process would change ``target="cuda"`` for every other test. Fails, with the child's
report, when any of them fails."""
import os
import subprocess
import sys

from sparsec.lower.cuda.testing import CUDA_TESTS_ENV, cuda_test_files

HERE = os.path.dirname(os.path.abspath(__file__))


def test_cuda_modules_under_the_simulator(request):
    files = cuda_test_files(HERE)
    assert files, "no CUDA test modules found"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", **{CUDA_TESTS_ENV: "sim"})
    markexpr = request.config.getoption("markexpr") or "not slow"
    # one process per module, so no module sees another's state. (The intermittent wrong results
    # once blamed on sharing a process were a race in the simulator's shared-array allocation,
    # fixed in runtime/cuda/launch.py: see docs/architecture.md "CUDA target".)
    failures = []
    for f in files:
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", markexpr, "-W", "ignore", f]
        r = subprocess.run(cmd, cwd=os.path.dirname(HERE), env=env, capture_output=True, text=True, timeout=1200)
        last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        if r.returncode != 0 or " passed" not in r.stdout or " skipped" in last:
            failures.append(f"{' '.join(cmd)}:\n{r.stdout[-6000:]}{r.stderr[-2000:]}")
    assert not failures, "CUDA simulator tests failed:\n" + "\n".join(failures)
