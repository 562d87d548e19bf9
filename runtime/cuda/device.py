"""Device memory for the CUDA target: availability, weight upload, lazily uploaded constants.

Weights are uploaded once per compiled model (``DeviceWeights``, shared by its functions: ``main``
and ``decode`` read the same names); a quantized weight becomes a ``DeviceQuantized`` holding
each part of its ``QuantizedTensor`` as a device array.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import SparsecError


class NoCudaDevice(SparsecError):
    """numba.cuda finds no GPU and the simulator is off."""


NO_DEVICE_HELP = ("set NUMBA_ENABLE_CUDASIM=1 (before Python starts) to run the CUDA kernels on numba's CUDA "
                  "simulator (slow: small shapes), or use `sparsec compile MODEL --target cuda --emit-ptx DIR` "
                  "to produce the PTX without a device, or target='cpu'")


def availability() -> tuple[bool, str]:
    """``(usable, description)``: a GPU numba.cuda can use, or the simulator."""
    try:
        from numba import cuda
    except ImportError as e:
        return False, (f"numba.cuda cannot be imported ({e}); install the CUDA extra: "
                       f"pip install 'sparsec[cuda]'")
    from .launch import simulator
    if simulator():
        return True, "numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    try:
        ok = cuda.is_available()
    except Exception as e:  # noqa: BLE001 - a broken driver install reports here
        return False, f"numba.cuda: {type(e).__name__}: {e}"
    if not ok:
        return False, "numba.cuda finds no CUDA device (no NVIDIA driver or GPU on this machine)"
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    return True, f"{name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})"


def require_device(what: str = "target 'cuda'") -> str:
    """The device description, or ``NoCudaDevice`` explaining what to do instead."""
    ok, desc = availability()
    if not ok:
        raise NoCudaDevice(f"{what}: no CUDA device: {desc}. To go on without a GPU: {NO_DEVICE_HELP}")
    return desc


def is_device_array(a) -> bool:
    from numba import cuda
    return cuda.is_cuda_array(a) if hasattr(cuda, "is_cuda_array") else type(a).__name__ == "FakeCUDAArray"


def is_contiguous(a) -> bool:
    """Whether device array ``a`` is C-contiguous (the simulator's arrays wrap NumPy arrays)."""
    if hasattr(a, "is_c_contiguous"):
        return bool(a.is_c_contiguous())
    return bool(np.asarray(a).flags.c_contiguous) if hasattr(a, "__array__") else True


def to_device(a: np.ndarray):
    """A device copy of ``a`` with its shape (0-d stays 0-d: ``np.ascontiguousarray`` would make it 1-d)."""
    from numba import cuda
    return cuda.to_device(np.require(a, requirements="C"))


def empty(shape, dtype):
    """An uninitialized device array. Under numba's simulator it is filled with 0xFF bytes (NaN
    floats, -1 integers): a simulated device array is a NumPy ``empty``, which often reuses the
    memory of an array just freed, e.g. the interpreter's result for the same inputs in a
    test; so a kernel that leaves part of its output unwritten could pass the tests there."""
    from numba import cuda

    from .launch import simulator
    shape = tuple(int(d) for d in shape)
    if simulator():
        poison = np.empty(shape, np.dtype(dtype))
        poison.reshape(-1).view(np.uint8)[...] = 0xFF
        return cuda.to_device(poison)
    return cuda.device_array(shape, np.dtype(dtype))


def zeros(shape, dtype):
    """A zero-filled device array (uploaded zeros: one transfer, no extra kernel)."""
    return to_device(np.zeros(tuple(int(d) for d in shape), np.dtype(dtype)))


def synchronize() -> None:
    from numba import cuda
    cuda.synchronize()


@dataclass
class DeviceQuantized:
    """A quantized weight on the device: the ``QuantizedTensor``'s format, logical shape, layout
    and parts (``{"d": device array, "qs": device array, ...}``)."""
    fmt: str
    shape: tuple
    layout: str
    parts: dict


def upload_weight(w):
    from ...quant.formats import QuantizedTensor
    if isinstance(w, QuantizedTensor):
        if w.layout != "blocks":  # the CUDA kernels read the canonical layout (runtime.cuda.quant)
            from ...quant.layouts import to_blocks
            w = to_blocks(w)
        return DeviceQuantized(w.fmt, tuple(w.shape), w.layout, {k: to_device(v) for k, v in w.parts.items()})
    return to_device(np.asarray(w))


class DeviceWeights:
    """Weights uploaded on first request, once per name (``bytes`` counts what was uploaded)."""

    def __init__(self, store: dict):
        self.store = store
        self.arrays: dict = {}
        self.bytes = 0

    def get(self, name: str):
        a = self.arrays.get(name)
        if a is None:
            w = self.store[name]
            a = self.arrays[name] = upload_weight(w)
            self.bytes += int(getattr(w, "nbytes", 0))
        return a


class Uploaded:
    """A host array uploaded on first use (``.get()``) and kept: kernels' constant tables."""

    def __init__(self, host: np.ndarray):
        self.host = np.ascontiguousarray(host)
        self._dev = None

    def get(self):
        if self._dev is None:
            self._dev = to_device(self.host)
        return self._dev
