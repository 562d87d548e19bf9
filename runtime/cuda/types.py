"""numba types of kernel arguments, for the PTX signatures (``PtxSpec``)."""
from __future__ import annotations

import numpy as np


def scalar(dtype):
    from numba import types
    from numba.np.numpy_support import from_dtype
    dt = np.dtype(dtype)
    if dt.name == "bfloat16":  # numba cannot type ml_dtypes.bfloat16: kernels get its uint16 bits
        return types.uint16
    return types.boolean if dt == np.bool_ else from_dtype(dt)


def arr(dtype, ndim: int = 1, layout: str = "C"):
    """A device array argument type (C-contiguous 1-D by default)."""
    from numba import types
    return types.Array(scalar(dtype), ndim, layout)


#: numba element type of each IR dtype's storage on the device (bf16: its uint16 bits)
_STORAGE = {"f16": "float16", "bf16": "uint16", "f32": "float32", "f64": "float64", "i8": "int8", "i32": "int32",
            "i64": "int64", "ui8": "uint8", "i1": "boolean"}


def storage(dt: str, ndim: int = 1, layout: str = "C"):
    """The device array argument type of IR dtype name ``dt`` (``"bf16"`` -> uint16[::1])."""
    from numba import types
    return types.Array(getattr(types, _STORAGE[dt]), ndim, layout)
