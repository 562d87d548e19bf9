"""Helpers of the hand-written CPU kernels: one compiled specialization per signature, made at
lowering time (so the first run does not compile), with recovery from a damaged Numba cache.

``specialize(disp, sig)`` returns a private dispatcher of ``disp``'s Python function compiled
for exactly ``sig`` with further compilation disabled. Input arrays are declared read-only, so
the same machine code accepts writable arrays and read-only ones (weights loaded from
safetensors are read-only buffers): a shared dispatcher would instead compile a second
specialization at call time when a read-only weight shows up. The private dispatcher shares the
function's on-disk Numba cache (same file, name and line).
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from numba import njit, types
from numba.core.dispatcher import Dispatcher

_LOCK = threading.RLock()


def num_threads() -> int:
    """``numba.get_num_threads()`` for the kernels' thread splits, without its Python-side launch
    check once the threads run (0.6 us -> 0.1 us per call; a decode step asks ~60 times). Reads the
    threading layer's own function, so ``numba.set_num_threads`` (thread-local) is honoured."""
    import numba
    from numba.np.ufunc import parallel
    f = getattr(parallel, "_get_num_threads", None)
    if f is None:  # threads not launched yet (or another numba): the public call launches them
        return numba.get_num_threads()
    return int(f())
_SPECIAL: dict = {}

f32, f64, i64, b1 = types.float32, types.float64, types.int64, types.boolean


def arr(dtype, ndim: int = 1, readonly: bool = False):
    """A C-contiguous array type (``readonly`` for inputs)."""
    if not isinstance(dtype, types.Type):
        from numba.np.numpy_support import from_dtype
        dtype = from_dtype(dtype)
    return types.Array(dtype, ndim, "C", readonly=readonly)


def inp(dtype, ndim: int = 1):
    """An input array type: read-only, so writable arrays convert to it."""
    return arr(dtype, ndim, readonly=True)


_OPTIONS = ("nogil", "parallel", "fastmath", "error_model", "boundscheck")


def specialize(disp, sig):
    """``disp``'s function compiled for ``sig`` only (see the module docstring); memoized."""
    from .. import kernel_cache
    key = (disp.py_func, str(sig))
    d = _SPECIAL.get(key)
    if d is not None:
        return d
    with _LOCK:
        d = _SPECIAL.get(key)
        if d is None:
            opts = {k: v for k, v in disp.targetoptions.items() if k in _OPTIONS and v is not None}
            d = njit(cache=True, **opts)(disp.py_func)
            kernel_cache.compile_dispatcher(d, sig)
            d.disable_compile()
            _SPECIAL[key] = d
    return d


class Lazy:
    """``specialize(disp, sig)`` on the first call (for parallel variants: a parallel compile
    costs ~1 s, spent only when a large input shows up)."""

    __slots__ = ("disp", "sig", "fn")

    def __init__(self, disp, sig):
        self.disp, self.sig, self.fn = disp, sig, None

    def __call__(self, *args):
        return self.resolve()(*args)

    def resolve(self):
        """The specialized dispatcher (compiled or loaded now if not yet)."""
        if self.fn is None:
            self.fn = specialize(self.disp, self.sig)
        return self.fn


def _accepts(sig, tys) -> bool:
    """Does a compiled signature take arguments of types ``tys`` as they are (an array of the same
    dtype, rank and layout; a read-only parameter takes a writable array, not the reverse; any
    other type equal)?"""
    if len(sig) != len(tys):
        return False
    for s, t in zip(sig, tys):
        if s == t:
            continue
        if not (isinstance(s, types.Array) and isinstance(t, types.Array)):
            return False
        if s.dtype != t.dtype or s.ndim != t.ndim or s.layout != t.layout or (s.mutable and not t.mutable):
            return False
    return True


def compiled(disp, args):
    """The compile result of dispatcher ``disp`` (or a ``Lazy`` one, resolved now) for ``args``'
    types: its exact specialization, else one that accepts them (``_accepts``), else one
    compiled now where ``disp`` may compile; None if there is none."""
    from numba import typeof
    if isinstance(disp, Lazy):
        disp = disp.resolve()
    tys = tuple(typeof(a) for a in args)
    cres = disp.overloads.get(tys)
    if cres is None:
        cres = next((c for sig, c in disp.overloads.items() if _accepts(sig, tys)), None)
    if cres is None and getattr(disp, "_can_compile", False):
        disp.compile(tys)
        cres = disp.overloads.get(tys)
    return cres


