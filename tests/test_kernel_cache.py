"""The on-disk cache of generated kernels: keys, memory/disk hits, two processes compiling the
same kernel at once, corrupted module and Numba cache files, unusable directories."""
import multiprocessing as mp
import os
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from sparsec.errors import SparsecError
from sparsec.lower import codegen
from sparsec.runtime import kernel_cache as kc


def _program(c: float) -> codegen.Program:
    """``y = x * c + 1`` on float32: a fresh kernel for every new constant."""
    nodes = [codegen.Node("input", (0,), "f32"), codegen.Node("const", (), "f32", c),
             codegen.Node("sc.mul", (0, 1), "f32"), codegen.Node("const", (), "f32", 1.0),
             codegen.Node("sc.add", (2, 3), "f32")]
    return codegen.Program(1, [("f32", (True,))], nodes, [4])


def _run(prog) -> np.ndarray:
    src = codegen.generate(prog)
    k = kc.compile_function(src, "kser", codegen.numba_signature(prog))
    x = np.arange(10, dtype=np.float32)
    y = np.empty_like(x)
    k(10, x, y)
    return y


@pytest.fixture
def cache(tmp_path):
    d = tmp_path / "kernels"
    kc.set_cache_dir(d)
    kc.clear_memory()
    kc.reset_stats()
    yield d
    kc.set_cache_dir(None)
    kc.clear_memory()


def test_key_depends_on_source_and_host():
    a = codegen.generate(_program(2.0))
    b = codegen.generate(_program(3.0))
    assert kc.kernel_key(a) == kc.kernel_key(a) != kc.kernel_key(b)
    fp = kc.host_fingerprint()
    import llvmlite
    import numba
    from llvmlite import binding as llvm
    assert llvm.get_host_cpu_name() in fp and numba.__version__ in fp and llvmlite.__version__ in fp


def test_directory_precedence(tmp_path, monkeypatch):
    kc.set_cache_dir(None)
    monkeypatch.setenv(kc.ENV_VAR, str(tmp_path / "from_env"))
    assert kc.cache_dir() == tmp_path / "from_env"
    kc.set_cache_dir(tmp_path / "explicit")
    assert kc.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv(kc.ENV_VAR)
    kc.set_cache_dir(None)
    assert kc.cache_dir() == Path("~/.cache/sparsec/kernels").expanduser()
    kc.set_cache_dir(None)


def test_memory_and_disk_hits(cache):
    c = random.random()
    prog = _program(c)
    np.testing.assert_allclose(_run(prog), np.arange(10, dtype=np.float32) * np.float32(c) + 1, rtol=1e-6)
    s = kc.stats()
    assert s["misses"] == 1 and s["compiles"] == 1
    files = list(cache.glob("sck_*.py"))
    assert len(files) == 1 and files[0].read_text() == codegen.generate(prog)
    assert _numba_files(files[0], files[0].stem + ".kser-*.nbi")
    _run(prog)  # same process: nothing new
    assert kc.stats()["misses"] == 1 and kc.stats()["compiles"] == 1
    kc.load_module(codegen.generate(prog))
    assert kc.stats()["memory_hits"] >= 1
    kc.clear_memory()  # as a new process would: module from disk, machine code from Numba's cache
    _run(prog)
    s = kc.stats()
    assert s["disk_hits"] == 1 and s["numba_cache_loads"] == 1 and s["compiles"] == 1


def _worker(args):
    d, c, barrier = args
    from sparsec.runtime import kernel_cache as k
    k.set_cache_dir(d)
    prog = _program(c)
    barrier.wait(timeout=60)
    y = _run(prog)
    return y.tolist(), k.stats()


