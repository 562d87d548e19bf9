"""Every script in examples/ runs to completion (each capability brings its example)."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))


@pytest.mark.parametrize("script", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    r = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True, timeout=300,
                       cwd=str(tmp_path))
    assert r.returncode == 0, f"{os.path.basename(script)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"


def test_committed_tiny_moe_ir_is_current(tmp_path):
    """examples/tiny_moe.mlir (used by the README quickstart) is what trace_moe.py produces now."""
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "trace_moe.py"), str(tmp_path)], check=True,
                   capture_output=True)
    with open(os.path.join(ROOT, "examples", "tiny_moe.mlir")) as f:
        committed = f.read()
    assert (tmp_path / "tiny_moe.mlir").read_text() == committed, \
        "regenerate with: python examples/trace_moe.py"