def entry_point(disp, args):
    """The compiled entry of ``compiled(disp, args)``, or None. It skips the dispatcher's
    per-call type dispatch (after a decode step's weight streams leave the caches cold, a call
    measured 2.7 -> 1.6 us) and checks nothing: it is for arguments fixed once, whose types were
    resolved here."""
    cres = compiled(disp, args)
    return None if cres is None else cres.entry_point


def bind_compiled(cres, args):
    """``functools.partial(cres.entry_point, *args)``, carrying ``.native = (cres, args)`` so that
    a native plan (``native.plan_function``) can call the same compiled code directly."""
    call = functools.partial(cres.entry_point, *args)
    call.native = (cres, tuple(args))
    return call


def checked(call, on_bad, ok: int = -1):
    """A prebound step whose kernel returns a status: ``call()``, then ``on_bad(r)`` (which
    raises) when its result ``r`` is not ``ok``. The parts stay readable as ``.checked = (call,
    on_bad, ok)``, so the executable's generated call (``Executable._fast_call``) can call
    ``call`` and test the status inline instead of going through this wrapper."""
    def run():
        r = call()
        if r != ok:
            on_bad(r)
    run.checked = (call, on_bad, ok)
    return run


def bound(fn, *args):
    """``fn(*args)`` as a no-argument call for a prebound step (``Kernel.bind``): through the
    compiled entry point when ``fn`` is a Numba dispatcher (or a ``Lazy`` one) whose
    specialization takes these arguments (``entry_point``), else through ``fn`` itself."""
    if isinstance(fn, (Lazy, Dispatcher)):
        cres = compiled(fn, args)
        if cres is not None:
            return bind_compiled(cres, args)
    return functools.partial(fn, *args)


@njit(cache=True)
def split_by_cost(cost_end, total, threads):
    """``first[t]:first[t+1]``: thread ``t``'s contiguous run of work items, each run of about
    ``total / threads`` cost (``cost_end[i]``: the cumulative cost up to item ``i``)."""
    n_items = cost_end.size
    first = np.zeros(threads + 1, np.int64)
    t = 1
    for i in range(n_items):
        while t < threads and cost_end[i] > (total * t) // threads:
            first[t] = i
            t += 1
    while t <= threads:
        first[t] = n_items
        t += 1
    return first


@njit(cache=True)
def offsets_partition(offsets, rows):
    """Do ``offsets`` rise from 0 to ``rows`` (a valid split of the rows into groups)?"""
    G = offsets.size - 1
    if offsets[0] != 0 or offsets[G] != rows:
        return False
    for g in range(G):
        if offsets[g + 1] < offsets[g]:
            return False
    return True


#: relative cost per row of a work item in ``group_items``: a row through the register tiles, and a
#: row of a packed panel (measured 2.5x cheaper: 64 experts x 12 rows against 2 of 128 rows, each
#: 512 x 1024, f32, one thread). With one cost per row the shared experts that expert-fusion folds
#: in (128 rows each at 128 tokens) weighed 2.5x too much, and the thread given them finished early:
#: the fused layer ran 0.86x of the unfused one.
TILE_ROW_COST = 5
PANEL_ROW_COST = 2


@njit(cache=True)
def group_items(offsets, blocks, max_rows, panel_min):
    """The work items of a grouped matmul: ``(item_group, item_block, cost_end, total)`` with
    ``blocks`` weight-row blocks for each group of ``0 < rows < max_rows`` rows (empty groups cost
    nothing), and the cumulative cost per item that ``split_by_cost`` divides among threads:
    ``TILE_ROW_COST`` per row plus one row's worth for the block's read (a block costs its read
    even for one row), or ``PANEL_ROW_COST`` per row for groups of ``panel_min`` rows or more,
    which the f32 kernel runs as packed panels (quantized kernels: no panels, ``panel_min`` beyond
    any row count)."""
    G = offsets.size - 1
    n_items = 0
    for g in range(G):
        rows = offsets[g + 1] - offsets[g]
        if 0 < rows < max_rows:
            n_items += blocks
    item_group = np.empty(n_items, np.int64)
    item_block = np.empty(n_items, np.int64)
    cost_end = np.empty(n_items, np.int64)
    i = 0
    total = 0
    for g in range(G):
        rows = offsets[g + 1] - offsets[g]
        if 0 < rows < max_rows:
            cost = (PANEL_ROW_COST if rows >= panel_min else TILE_ROW_COST) * rows + TILE_ROW_COST
            for b in range(blocks):
                item_group[i] = g
                item_block[i] = b
                total += cost
                cost_end[i] = total
                i += 1
    return item_group, item_block, cost_end, total