def test_two_processes_compile_the_same_kernel_at_once(cache):
    c = random.random()
    ctx = mp.get_context("spawn")
    with ctx.Manager() as m:
        barrier = m.Barrier(2)
        with ctx.Pool(2) as pool:
            results = pool.map(_worker, [(str(cache), c, barrier)] * 2)
    expected = (np.arange(10, dtype=np.float32) * np.float32(c) + 1).tolist()
    for y, stats in results:
        assert y == expected
        assert stats["misses"] + stats["disk_hits"] == 1
    files = list(cache.glob("sck_*.py"))
    assert len(files) == 1 and files[0].read_text() == codegen.generate(_program(c))
    assert not [p for p in cache.rglob("*") if ".tmp" in p.name]
    # a third "process" finds everything on disk
    kc.clear_memory()
    kc.reset_stats()
    assert _run(_program(c)).tolist() == expected
    assert kc.stats()["compiles"] == 0 and kc.stats()["numba_cache_loads"] == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupted_module_file_is_rewritten(cache, damage):
    prog = _program(random.random())
    good = _run(prog)
    (f,) = cache.glob("sck_*.py")
    text = f.read_text()
    f.write_text({"truncate": text[: len(text) // 2], "garbage": "\x00\x01 not python (((", "empty": ""}[damage])
    kc.clear_memory()
    kc.reset_stats()
    np.testing.assert_array_equal(_run(prog), good)
    assert kc.stats()["repairs"] >= 1
    assert f.read_text() == text


@pytest.mark.parametrize("which", ["nbi", "nbc"])
def test_corrupted_numba_cache_is_recompiled(cache, which):
    prog = _program(random.random())
    good = _run(prog)
    (f,) = cache.glob("sck_*.py")
    (victim,) = _numba_files(f, f"{f.stem}.kser-*.{which}")
    victim.write_bytes(b"\x80\x04garbage" + os.urandom(64))
    kc.clear_memory()
    kc.reset_stats()
    np.testing.assert_array_equal(_run(prog), good)
    s = kc.stats()
    assert s["repairs"] == 1 and s["compiles"] == 1
    kc.clear_memory()  # the rebuilt entry loads cleanly
    kc.reset_stats()
    _run(prog)
    assert kc.stats()["numba_cache_loads"] == 1 and kc.stats()["repairs"] == 0


def test_corrupted_cache_of_a_handwritten_kernel(tmp_path):
    """``compile_dispatcher`` (hand-written kernels) deletes a damaged Numba cache entry too."""
    import importlib.util
    mod_path = tmp_path / "handmade_kernel.py"
    mod_path.write_text("from numba import njit\n\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n")

    def load():
        spec = importlib.util.spec_from_file_location(f"handmade_{random.random():.9f}".replace(".", ""), mod_path)
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        return m
    from numba import types
    kc.compile_dispatcher(load().twice, types.int64(types.int64))
    (nbi,) = _numba_files(mod_path, "handmade_kernel.twice-*.nbi")
    nbi.write_bytes(b"garbage")
    kc.reset_stats()
    m = load()
    kc.compile_dispatcher(m.twice, types.int64(types.int64))
    assert m.twice(21) == 42 and kc.stats()["repairs"] == 1


def test_unwritable_directory_falls_back_with_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    kc.set_cache_dir(blocker / "kernels")  # cannot be created, even by root
    monkeypatch.setattr(kc, "fallback_cache_dir", lambda: tmp_path / "fallback")
    kc.clear_memory()
    try:
        with pytest.warns(kc.KernelCacheWarning, match="not usable"):
            d = kc.cache_dir()
        assert d == tmp_path / "fallback"
        prog = _program(random.random())
        _run(prog)
        assert list(d.glob("sck_*.py"))
        # no usable directory at all: a clear error
        kc.set_cache_dir(blocker / "kernels")
        monkeypatch.setattr(kc, "fallback_cache_dir", lambda: blocker / "fb")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(SparsecError, match="SPARSEC_CACHE_DIR"):
                kc.cache_dir()
    finally:
        kc.set_cache_dir(None)
        kc.clear_memory()


def test_generated_kernels_go_through_the_cache(cache):
    from test_cpu_elementwise import T, graph_of

    from sparsec.lower.cpu import lower_op
    g = graph_of("sc.sub", [T(("n", 3), "f32"), T((3,), "f32")])
    k = lower_op(g.main.ops[0])
    assert k.impl == "generated" and Path(kc.cache_dir(), f"sck_{k.info['key']}.py").exists()
    assert sys.modules[f"sparsec_kernel_{k.info['key']}"]


def _numba_files(module_path, pattern):
    """Numba's cache files of a module: beside it in __pycache__, or under NUMBA_CACHE_DIR."""
    from pathlib import Path
    return [p for d in kc._numba_cache_dirs(Path(module_path)) for p in d.glob(pattern)]
