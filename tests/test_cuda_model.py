"""A small Llama-style causal LM compiled for target "cuda": forward against the interpreter,
greedy generation with the KV cache on the device against the CPU target, and the .spc
artifact round trip. Runs in the CUDA test process (``cuda_test_process``)."""
from sparsec.lower.cuda.testing import cuda_test_process

MODE = cuda_test_process()

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.runtime.cuda.executable import CudaExecutable  # noqa: E402

SPEC = sc.TensorSpec(("batch", "seq"), "int64")


@pytest.fixture(scope="module")
def lm():
    return sc.nn.CausalLM(vocab=32, hidden=16, layers=1, heads=2, kv_heads=1, ffn=24, seed=0)


@pytest.fixture(scope="module")
def compiled(lm):
    return sc.compile(lm, SPEC, target="cuda", progress=False)


def test_forward_matches_the_interpreter(lm, compiled):
    assert compiled.target == "cuda"
    assert all(isinstance(ex, CudaExecutable) for ex in compiled.executables.values())
    ids = np.array([[5, 17, 2], [1, 0, 31]], np.int64)
    (want,) = sc.interpret(sc.trace(lm, SPEC), ids)
    got = compiled(ids)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    # the main and decode functions share the weights uploaded once
    main, dec = compiled.executables["main"], compiled.executables["decode"]
    assert main.weights is dec.weights


def test_generate_keeps_the_cache_on_the_device(lm, compiled, monkeypatch):
    ids = np.array([[5, 17, 2]], np.int64)
    cpu = sc.compile(lm, SPEC, progress=False)
    want = cpu.generate(ids, 3)
    dec = compiled.executables["decode"]
    copied = []
    orig = dec.call

    def spy(*arrays, to_host=True):
        assert all(not isinstance(a, np.ndarray) for a in arrays[2:]), "caches must be device arrays"
        out = orig(*arrays, to_host=to_host)
        copied.append([isinstance(o, np.ndarray) for o in out])
        return out
    monkeypatch.setattr(dec, "call", spy)
    got = compiled.generate(ids, 3)
    np.testing.assert_array_equal(got, want)
    assert copied and all(c[0] and not any(c[1:]) for c in copied), copied  # only the logits come back


def test_warmup_runs_every_function_with_strided_caches(compiled):
    steps = []
    for ex in compiled.executables.values():
        ex.warmup(progress=steps.append, force=True)
    assert len(steps) == sum(len(ex.plan.steps) for ex in compiled.executables.values())


def test_artifact_round_trip(compiled, tmp_path):
    path = str(tmp_path / "lm.spc")
    compiled.save(path)
    back = sc.load(path)
    assert back.target == "cuda" and isinstance(back.executables["main"], CudaExecutable)
    ids = np.array([[3, 4]], np.int64)
    np.testing.assert_array_equal(back(ids), compiled(ids))


def test_cli_compile_and_run_for_cuda(lm, tmp_path):
    from click.testing import CliRunner

    from sparsec.cli import main
    from sparsec.fileio import weights_path_for, write_weights
    g = sc.trace(lm, SPEC)
    mlir = tmp_path / "lm.mlir"
    mlir.write_text(str(g))
    write_weights(weights_path_for(str(mlir)), g.weights)
    spc, ids, out = tmp_path / "lm.spc", tmp_path / "ids.npy", tmp_path / "out.npz"
    r = CliRunner().invoke(main, ["compile", str(mlir), "-o", str(spc), "--target", "cuda"])
    assert r.exit_code == 0, r.output
    np.save(ids, np.array([[4, 9, 1]], np.int64))
    r = CliRunner().invoke(main, ["run", str(spc), "--input", f"input_ids={ids}", "--output", str(out)])
    assert r.exit_code == 0, r.output
    (want,) = sc.interpret(g, np.load(ids))
    got = np.load(out)
    got = got[got.files[0]]
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_emit_ptx_under_the_simulator_says_why_not(lm, tmp_path):
    """The simulator replaces numba.cuda's compiler: a clear error, not numba's traceback (on a
    device the PTX is written)."""
    if MODE == "sim":
        with pytest.raises(sc.errors.SparsecError, match="simulator"):
            sc.compile(lm, SPEC, target="cuda", emit_ptx=str(tmp_path / "ptx"), progress=False)
        assert not (tmp_path / "ptx").exists() or not any((tmp_path / "ptx").iterdir())
    else:
        cm = sc.compile(lm, SPEC, target="cuda", emit_ptx=str(tmp_path / "ptx"), progress=False)
        assert cm.report["ptx"] and all(r.ptxas != "" for r in cm.report["ptx"])
