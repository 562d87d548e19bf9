"""The on-disk cache of generated kernels.

Generated kernel source (``sparsec.lower.codegen``) is written to the cache directory as one
module per kernel, ``sck_<key>.py``, where ``key`` is a SHA-256 of the source, the sparsec,
Numba, llvmlite and Python versions, the host CPU (name and feature flags, as LLVM reports them)
and the fingerprint of ``sparsec.runtime.cpu.numerics`` (whose helpers are inlined into the
kernels). The module's functions are ``@njit(cache=True)``, so Numba stores their machine code
next to it (``__pycache__/sck_<key>.<fn>-<line>.py311.{nbi,nbc}``); a second process, or a later
run, loads the module and the machine code instead of compiling.

Directory: ``set_cache_dir(path)`` > the ``SPARSEC_CACHE_DIR`` environment variable >
``~/.cache/sparsec/kernels``. If that directory cannot be created or written, the cache falls
back to ``<tmp>/sparsec-kernels-<uid>`` with a ``KernelCacheWarning`` (compiling still works; only
reuse across machines/users is lost); if the fallback is unwritable too, ``SparsecError``.

Concurrency: files are written to a unique temporary name and moved into place atomically
(``os.link``, which never replaces, or ``os.replace`` when repairing), so a reader never sees a
half-written module and two processes compiling the same kernel at once both succeed (Numba
writes its own cache files the same way). A module is executed from the source text the caller
holds, after checking that the file holds exactly that text.

Corruption: a module file whose bytes differ from the source (truncated, garbage) is rewritten.
Numba cache files that fail to load (garbage index or data) make the compile raise; the entry's
Numba files are deleted, the module is executed afresh and compiled again (``stats()['repairs']``).

In memory, modules and compiled dispatchers are kept per key, so a kernel is imported and
compiled once per process. ``stats()`` counts memory hits, disk hits (module file already there),
misses (module written), Numba compiles and Numba cache loads, for compile-time reports.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from ..errors import SparsecError

ENV_VAR = "SPARSEC_CACHE_DIR"
MODULE_PREFIX = "sck_"


class KernelCacheWarning(UserWarning):
    """The kernel cache directory is unusable; a temporary directory is used instead."""


@dataclass
class CacheStats:
    #: kernel modules found in this process's memory
    memory_hits: int = 0
    #: kernel modules found on disk (written by an earlier run or another process)
    disk_hits: int = 0
    #: kernel modules generated and written now
    misses: int = 0
    #: Numba compilations (machine code generated in this process)
    compiles: int = 0
    #: machine code loaded from Numba's on-disk cache
    numba_cache_loads: int = 0
    #: corrupted entries deleted and rebuilt
    repairs: int = 0


_STATS = CacheStats()
_LOCK = threading.RLock()
_explicit_dir: Path | None = None
_resolved_dir: Path | None = None
_MODULES: dict[str, ModuleType] = {}
_COMPILED: dict[tuple, object] = {}
_fingerprint: str | None = None


def stats() -> dict:
    """Counters since the process started (or ``reset_stats``)."""
    return asdict(_STATS)


def reset_stats() -> None:
    global _STATS
    _STATS = CacheStats()


def clear_memory() -> None:
    """Forget the in-memory modules and dispatchers (the next lookup goes to disk). For tests."""
    with _LOCK:
        for key in list(_MODULES):
            sys.modules.pop(_modname(key), None)
        _MODULES.clear()
        _COMPILED.clear()


# ---------------------------------------------------------------------------------------------
# the directory

def default_cache_dir() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/sparsec/kernels").expanduser()


def set_cache_dir(path: str | os.PathLike | None) -> None:
    """Use ``path`` as the kernel cache directory (None: back to ``SPARSEC_CACHE_DIR`` or the
    default). Modules already loaded in this process stay loaded."""
    global _explicit_dir, _resolved_dir
    with _LOCK:
        _explicit_dir = None if path is None else Path(path).expanduser()
        _resolved_dir = None


def _writable(d: Path) -> str | None:
    """None when ``d`` exists (or was created) and a file can be written there, else why not."""
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=d)
        os.close(fd)
        os.unlink(probe)
        return None
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def fallback_cache_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"sparsec-kernels-{uid}"


def cache_dir() -> Path:
    """The directory in use (created on first use; see the module docstring for the fallback)."""
    global _resolved_dir
    with _LOCK:
        if _resolved_dir is not None:
            return _resolved_dir
        want = _explicit_dir if _explicit_dir is not None else default_cache_dir()
        why = _writable(want)
        if why is None:
            _resolved_dir = want
            return want
        fb = fallback_cache_dir()
        why_fb = _writable(fb)
        if why_fb is not None:
            raise SparsecError(f"kernel cache directory {want} is not usable ({why}), nor is the fallback "
                               f"{fb} ({why_fb}); set {ENV_VAR} or sparsec.runtime.kernel_cache.set_cache_dir() "
                               f"to a writable directory")
        warnings.warn(f"sparsec: kernel cache directory {want} is not usable ({why}); using {fb} instead "
                      f"(set {ENV_VAR} to choose another)", KernelCacheWarning, stacklevel=3)
        _resolved_dir = fb
        return fb


# ---------------------------------------------------------------------------------------------
# keys

def host_fingerprint() -> str:
    """Everything besides the source that decides the machine code: versions, host CPU, and the
    numerics helpers inlined into kernels."""
    global _fingerprint
    if _fingerprint is None:
        import llvmlite
        import numba
        from llvmlite import binding as llvm

        from .. import __version__ as sparsec_version
        from .cpu import numerics
        try:
            cpu = llvm.get_host_cpu_name()
            feats = llvm.get_host_cpu_features().flatten()
        except Exception:  # pragma: no cover
            cpu, feats = "unknown", ""
        parts = [sparsec_version, numba.__version__, llvmlite.__version__, sys.version, cpu, feats,
                 str(numba.config.CPU_NAME), str(numba.config.CPU_FEATURES), numerics.FINGERPRINT]
        _fingerprint = "\n".join(parts)
    return _fingerprint


def kernel_key(source: str) -> str:
    h = hashlib.sha256()
    h.update(host_fingerprint().encode())
    h.update(b"\0")
    h.update(source.encode())
    return h.hexdigest()[:32]


def _modname(key: str) -> str:
    return f"sparsec_kernel_{key}"


def module_path(source: str) -> Path:
    """Where the module for ``source`` lives (whether or not it exists yet)."""
    return cache_dir() / f"{MODULE_PREFIX}{kernel_key(source)}.py"


# ---------------------------------------------------------------------------------------------
# files

def _atomic_write(path: Path, data: bytes, replace: bool) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # never replaces: a concurrent writer's file stays as it is
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system
                os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _ensure_file(path: Path, data: bytes) -> str:
    """Make ``path`` hold ``data``: 'hit' (already did), 'miss' (written) or 'repair' (rewritten)."""
    try:
        with open(path, "rb") as f:
            old = f.read()
    except FileNotFoundError:
        _atomic_write(path, data, replace=False)
        with open(path, "rb") as f:  # a concurrent writer may have won: same bytes, or repair below
            if f.read() == data:
                return "miss"
        _atomic_write(path, data, replace=True)
        return "repair"
    if old == data:
        return "hit"
    _purge_numba_files(path)
    _atomic_write(path, data, replace=True)
    return "repair"


def _numba_cache_dirs(path: Path) -> list[Path]:
    dirs = [path.parent / "__pycache__"]
    try:
        import numba
        if numba.config.CACHE_DIR:
            from numba.core.caching import _CacheLocator
            dirs.append(Path(numba.config.CACHE_DIR) / _CacheLocator.get_suitable_cache_subpath(str(path)))
    except Exception:  # pragma: no cover
        pass
    return dirs


def _purge_numba_files(path: Path, extra_dirs=()) -> int:
    """Delete Numba's cache files of the module at ``path``."""
    n = 0
    prefix = path.stem + "."
    for d in list(_numba_cache_dirs(path)) + [Path(x) for x in extra_dirs]:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix) and (name.endswith(".nbi") or name.endswith(".nbc") or ".tmp." in name):
                try:
                    os.unlink(d / name)
                    n += 1
                except OSError:
                    pass
    return n


