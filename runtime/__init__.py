"""The runtime (installed as ``sparsec.runtime``): kernels (``cpu/``), the executable, the
memory planner, KV-cache generation, the ``.spc`` artifact format and the kernel cache."""


def kernel_stats() -> dict:
    """Counters of the on-disk kernel cache (hits, misses, compiles), when it is in use."""
    try:
        from . import kernel_cache
    except ImportError:
        return {}
    stats = getattr(kernel_cache, "stats", None)
    return dict(stats()) if callable(stats) else {}
