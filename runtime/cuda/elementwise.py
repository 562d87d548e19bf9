"""CUDA kernels for the elementwise group that are not generated (``sc.iota``); the generated
elementwise and fused kernels come from ``sparsec.lower.cuda.codegen``."""
from __future__ import annotations

from numba import cuda

from .launch import kernel
from .types import arr


@kernel
def iota(out, n):
    """``out[i] = i`` (cast to out's dtype) over a flat array."""
    start = cuda.grid(1)
    for i in range(start, n, cuda.gridsize(1)):
        out[i] = i


def sig_iota(dtype):
    from numba import types
    return (arr(dtype), types.int64)