def _exec_module(key: str, path: Path, source: str) -> ModuleType:
    name = _modname(key)
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    mod = importlib.util.module_from_spec(spec)
    mod.__file__ = str(path)
    code = compile(source, str(path), "exec")  # the checked text, never a stale .pyc
    exec(code, mod.__dict__)
    sys.modules[name] = mod
    return mod


# ---------------------------------------------------------------------------------------------
# public API

def load_module(source: str) -> ModuleType:
    """The module for ``source``: from memory, else from the cache directory (written first if
    absent or damaged)."""
    with _LOCK:
        key = kernel_key(source)
        mod = _MODULES.get(key)
        if mod is not None:
            _STATS.memory_hits += 1
            return mod
        path = cache_dir() / f"{MODULE_PREFIX}{key}.py"
        data = source.encode()
        path.parent.mkdir(parents=True, exist_ok=True)  # (removed while we run: recreate)
        status = _ensure_file(path, data)
        if status == "hit":
            _STATS.disk_hits += 1
        elif status == "miss":
            _STATS.misses += 1
        else:
            _STATS.repairs += 1
        try:
            mod = _exec_module(key, path, source)
        except SyntaxError as e:  # generated code must compile: this is a sparsec bug
            raise SparsecError(f"generated kernel {path} does not compile: {e}") from e
        _MODULES[key] = mod
        return mod


