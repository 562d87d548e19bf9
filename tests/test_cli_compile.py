"""The compiler's command line: compile, run, generate, bench, show on .spc, demo."""
import numpy as np
import pytest
from click.testing import CliRunner

import sparsec as sc
from sparsec.cli import main
from sparsec.fileio import write_weights


@pytest.fixture(scope="module")
def moe_mlir(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    moe = sc.nn.MoE(hidden=16, ffn=24, num_experts=4, top_k=2, seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 16), "float32"))
    (d / "moe.mlir").write_text(str(g))
    write_weights(str(d / "moe.safetensors"), g.weights)
    return d, g


def test_compile_run_and_show(moe_mlir):
    d, g = moe_mlir
    spc = str(d / "moe.spc")
    r = CliRunner().invoke(main, ["compile", str(d / "moe.mlir"), "-o", spc])
    assert r.exit_code == 0, r.output
    assert "fuse-elementwise" in r.output and "kernels" in r.output
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    np.save(d / "x.npy", x)
    r = CliRunner().invoke(main, ["run", spc, "--input", f"x={d / 'x.npy'}", "--output", str(d / "y.npz")])
    assert r.exit_code == 0, r.output
    (want,) = sc.interpret(g, x)
    got = np.load(d / "y.npz")["out0"]
    assert sc.testing.compare_outputs((want,), (got,), rtol=0, atol=1e-4) is None
    r = CliRunner().invoke(main, ["show", spc])
    assert r.exit_code == 0 and "sc.moe_gated_grouped_matmul" in r.output and "4 experts each" in r.output


def test_run_input_errors(moe_mlir):
    d, _ = moe_mlir
    spc = str(d / "moe2.spc")
    assert CliRunner().invoke(main, ["compile", str(d / "moe.mlir"), "-o", spc]).exit_code == 0
    np.save(d / "bad.npy", np.zeros((3, 7), np.float32))
    for args, words in [([], "missing --input for x"), (["--input", "y=a.npy"], "has no input 'y'"),
                        (["--input", "x"], "expected NAME=FILE.npy"),
                        (["--input", f"x={d / 'nope.npy'}"], "cannot read"),
                        (["--input", f"x={d / 'bad.npy'}"], "dim 1 must be 16")]:
        r = CliRunner().invoke(main, ["run", spc, *args, "--output", str(d / "o.npz")])
        assert r.exit_code == 1 and words in r.output and "Traceback" not in r.output, r.output
        assert not (d / "o.npz").exists()


def test_compile_errors_write_nothing(moe_mlir, tmp_path):
    d, _ = moe_mlir
    out = tmp_path / "x.spc"
    cases = [(["-p", "nosuch"], "unknown pass"), (["--quantize", "q4_0", "-p", "quantize"],
                                                 "and a quantize pass in the pipeline")]
    from sparsec.runtime.cuda.device import availability
    if not availability()[0]:  # without a GPU (or the simulator) --target cuda is refused
        cases.append((["--target", "cuda"], "target 'cuda'"))
    for args, words in cases:
        r = CliRunner().invoke(main, ["compile", str(d / "moe.mlir"), "-o", str(out), *args])
        assert r.exit_code == 1 and words in r.output and "Traceback" not in r.output, r.output
        assert not out.exists()
    r = CliRunner().invoke(main, ["compile", str(d / "moe.mlir"), "-o", str(tmp_path / "x.bin")])
    assert r.exit_code == 1 and "must be a .spc" in r.output


def test_generate_from_a_compiled_lm(tmp_path):
    lm = sc.nn.CausalLM(vocab=40, hidden=16, layers=1, heads=2, ffn=24, seed=0)
    cm = sc.compile(lm, sc.TensorSpec(("batch", "seq"), "int64"), progress=False)
    spc = str(tmp_path / "lm.spc")
    cm.save(spc)
    r = CliRunner().invoke(main, ["generate", spc, "--ids", "1,2,3", "--max-new-tokens", "5"])
    assert r.exit_code == 0, r.output
    ids = [int(t) for t in r.output.strip().split(",")]
    assert ids == cm.generate(np.array([[1, 2, 3]]), 5)[0].tolist() and len(ids) == 8
    r = CliRunner().invoke(main, ["generate", spc, "--ids", "1,x"])
    assert r.exit_code == 1 and "comma-separated integers" in r.output


def test_bench_reports_both(moe_mlir):
    d, _ = moe_mlir
    r = CliRunner().invoke(main, ["bench", str(d / "moe.mlir"), "--tokens", "1", "--tokens", "7", "--repeat", "3"])
    assert r.exit_code == 0, r.output
    assert "tokens=1 " in r.output and "tokens=7 " in r.output and r.output.count("check: ok") == 2
    r = CliRunner().invoke(main, ["bench", str(d / "moe.mlir"), "--vs", "torch"])
    assert r.exit_code == 1 and "benchmarks/bench.py" in r.output


def test_demo_runs_and_checks():
    r = CliRunner().invoke(main, ["demo"])
    assert r.exit_code == 0, r.output
    for words in ("passes (sparse-activation,", "moe blocks rewritten", "match the interpreter",
                  "identical to step-by-step interpreter recomputation", "faster"):
        assert words in r.output, r.output
