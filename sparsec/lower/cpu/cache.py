"""CPU lowering of ``sc.kv_write``: the KV-cache update.

Functional form (the default): copy the cache into the output, then the new positions. When the
runtime donates the cache input (``generate`` owns the cache buffers), ``lower_function`` asks
for the in-place form instead: the new positions are written into the cache view itself and the
result aliases it, so a decoding step moves only the new keys, never the whole cache.
"""
from __future__ import annotations

from . import Kernel, cpu_lowering


def _axis(op) -> int:
    return op.attrs["axis"] % op.operands[0].type.rank


@cpu_lowering("sc.kv_write")
def lower_kv_write(op) -> Kernel:
    ax = _axis(op)

    def kv_write(cache, new, out):
        n = cache.shape[ax] - new.shape[ax]
        idx = (slice(None),) * ax
        out[idx + (slice(0, n),)] = cache[idx + (slice(0, n),)]
        out[idx + (slice(n, None),)] = new
    return Kernel(kv_write, "kv_write_copy", impl="numpy")


def lower_kv_write_inplace(op) -> Kernel:
    """The donated-cache form: ``fn(cache, new) -> (cache,)`` after writing ``new`` into it."""
    ax = _axis(op)

    def kv_write_inplace(cache, new):
        n = cache.shape[ax] - new.shape[ax]
        cache[(slice(None),) * ax + (slice(n, None),)] = new
        return (cache,)
    return Kernel(kv_write_inplace, "kv_write_inplace", impl="numpy", info={"inplace": True})