def _dispatcher_cache_path(disp) -> str | None:
    try:
        return disp.stats.cache_path
    except Exception:
        return None


def compile_function(source: str, fname: str, sig, disable_compile: bool = True):
    """The Numba dispatcher ``fname`` of the module for ``source``, compiled for ``sig`` (loaded
    from Numba's cache when present). A cache entry that fails to load is deleted and compiled
    again. With ``disable_compile`` the dispatcher accepts only this signature (and arguments
    convertible to it, e.g. writable arrays for read-only array types), so calls never trigger
    another compilation."""
    with _LOCK:
        key = kernel_key(source)
        memo = (key, fname, str(sig))
        disp = _COMPILED.get(memo)
        if disp is not None:
            return disp
        mod = load_module(source)
        disp = getattr(mod, fname)
        try:
            hits0 = sum(disp.stats.cache_hits.values())
            disp.compile(sig)
        except Exception as first:
            path = Path(mod.__file__)
            cp = _dispatcher_cache_path(disp)
            _purge_numba_files(path, [cp] if cp else [])
            _STATS.repairs += 1
            mod = _exec_module(key, path, source)
            _MODULES[key] = mod
            disp = getattr(mod, fname)
            hits0 = sum(disp.stats.cache_hits.values())
            try:
                disp.compile(sig)
            except Exception as e:
                raise SparsecError(f"kernel {fname} in {path} failed to compile for {sig}: "
                                   f"{type(e).__name__}: {e}") from first
        _count(disp, hits0)
        if disable_compile:
            disp.disable_compile()
        _COMPILED[memo] = disp
        return disp


def _count(disp, hits0: int) -> None:
    if sum(disp.stats.cache_hits.values()) > hits0:
        _STATS.numba_cache_loads += 1
    else:
        _STATS.compiles += 1


def compile_dispatcher(disp, sig) -> None:
    """Compile a hand-written ``@njit(cache=True)`` kernel for ``sig`` now; a Numba cache entry
    that fails to load is deleted and the function compiled again."""
    with _LOCK:
        if tuple(sig.args) in disp.overloads:
            return
        try:
            hits0 = sum(disp.stats.cache_hits.values())
            disp.compile(sig)
        except Exception as first:
            cp = _dispatcher_cache_path(disp)
            impl = getattr(getattr(disp, "_cache", None), "_cache_file", None)
            index = getattr(impl, "_index_name", None)
            if not cp or not index:
                raise
            base = index[:-len(".nbi")]
            removed = 0
            for name in os.listdir(cp):
                if name.startswith(base + ".") or name == index or name.startswith(index + ".tmp."):
                    try:
                        os.unlink(os.path.join(cp, name))
                        removed += 1
                    except OSError:
                        pass
            if not removed:
                raise
            _STATS.repairs += 1
            hits0 = sum(disp.stats.cache_hits.values())
            try:
                disp.compile(sig)
            except Exception as e:
                raise SparsecError(f"kernel {disp.py_func.__qualname__} failed to compile for {sig}: "
                                   f"{type(e).__name__}: {e}") from first
        _count(disp, hits0)
