"""CUDA kernels for the elementwise group that are not generated (``sc.iota``); the generated
elementwise and fused kernels come from ``sparsec.lower.cuda.codegen``."""
from __future__ import annotations

import numpy as np
from numba import cuda

from . import half
from .launch import kernel
from .types import arr


@kernel
def iota(out, n):
    """``out[i] = i`` (cast to out's dtype) over a flat array."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        out[i] = i


_IOTA_HALF: dict = {}


def iota_half(dt: str):
    """``sc.iota`` for f16/bf16 storage: ``out[i] = i`` rounded once to ``dt``."""
    k = _IOTA_HALF.get(dt)
    if k is None:
        st = half.store(dt)

        def iota_h(out, n):
            start = cuda.grid(1)
            for i in range(start, n, cuda.gridsize(1)):
                out[i] = st(np.float32(i))
        iota_h.__name__ = f"iota_{dt}"
        k = _IOTA_HALF[dt] = kernel(iota_h)
    return k


def sig_iota(dtype):
    """The iota signature for a NumPy dtype or an IR dtype name (bf16: uint16 bits)."""
    from numba import types
    if isinstance(dtype, str):
        from .types import storage
        return (storage(dtype), types.int64)
    return (arr(dtype), types.int64)
