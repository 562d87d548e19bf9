"""``benchmarks/cuda_check.py --simulate``: the device check's own code (compiling each variant,
the correctness check against the interpreter, timing with and without replayed launches, the
table) runs on numba's CUDA simulator with a tiny layer, so a GPU session is not spent on a
script that breaks. (It starts itself again with the simulator on: this runs in the main test
process.)"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "cuda_check.py")


def run(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def check_rows(out: str, modes, tokens) -> None:
    for mode in modes:
        for t in tokens:
            for how in ("launches", "replayed"):
                row = re.search(rf"^tiny .*\s{t} sparsec {mode} {how}\s+([0-9.]+)\s.*$", out, re.M)
                assert row, f"no timed row for {mode} {how} at {t} tokens:\n{out}"
                if how == "replayed":
                    assert "7 launches" in row.group(0) and "simulator" in row.group(0), row.group(0)
                    # followed by the per-launch profile
                    following = out[row.end():].lstrip("\n").splitlines()[0]
                    assert following.strip().startswith("each launch alone") and "grouped_gemv" in following
    for bad in ("error:", "WRONG", "failed:", "not lowered", "Traceback"):
        assert bad not in out, out


def test_dry_run_one_token():
    r = run("--simulate", "--repeat", "1", "--tokens", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    check_rows(r.stdout, ("fp32", "bf16", "q8_0"), (1,))


@pytest.mark.slow
def test_dry_run_every_default_case():
    r = run("--simulate", "--repeat", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    check_rows(r.stdout, ("fp32", "bf16", "q8_0"), (1, 3))


def test_bad_options_are_refused_with_the_reason():
    r = run("--simulate", "--modes", "fp8")
    assert r.returncode == 2 and "--modes: unknown fp8" in r.stderr
    r = run("--simulate", "--tokens", "one")
    assert r.returncode == 2 and "--tokens: expected whole numbers" in r.stderr
