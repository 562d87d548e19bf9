"""numba.cuda kernels as plain Python functions, and the launch configuration per shape.

``@kernel`` keeps the Python function (``compile_ptx`` needs it) and jits it on first launch
(``cuda.jit`` dispatcher: one specialization per argument types). Block sizes are chosen per
shape: 256 threads (a multiple of the warp, enough to hide latency with a few blocks per SM),
fewer for small arrays, and at most ``MAX_BLOCKS`` blocks with grid-stride loops beyond. Under
the simulator (``NUMBA_ENABLE_CUDASIM=1``) every thread is a Python thread, so blocks stay small
there (``SIM_BLOCK``): same kernels, same results, bearable speed.
"""
from __future__ import annotations

import os

import numpy as np
from numba import cuda

def _numba_cuda_config():
    """numba-cuda's configuration module (``numba.cuda.core.config`` since numba-cuda 0.2x;
    ``numba.core.config`` before: a GPU machine's image may hold an older numba-cuda)."""
    try:
        from numba.cuda.core import config
    except ImportError:  # pragma: no cover - older numba-cuda
        from numba.core import config
    return config


# Decode-sized launches (one token) are small grids by nature: numba-cuda's "grid size will
# likely result in GPU under-utilization" warning would fire on most launches of a decode step.
# Off unless the user asked for it in the environment.
if "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS" not in os.environ:
    _numba_cuda_config().CUDA_LOW_OCCUPANCY_WARNINGS = 0

#: threads per block for 1-D elementwise-style kernels
BLOCK = 256
#: blocks launched at most (grid-stride loops cover the rest): a few waves on an H100/H200
MAX_BLOCKS = 4096
SIM_BLOCK = 8
#: blocks at most under the simulator (it runs blocks one after another, each thread a Python
#: thread: fewer, longer blocks are much faster there)
SIM_MAX_BLOCKS = 4


def simulator() -> bool:
    """Whether numba.cuda is the CUDA simulator in this process."""
    return bool(_numba_cuda_config().ENABLE_CUDASIM)


def _thread_safe_simulator_shared_arrays() -> None:
    """Make the simulator's ``cuda.shared.array`` give every thread of a block the same array.

    numba-cuda's simulator (0.30.4) keeps a block's shared arrays in a dict keyed by the calling
    source line and fills it check-then-act, without a lock (``FakeCUDAShared.array``). Its
    threads are Python threads: when one is switched out between the lookup and the store,
    another allocates its own array, so the two write and read different "shared" memory and the
    block computes with uninitialized values. It happened about once in 1000 first allocations
    in sparsec's CUDA test suite (counted with this replacement), and gave the intermittent wrong
    results of the simulated quantized GEMV and MoE kernels. This replacement does the same
    lookup and, for a new array, the store under a lock, keeping the first thread's array."""
    import sys
    import threading

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support
    shared = kernelapi.FakeCUDAShared
    if getattr(shared, "_sparsec_thread_safe", False):
        return
    original = shared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:  # errors and dynamic shared memory: unchanged
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)  # the simulator's key: file and line
        res = self._allocations.get(key)
        if res is None:
            new = np.empty(shape, dtype)
            with lock:
                res = self._allocations.setdefault(key, new)
        return res

    array.__doc__ = original.__doc__
    shared.array = array
    shared._sparsec_thread_safe = True


if simulator():
    _thread_safe_simulator_shared_arrays()


try:
    from ml_dtypes import bfloat16 as _bf16
    _BF16 = np.dtype(_bf16)
except ImportError:  # pragma: no cover - ml_dtypes is a dependency of sparsec
    _BF16 = None
_U16 = np.dtype(np.uint16)


class CudaFunction:
    """A numba.cuda kernel from a Python function: ``f[grid, block](*args)`` jits on first use.
    bfloat16 array arguments are passed as their uint16 bits (``runtime.cuda.half``)."""

    def __init__(self, pyfunc):
        self.pyfunc = pyfunc
        self.name = pyfunc.__name__
        self._jit = None

    @property
    def dispatcher(self):
        if self._jit is None:
            self._jit = cuda.jit(self.pyfunc)
        return self._jit

    def __getitem__(self, config):
        launch = self.dispatcher[config]

        def run(*args):  # numba cannot type ml_dtypes.bfloat16: bf16 arrays travel as their uint16 bits
            args = [a.view(_U16) if getattr(a, "dtype", None) == _BF16 else a for a in args]
            _replay.note(self, config, args)  # noted while a call is recorded (runtime.cuda.replay)
            return launch(*args)
        return run

    def spec(self, signature, name: str | None = None):
        """A ``PtxSpec`` of this kernel for ``signature`` (a tuple of numba types)."""
        from sparsec.lower.cuda import PtxSpec
        return PtxSpec(name or self.name, self.pyfunc, tuple(signature))


def kernel(pyfunc) -> CudaFunction:
    return CudaFunction(pyfunc)


def device(pyfunc):
    """A device function (callable from kernels; also from the simulator)."""
    return cuda.jit(device=True)(pyfunc)


def max_blocks() -> int:
    """The most blocks a grid-stride kernel is launched with."""
    return SIM_MAX_BLOCKS if simulator() else MAX_BLOCKS


#: SMs x threads per SM assumed where no device answers (PTX without a GPU): an H100 / H200
DEFAULT_RESIDENT_THREADS = 132 * 2048


def resident_threads() -> int:
    """Threads the current device holds at once (SMs x threads per SM)."""
    global _resident
    if _resident is None:
        try:
            dev = cuda.get_current_device()
            _resident = int(dev.MULTIPROCESSOR_COUNT) * int(dev.MAX_THREADS_PER_MULTIPROCESSOR)
        except Exception:  # noqa: BLE001 - no device, the simulator: the default
            _resident = DEFAULT_RESIDENT_THREADS
    return _resident


_resident = None


def block_size(n: int, cap: int = BLOCK) -> int:
    """Threads per block for ``n`` work items: a power of two >= 32 (a warp), at most ``cap``."""
    cap = min(cap, SIM_BLOCK) if simulator() else cap
    b = 32
    while b < cap and b < n:
        b *= 2
    return min(b, cap)


def grid_1d(n: int, cap: int = BLOCK) -> tuple[int, int]:
    """``(blocks, threads)`` for a grid-stride loop over ``n`` items (at least one block)."""
    t = block_size(n, cap)
    return max(1, min(max_blocks(), (n + t - 1) // t)), t


def launch_1d(fn: CudaFunction, n: int, *args) -> None:
    """Launch ``fn(*args)`` over ``n`` items with a grid-stride loop; nothing for ``n == 0``."""
    if n <= 0:
        return
    fn[grid_1d(n)](*args)


@cuda.jit(device=True)
def report_error(err, code, value):
    """Record ``(code, value)`` in ``err`` if no error was recorded yet (first one wins)."""
    if cuda.atomic.compare_and_swap(err[0:1], 0, code) == 0:
        err[1] = value


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


# last: runtime.cuda.replay imports ``simulator`` from here (CudaFunction notes launches there)
from . import replay as _replay  # noqa: E402
