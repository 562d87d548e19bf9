"""CUDA reduction kernels over the canonical ``(outer, n, inner)`` view (see the CPU rules in
``sparsec.lower.cpu.reduce``): sum/mean/max/min, argmax, softmax/log_softmax, top-k.

Two shapes of work: ``*_serial`` kernels give one thread per output (outer x inner), looping
over ``n`` (coalesced across threads when ``inner > 1``): right when there are many outputs.
``*_block`` kernels give one block per output and reduce ``n`` with all threads and a shared
memory tree (``BLOCK`` threads): right for few, long rows (a vocabulary-sized argmax or softmax,
a whole-tensor sum). The rules pick per call from the sizes.

Numerics as the references: float sums accumulate in float64 (ints in int64, wrapping when
stored), max/min propagate NaN, argmax takes the first maximum (the first NaN if any), softmax
computes in float32 (float64 for f64) with float64 partial sums, top-k orders by value then lower
index with NaN largest.

f16/bf16: every kernel reads ``x`` through ``ld`` and writes float results through ``st``
(``identity`` here); ``runtime.cuda.half.variant(kernel, load_dt, store_dt)`` rebinds them for
16-bit storage, so sums (float64), softmax (float32) and comparisons see the widened values and
each result is rounded once to the output dtype, as the references.
"""
from __future__ import annotations

import math
from functools import lru_cache

from numba import cuda, float32, float64, int64

from . import half
from .half import identity as ld  # noqa: F401 - rebound per storage dtype by half.variant
from .half import identity as st  # noqa: F401
from .launch import kernel

BLOCK = 128  # threads of the block kernels (a power of two: the shared-memory tree halves it)

SUM, MEAN, MAX, MIN = 0, 1, 2, 3


@kernel
def reduce_serial(x, outer, n, inner, out, kind, init, count):
    total = outer * inner
    for t in range(cuda.grid(1), total, cuda.gridsize(1)):
        o = t // inner
        i = t - o * inner
        base = o * n * inner + i
        acc = init
        for j in range(n):
            v = ld(x[base + j * inner])
            if kind <= MEAN:
                acc += v
            elif kind == MAX:
                if v > acc or v != v:
                    if acc == acc:
                        acc = v
            else:
                if v < acc or v != v:
                    if acc == acc:
                        acc = v
        if kind == MEAN:
            out[t] = st(acc / count)
        else:
            out[t] = st(acc)


@cuda.jit(device=True)
def tree_reduce(sh, tid, nt, kind):
    """``sh[0]`` = the block's ``nt`` partials in ``sh`` combined by ``kind``: added (SUM, MEAN), or
    the maximum / minimum with NaN propagating (MAX, MIN). All ``nt`` threads call it."""
    s = nt // 2
    while s > 0:
        if tid < s:
            a = sh[tid]
            b = sh[tid + s]
            if kind <= MEAN:
                sh[tid] = a + b
            elif a == a and (b != b or (kind == MAX and b > a) or (kind == MIN and b < a)):
                sh[tid] = b
        cuda.syncthreads()
        s //= 2


@kernel
def reduce_block_f(x, outer, n, inner, out, kind, count):
    """Float reductions: one block per output; partials in float64."""
    sh = cuda.shared.array(BLOCK, float64)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for t in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
        o = t // inner
        i = t - o * inner
        base = o * n * inner + i
        if kind <= MEAN:
            acc = 0.0
        elif kind == MAX:
            acc = -math.inf
        else:
            acc = math.inf
        for j in range(tid, n, nt):
            v = float64(ld(x[base + j * inner]))
            if kind <= MEAN:
                acc += v
            elif acc == acc and (v != v or (kind == MAX and v > acc) or (kind == MIN and v < acc)):
                acc = v
        sh[tid] = acc
        cuda.syncthreads()
        tree_reduce(sh, tid, nt, kind)
        if tid == 0:
            if kind == MEAN:
                out[t] = st(sh[0] / count)
            else:
                out[t] = st(sh[0])
        cuda.syncthreads()


@kernel
def argmax_block(x, outer, n, inner, out):
    """First index of the maximum (of the first NaN) per output; one block per output."""
    shv = cuda.shared.array(BLOCK, float64)
    shi = cuda.shared.array(BLOCK, int64)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for t in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
        o = t // inner
        i = t - o * inner
        base = o * n * inner + i
        bv = -math.inf
        bi = n  # none yet
        for j in range(tid, n, nt):
            v = float64(ld(x[base + j * inner]))
            if bi == n or (bv == bv and (v != v or v > bv)):
                bv = v
                bi = j
        shv[tid] = bv
        shi[tid] = bi
        cuda.syncthreads()
        _tree_first(shv, shi, tid, nt, n)
        if tid == 0:
            out[t] = shi[0]
        cuda.syncthreads()


