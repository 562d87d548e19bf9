"""The CUDA target without a GPU, in the main test process (simulator off): PTX for sm_90 of
every kernel, assembled with ptxas; the clear error when there is no device; the CLI's
``--target cuda`` and ``--emit-ptx``."""
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import sparsec as sc
from sparsec.cli import main
from sparsec.compiler import CompileError
from sparsec.fileio import weights_path_for, write_weights

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed (pip install 'sparsec[cuda]')")

from sparsec.runtime.cuda import ptx as P  # noqa: E402
from sparsec.runtime.cuda.device import availability  # noqa: E402
from sparsec.runtime.cuda.launch import simulator  # noqa: E402

SPEC = sc.TensorSpec(("batch", "seq"), "int64")


def ran_without_simulator(request) -> bool:
    """When the simulator is on in this process (another module switched it on before numba.cuda
    was imported), run this test in a child process without it; True when it ran there."""
    if not simulator():
        return False
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    env.pop("SPARSEC_CUDA_TESTS", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", "-rs",
           f"{__file__}::{request.node.name}"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{' '.join(cmd)} (without the simulator) failed:\n{r.stdout[-6000:]}{r.stderr[-2000:]}"
    return True


def _nvvm_reason() -> str | None:
    """Why compile_ptx cannot work here (no NVVM/NVRTC), or None."""
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib
        for lib in ("nvvm", "nvrtc"):
            load_nvidia_dynamic_lib(lib)
    except Exception as e:  # noqa: BLE001 - any failure to find the library is the reason
        return f"libnvvm/libnvrtc not found ({type(e).__name__}: {e}); pip install 'sparsec[cuda]' or a CUDA 13 toolkit"
    return None


def _lm():
    return sc.nn.CausalLM(vocab=32, hidden=16, layers=1, heads=2, kv_heads=1, ffn=24, seed=0)


def _all_groups(x, w, ids, m):
    """One graph over every CUDA op group of this module's kernels."""
    h = sc.ops.linear(x, w)
    s = sc.ops.softmax(h, -1) + sc.ops.log_softmax(h, 0)
    v, i = sc.ops.topk(s, 2)
    e = sc.ops.embedding(ids, w)
    return (sc.ops.sum(s, axis=0), sc.ops.max(s), sc.ops.argmax(s, axis=-1), v, i, e,
            sc.ops.matmul(x, sc.ops.transpose(x, (1, 0))), sc.ops.layer_norm(h, eps=1e-5),
            sc.ops.one_hot(ids, 4), sc.ops.take_along_axis(s, i, axis=1), sc.ops.scatter_add(s, i, v, axis=1),
            sc.ops.index_add(w, ids, e, axis=0), sc.ops.where(m, sc.ops.cast(ids, "float32"), 0.0),
            sc.ops.concat([x, x], axis=0), sc.ops.stack([x, x], axis=1), sc.ops.div(ids, ids + 1),
            sc.ops.cumsum(x, 1), sc.ops.matmul(sc.ops.reshape(ids, (3, 1)), sc.ops.reshape(ids, (1, 3))),
            sc.ops.conv2d(sc.ops.reshape(x, (1, 1, 3, 8)), sc.ops.reshape(w, (2, 1, 4, 4)),
                                               padding=1))


def test_ptx_for_every_kernel_assembles(tmp_path, request):
    if ran_without_simulator(request):
        return
    reason = _nvvm_reason()
    if reason:
        pytest.skip(reason)
    cm = sc.compile(_lm(), SPEC, target="cuda", emit_ptx=str(tmp_path / "lm"), progress=False)
    specs = [sc.TensorSpec((3, 8), "float32"), sc.TensorSpec((4, 8), "float32"), sc.TensorSpec((3,), "int64"),
             sc.TensorSpec((3,), "bool")]
    cm2 = sc.compile(sc.trace(_all_groups, *specs), target="cuda", emit_ptx=str(tmp_path / "ops"), progress=False)
    results = cm.report["ptx"] + cm2.report["ptx"]
    kernels = {r.name.rsplit("__", 1)[0] for r in results}
    for prefix in ("grouped_gemv_float32", "grouped_gemm_float32"):    # sc.linear
        assert any(k.startswith(prefix) for k in kernels), (prefix, sorted(kernels))
    for want in ("gemm_t16_float32", "attention_float32_d32_A", "kv_write_4d_A", "rope_elems",
                 "rms_norm_rows", "gather_rows", "strided_copy", "softmax_block", "softmax_serial", "argmax_block",
                 "reduce_serial", "reduce_block_f", "topk_serial", "layer_norm_rows_float32", "one_hot", "gather_along",
                 "scatter_cols", "index_add_cols", "cumsum_cols", "conv2d_float32", "gemm_t16_int64"):
        assert want in kernels, (want, sorted(kernels))
    assert any(k.startswith("elementwise_") for k in kernels)
    n_steps = sum(len(ex.plan.steps) for m in (cm, cm2) for ex in m.executables.values())
    assert len(results) >= 20 and n_steps > len(results)  # distinct kernels, not one per step
    for r in results:
        text = open(r.path).read()
        assert ".target sm_90" in text and ".entry" in text, r.path
    if P.find_ptxas() is None:
        pytest.skip("PTX written and checked; ptxas not found (CUDA toolkit or nvidia-cuda-nvcc), not assembled")
    bad = [(r.name, r.ptxas) for r in results if r.ptxas != "ok"]
    assert not bad, bad
    # what ptxas -v reports: every kernel within sm_90's limits (255 registers a thread, 48 KB of
    # static shared memory a block), none spilling registers to local memory
    for r in results:
        assert 1 <= r.registers <= 255 and 0 <= r.shared_bytes <= 48 * 1024, (r.name, r.resources())
        assert r.spill_bytes == 0, (r.name, r.resources())
    assert f"{results[0].registers} registers" in P.format_ptx_report(results, str(tmp_path))


def test_ptxas_resources_are_read_from_its_report():
    info = ("ptxas info    : Compiling entry function 'k' for 'sm_90'\n"
            "ptxas info    : Function properties for k\n"
            "    24 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads\n"
            "ptxas info    : Used 72 registers, used 1 barriers, 2064 bytes smem, 488 bytes cmem[0]\n")
    assert P.ptxas_resources(info) == {"registers": 72, "spill_bytes": 8, "shared_bytes": 2064}
    # no shared memory, no spills: ptxas leaves the figures out or reports 0
    info = "ptxas info    : Used 28 registers, used 0 barriers, 400 bytes cmem[0]\n"
    assert P.ptxas_resources(info) == {"registers": 28, "spill_bytes": 0, "shared_bytes": 0}
    r = P.PtxResult("k__1", "k__1.ptx", "ok", "sc.linear", 72, 8, 2064)
    assert "72 registers, 8 B spilled, 2064 B shared" in P.format_ptx_report([r], "out")
    assert "1 of them spill registers to local memory" in P.format_ptx_report([r], "out")


@pytest.fixture()
def lm_mlir(tmp_path):
    g = sc.trace(_lm(), SPEC)
    path = tmp_path / "lm.mlir"
    path.write_text(str(g))
    write_weights(weights_path_for(str(path)), g.weights)
    return path


def test_cli_emit_ptx(lm_mlir, tmp_path, request):
    if ran_without_simulator(request):
        return
    if _nvvm_reason():
        pytest.skip(_nvvm_reason())
    out = tmp_path / "ptx"
    r = CliRunner().invoke(main, ["compile", str(lm_mlir), "--target", "cuda", "--emit-ptx", str(out)])
    assert r.exit_code == 0, r.output
    files = sorted(os.listdir(out))
    assert any(f.startswith("attention_float32_d32") for f in files) and all(f.endswith(".ptx") for f in files)
    assert f"wrote {len(files)} PTX files (sm_90)" in r.output
    r = CliRunner().invoke(main, ["compile", str(lm_mlir), "--emit-ptx", str(out)])
    assert r.exit_code == 1 and "--emit-ptx needs --target cuda" in r.output


def test_emit_ptx_into_a_directory_it_cannot_create(lm_mlir, tmp_path):
    """An --emit-ptx directory that cannot be made is refused before any work, naming it."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    bad = str(blocker / "ptx")          # under a regular file: cannot be created
    with pytest.raises(CompileError, match=r"emit_ptx: cannot create the directory .*a_file/ptx"):
        sc.compile(_lm(), SPEC, target="cuda", emit_ptx=bad, progress=False)
    r = CliRunner().invoke(main, ["compile", str(lm_mlir), "--target", "cuda", "--emit-ptx", bad])
    assert r.exit_code == 1 and "cannot create the directory" in r.output and "a_file/ptx" in r.output, r.output
    assert "Traceback" not in r.output


def test_no_device_gives_a_clear_error(lm_mlir, tmp_path, request):
    if ran_without_simulator(request):
        return
    if availability()[0]:
        pytest.skip(f"a CUDA device is available here: {availability()[1]}")
    with pytest.raises(CompileError, match=r"no CUDA device.*NUMBA_ENABLE_CUDASIM=1.*--emit-ptx"):
        sc.compile(_lm(), SPEC, target="cuda", progress=False)
    spc = tmp_path / "m.spc"
    r = CliRunner().invoke(main, ["compile", str(lm_mlir), "-o", str(spc), "--target", "cuda"])
    assert r.exit_code == 1 and "target 'cuda'" in r.output and "NUMBA_ENABLE_CUDASIM=1" in r.output, r.output
    assert "Traceback" not in r.output and not spc.exists()
    r = CliRunner().invoke(main, ["compile", str(lm_mlir), "-o", str(spc), "--target", "cuda", "--emit-ptx",
                                  str(tmp_path / "ptx")])
    assert r.exit_code == 1 and "--emit-ptx without -o needs none" in r.output, r.output
    assert "Traceback" not in r.output and not spc.exists()
    # an artifact compiled for cuda (here through --emit-ptx, which needs no device) refuses to load
    if not _nvvm_reason():
        cm = sc.compile(_lm(), SPEC, target="cuda", emit_ptx=str(tmp_path / "p"), progress=False)
        cm.save(str(spc))
        with pytest.raises(CompileError, match="compiled for target 'cuda'.*no CUDA device"):
            sc.load(str(spc))
        with pytest.raises(sc.errors.SparsecError, match="no CUDA device"):
            cm(np.array([[1, 2]], np.int64))


def test_every_op_the_cpu_lowers_has_a_cuda_rule():
    """Issue 8's first requirement, kept: the two targets lower the same ops."""
    import importlib
    for target in ("cpu", "cuda"):  # registers the rules
        importlib.import_module(f"sparsec.lower.{target}")
    from sparsec.ir.opdef import REGISTRY
    cpu = {n for n, d in REGISTRY.items() if "cpu" in d.lowerings}
    gpu = {n for n, d in REGISTRY.items() if "cuda" in d.lowerings}
    assert cpu and cpu == gpu, {"cpu only": sorted(cpu - gpu), "cuda only": sorted(gpu - cpu)}
