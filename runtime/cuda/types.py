"""numba types of kernel arguments, for the PTX signatures (``PtxSpec``)."""
from __future__ import annotations

import numpy as np


def scalar(dtype):
    from numba import types
    from numba.np.numpy_support import from_dtype
    dt = np.dtype(dtype)
    return types.boolean if dt == np.bool_ else from_dtype(dt)


def arr(dtype, ndim: int = 1, layout: str = "C"):
    """A device array argument type (C-contiguous 1-D by default)."""
    from numba import types
    return types.Array(scalar(dtype), ndim, layout)