@kernel
def softmax_block(x, outer, n, inner, out, log):
    """One block per row: max, sum of exp (float64 partials), then the outputs."""
    sh = cuda.shared.array(BLOCK, float64)
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    for t in range(cuda.blockIdx.x, outer * inner, cuda.gridDim.x):
        o = t // inner
        i = t - o * inner
        base = o * n * inner + i
        m = -math.inf
        for j in range(tid, n, nt):
            v = float64(ld(x[base + j * inner]))
            if v > m or v != v:
                if m == m:
                    m = v
        sh[tid] = m
        cuda.syncthreads()
        tree_reduce(sh, tid, nt, MAX)
        mx = sh[0]  # float64 (a "* 0" to take x's type gave NaN for an infinite first element)
        cuda.syncthreads()
        acc = 0.0
        for j in range(tid, n, nt):
            acc += float64(math.exp(ld(x[base + j * inner]) - mx))
        sh[tid] = acc
        cuda.syncthreads()
        tree_reduce(sh, tid, nt, SUM)
        tot = sh[0]
        lt = math.log(sh[0])
        for j in range(tid, n, nt):
            d = ld(x[base + j * inner]) - mx
            if log:
                out[base + j * inner] = st(d - lt)
            else:
                out[base + j * inner] = st(math.exp(d) / tot)
        cuda.syncthreads()


@cuda.jit(device=True, inline="always")
def _nan_max(a, b):
    """The larger of ``a`` and ``b``, a NaN winning (the first NaN seen stays): the softmax
    kernels' row maximum."""
    return b if (b > a or b != b) and a == a else a


@kernel
def softmax_serial(x, outer, n, inner, out, log):
    """One thread per row (many short rows, e.g. a router's softmax over few experts)."""
    for t in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = t // inner
        i = t - o * inner
        base = o * n * inner + i
        mx = ld(x[base])
        for j in range(1, n):
            v = ld(x[base + j * inner])
            mx = _nan_max(mx, v)
        acc = 0.0
        for j in range(n):
            acc += float64(math.exp(ld(x[base + j * inner]) - mx))
        tot = acc
        lt = math.log(acc)
        for j in range(n):
            d = ld(x[base + j * inner]) - mx
            if log:
                out[base + j * inner] = st(d - lt)
            else:
                out[base + j * inner] = st(math.exp(d) / tot)


@cuda.jit(device=True, inline="always")
def _before(a, ia, b, ib, largest):
    """Whether (a, ia) comes before (b, ib) in top-k order (NaN largest, ties: lower index)."""
    an = a != a
    bn = b != b
    if an or bn:
        if an and bn:
            return ia < ib
        return an if largest else bn
    if a == b:
        return ia < ib
    return a > b if largest else a < b


@cuda.jit(device=True, inline="always")
def _tree_first(shv, shi, tid, nt, none):
    """Reduce a block's ``nt`` candidates ``(shv[t], shi[t])`` (``nt`` a power of two) to the
    first in top-k order (``_before``: NaN largest, ties to the lower index) at index 0; an
    index ``none`` marks an empty candidate. Every thread of the block calls it; it ends with a
    barrier."""
    s = nt // 2
    while s > 0:
        if tid < s:
            ci = shi[tid + s]
            if ci != none and (shi[tid] == none or _before(shv[tid + s], ci, shv[tid], shi[tid], True)):
                shv[tid] = shv[tid + s]
                shi[tid] = ci
        cuda.syncthreads()
        s //= 2


@kernel
def topk_serial(x, outer, n, inner, k, largest, vals, idx):
    """One thread per row: ``k`` selection passes, each taking the first element after the
    previous pick in the order (O(k n), for router-sized rows)."""
    for t in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = t // inner
        i = t - o * inner
        base = o * n * inner + i
        obase = o * k * inner + i
        pv = ld(x[base])
        pi = -1
        for s in range(k):
            bi = -1
            bv = ld(x[base])
            for j in range(n):
                v = ld(x[base + j * inner])
                if pi >= 0 and not _before(pv, pi, v, j, largest):
                    continue
                if bi < 0 or _before(v, j, bv, bi, largest):
                    bv = v
                    bi = j
            vals[obase + s * inner] = st(bv)
            idx[obase + s * inner] = bi
            pv = bv
            pi = bi


@kernel
def softmax_topk_serial(x, rows, n, k, normalize, vals, idx):
    """``sc.softmax_topk``, one thread per row: the row's softmax statistics as ``softmax_serial``
    computes them, then ``k`` selection passes as ``topk_serial`` over the probabilities
    (recomputed per pass: O(k n), for router-sized rows), then with ``normalize`` each value
    divided by the values' float64 sum rounded to the dtype (``sc.sum`` then ``sc.div``). A
    probability is ``ld(st(exp(x - max) / total))``: as ``softmax_serial`` stores it and
    ``topk_serial`` reads it back (written out here: ``half.variant`` rebinds ``ld``/``st`` in the
    kernel's own globals, not in device functions it calls)."""
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        base = r * n
        obase = r * k
        mx = ld(x[base])
        for j in range(1, n):
            v = ld(x[base + j])
            mx = _nan_max(mx, v)
        acc = 0.0
        for j in range(n):
            acc += float64(math.exp(ld(x[base + j]) - mx))
        tot = acc
        pv = ld(st(math.exp(ld(x[base]) - mx) / tot))
        pi = -1
        s64 = 0.0
        for s in range(k):
            bi = -1
            bv = pv
            for j in range(n):
                v = ld(st(math.exp(ld(x[base + j]) - mx) / tot))
                if pi >= 0 and not _before(pv, pi, v, j, True):
                    continue
                if bi < 0 or _before(v, j, bv, bi, True):
                    bv = v
                    bi = j
            vals[obase + s] = st(bv)
            idx[obase + s] = bi
            s64 += float64(bv)
            pv = bv
            pi = bi
        if normalize:
            d = ld(st(s64))
            for s in range(k):
                vals[obase + s] = st(ld(vals[obase + s]) / d)


@lru_cache(maxsize=None)
def make_softmax_topk_block(NT: int, dt: str):
    """``sc.softmax_topk`` with one block of ``NT`` threads (a power of two) per row, for rows
    longer than a warp (a 128-expert router: the serial kernel's one thread evaluates k * n
    exponentials in a row). The same results as ``softmax_topk_serial``, bit for bit: the
    maximum by a tree (order-free but for which NaN), the exponentials in parallel but summed
    by one thread in the serial order (float64), and each of the ``k`` selection passes as a
    tree over the threads' best candidates in the same total order (``_before``). ``dt``: the
    storage dtype name (f32, f64, f16, bf16)."""
    # as half.variant binds them for the serial kernel: 16-bit storage rounds (values in f32),
    # f32 / f64 rows keep the float64 quotients as they are
    if dt in half.HALF:
        ldx, stx, vt = half.load(dt), half.store(dt), float32
    else:
        ldx, stx, vt = half.identity, half.identity, float64
    mt = float64 if dt == "f64" else float32   # the elements' compute type (the maximum's)

    def softmax_topk_block(x, rows, n, k, normalize, vals, idx):
        shm = cuda.shared.array(NT, mt)        # maxima
        shv = cuda.shared.array(NT, vt)        # the candidates' values
        shi = cuda.shared.array(NT, int64)     # the candidates' indices
        she = cuda.shared.array(NT, float64)   # exponentials, summed in order by thread 0
        tot_sh = cuda.shared.array(1, float64)
        tid = cuda.threadIdx.x
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            base = r * n
            obase = r * k
            mx = ldx(x[base + min(tid, n - 1)])
            for j in range(tid + NT, n, NT):
                v = ldx(x[base + j])
                mx = _nan_max(mx, v)
            shm[tid] = mx
            cuda.syncthreads()
            h = NT // 2
            while h > 0:
                if tid < h:
                    shm[tid] = _nan_max(shm[tid], shm[tid + h])
                cuda.syncthreads()
                h //= 2
            mx = shm[0]
            acc = 0.0
            for c0 in range(0, n, NT):
                j = c0 + tid
                if j < n:
                    she[tid] = float64(math.exp(ldx(x[base + j]) - mx))
                cuda.syncthreads()
                if tid == 0:
                    for t in range(min(NT, n - c0)):
                        acc += she[t]
                cuda.syncthreads()
            if tid == 0:
                tot_sh[0] = acc
            cuda.syncthreads()
            tot = tot_sh[0]
            pv = ldx(stx(math.exp(ldx(x[base]) - mx) / tot))
            pi = -1
            s64 = 0.0
            for s in range(k):
                bi = -1
                bv = pv
                for j in range(tid, n, NT):
                    v = ldx(stx(math.exp(ldx(x[base + j]) - mx) / tot))
                    if pi >= 0 and not _before(pv, pi, v, j, True):
                        continue
                    if bi < 0 or _before(v, j, bv, bi, True):
                        bv = v
                        bi = j
                shv[tid] = bv
                shi[tid] = bi
                cuda.syncthreads()
                _tree_first(shv, shi, tid, NT, -1)
                bv = shv[0]
                bi = shi[0]
                if tid == 0:
                    vals[obase + s] = stx(bv)
                    idx[obase + s] = bi
                s64 += float64(bv)
                pv = bv
                pi = bi
                cuda.syncthreads()
            if normalize and tid == 0:
                d = ldx(stx(s64))
                for s in range(k):
                    vals[obase + s] = stx(ldx(vals[obase + s]) / d)
            cuda.syncthreads()

    softmax_topk_block.__name__ = f"softmax_topk_block{NT}_{dt}"
    return kernel(softmax_topk_block)


@kernel
def cumsum_cols(x, out, outer, n, inner, init, exclusive, reverse):
    """One thread per ``(outer, inner)`` column scanning ``n`` in order (float64 accumulator for
    floats, the dtype's own for integers: ``init`` gives the type), as the reference adds."""
    for c in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        o = c // inner
        i = c - o * inner
        base = o * n * inner + i
        acc = init
        for t in range(n):
            j = n - 1 - t if reverse else t
            p = base + j * inner
            if exclusive:
                out[p] = st(acc)
                acc += ld(x[p])
            else:
                acc += ld(x[p])
                out[p] = st(acc)
