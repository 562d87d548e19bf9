"""Code generation of elementwise kernels: an expression DAG of elementwise ops (one op, or the
region of an ``sc.fused {kind="elementwise"}``) becomes the Python source of Numba kernels that
loop once over the output's iteration space.

Iteration space and broadcasting
    The outputs share one shape, the iteration space (an output with a smaller, broadcastable
    shape is supported too: it gets stride 0 where it is broadcast); every input broadcasts to
    it by NumPy rules. The broadcast structure is known from the IR types (a dim broadcasts iff it is 1 in
    the input and not 1 in the output; a symbolic dim only meets itself or 1), so it is fixed at
    generation time: output dims that are statically 1 are dropped, and adjacent dims where every
    input either varies or is broadcast alike are merged. ``[T, 64] + [T, 64]`` is one flat loop,
    ``[T, 64] + [64]`` two loops (the second input has stride 0 in the outer one), ``[B, S, 1] *
    [B, S, D]`` two loops. Arrays are passed flattened (``reshape(-1)``, a view of C-contiguous
    data) with the collapsed sizes as int64 arguments, so one kernel serves every rank and every
    runtime size with the same pattern: each generated function has exactly one Numba
    specialization (its signature is fixed here and compiled explicitly).

Two functions per kernel module
    ``kser`` (serial nested loops) and ``kpar`` (``parallel=True``: ``prange`` over chunks of
    ``CHUNK`` consecutive elements of the iteration space, each walking the rows it overlaps, so
    a flat 1-D space splits and short rows are grouped). All index arithmetic is uint64: with
    signed indices Numba emits negative-index wraparound selects that stop LLVM from vectorizing
    (measured 4x slower). The wrapper picks ``kpar`` when the output has at least
    ``parallel_threshold(cost)`` elements (2**17 for an add, divided by the per-element cost
    estimate: measured crossover on 2 Zen 5 cores is 64K-128K elements for an add); ``kpar`` is
    compiled at lowering when the output is statically that big, on first use when the size is
    symbolic, and never for statically small outputs (a parallel compile costs ~1 s, a serial
    one ~0.15 s).

Caching
    The source goes through ``sparsec.runtime.kernel_cache`` (one module file per content hash,
    ``@njit(cache=True)``), so identical kernels are compiled once per machine.

dtypes (semantics of the ops' NumPy references)
    f16 and bf16 arrays travel as uint16 views; values are widened to f32, every op is computed
    in f32 and its result rounded to the 16-bit format (``sparsec.runtime.cpu.numerics``), i.e.
    the reference's "compute in f32, round once per op". ``exp``, ``tanh``, ``sigmoid``/``silu``,
    ``gelu_tanh``, ``erf`` and ``gelu`` use branch-free float32 implementations from
    ``numerics`` (Cephes / Juffa polynomials, within ~1-2 ulp) that LLVM vectorizes; Numba's own
    ``np.exp`` is a scalar libm call (no SVML), 4x slower than NumPy. f64 uses libm
    (``math.erf`` for erf/gelu, as the references). Integer results wrap to their width after
    every op (NumPy's fixed-width arithmetic), integer ``div`` truncates toward zero and raises
    ``ZeroDivisionError`` on a zero divisor, comparisons give bool, ``maximum``/``minimum``/
    ``relu`` propagate NaN like ``np.maximum``, ``sigmoid`` is the stable two-branch form.
    Float math uses ``error_model="numpy"`` (x/0 is inf, not an exception).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

# ---------------------------------------------------------------------------------------------
# the program: what a kernel computes, independent of the IR objects


@dataclass(frozen=True)
class Node:
    """One value of the DAG. ``op`` is ``"input"`` (``args = (input index,)``), ``"const"``
    (``value`` a Python scalar) or an elementwise op name (``"sc.add"``); ``dtype`` the IR dtype
    name of the value."""
    op: str
    args: tuple[int, ...]
    dtype: str
    value: object = None  # (sc.cast: the target dtype is ``dtype``; no op carries attributes)


@dataclass
class Program:
    """``inputs[j]``: (dtype name, flags per collapsed dim: True = varies along it). ``outputs``:
    node indices (one per kernel output, in order)."""
    ndim: int
    inputs: list[tuple[str, tuple[bool, ...]]]
    nodes: list[Node]
    outputs: list[int]
    #: per output, flags like the inputs' (None: every output spans the whole space)
    out_flags: list[tuple[bool, ...]] | None = None

    def __post_init__(self):
        if self.out_flags is None:
            self.out_flags = [(True,) * self.ndim for _ in self.outputs]

    @property
    def out_dtypes(self) -> list[str]:
        return [self.nodes[i].dtype for i in self.outputs]

    def cost(self) -> int:
        """Rough cost per element (1 = an add), for the parallel threshold."""
        return max(1, sum(OP_COST.get(n.op, 1) for n in self.nodes if n.op not in ("input", "const")))


OP_COST = {"sc.exp": 8, "sc.log": 8, "sc.tanh": 10, "sc.sin": 10, "sc.cos": 10, "sc.erf": 12, "sc.gelu": 16,
           "sc.gelu_tanh": 12, "sc.silu": 9, "sc.sigmoid": 9, "sc.pow": 14, "sc.div": 2, "sc.sqrt": 2,
           "sc.rsqrt": 3, "sc.reciprocal": 2}

#: output elements (for cost 1) from which the parallel variant is used; on 2 Zen 5 cores a
#: parallel region costs ~5-10 us and an add streams ~100 GB/s: parallel broke even at 64K
#: elements and was 1.7-2x faster from 128K (add, f32)
PARALLEL_MIN_ELEMENTS = 1 << 17
PARALLEL_FLOOR = 1 << 13


def parallel_threshold(cost: int) -> int:
    return max(PARALLEL_FLOOR, PARALLEL_MIN_ELEMENTS // max(1, cost))


# ---------------------------------------------------------------------------------------------
# broadcasting pattern


def collapse(out_shape, in_shapes) -> tuple[list[list[int]], list[tuple[bool, ...]]]:
    """Group the output dims into collapsed loops.

    Returns ``(groups, flags)``: ``groups[k]`` the output dims merged into loop ``k`` (their
    sizes multiply), ``flags[j][k]`` whether input ``j`` varies along loop ``k``. At least one
    loop (an empty group has size 1)."""
    rank = len(out_shape)
    cols: list[tuple[int, tuple[bool, ...]]] = []
    for i, d in enumerate(out_shape):
        if d == 1:
            continue
        col = []
        for s in in_shapes:
            j = i - (rank - len(s))
            col.append(j >= 0 and s[j] != 1)
        cols.append((i, tuple(col)))
    groups: list[list[int]] = []
    gflags: list[tuple[bool, ...]] = []
    for i, col in cols:
        if groups and gflags[-1] == col:
            groups[-1].append(i)
        else:
            groups.append([i])
            gflags.append(col)
    if not groups:
        groups, gflags = [[]], [tuple(False for _ in in_shapes)]
    flags = [tuple(gflags[k][j] for k in range(len(groups))) for j in range(len(in_shapes))]
    return groups, flags


# ---------------------------------------------------------------------------------------------
# scalar expressions per op

_FLOATS = ("f32", "f64", "f16", "bf16")
_INTS = {"i8": "np.int8", "i32": "np.int32", "i64": "np.int64", "ui8": "np.uint8"}
_NP_DTYPE = {"f32": "np.float32", "f64": "np.float64", "f16": "np.uint16", "bf16": "np.uint16",
             "i8": "np.int8", "i32": "np.int32", "i64": "np.int64", "ui8": "np.uint8", "i1": "np.bool_"}


def _ct(dt: str) -> str:
    """The Numba scalar type values of IR dtype ``dt`` are computed in."""
    if dt == "f64":
        return "np.float64"
    if dt in _FLOATS:
        return "np.float32"
    if dt == "i1":
        return "np.bool_"
    return _INTS[dt]


def _round(dt: str, e: str) -> str:
    """An f32/f64 expression (computed in ``_ct(dt)``) as a value of dtype ``dt``."""
    if dt == "f16":
        return f"round_f16({e})"
    if dt == "bf16":
        return f"round_bf16({e})"
    if dt in _INTS:
        return f"{_INTS[dt]}({e})"
    return f"{_ct(dt)}({e})"


def _round64(dt: str, e: str) -> str:
    """An f64 expression as a value of float dtype ``dt`` (one rounding, as the references do)."""
    if dt == "f64":
        return e
    if dt == "f32":
        return f"np.float32({e})"
    if dt == "f16":
        return f"f64_round_f16({e})"
    return f"f64_round_bf16({e})"


def _lit(dt: str, v) -> str:
    """A literal of the compute type of ``dt``."""
    if dt == "i1":
        return "True" if v else "False"
    if dt in _FLOATS:
        v = float(v)
        if math.isnan(v):
            r = "np.nan"
        elif math.isinf(v):
            r = "np.inf" if v > 0 else "-np.inf"
        else:
            r = repr(v)
        return f"{_ct(dt)}({r})"
    return f"{_INTS[dt]}({int(v)})"


class _Emitter:
    def __init__(self):
        self.lines: list[str] = []
        self.helpers: set[str] = set()
        self.int_div = False
        self._n = 0

    def tmp(self) -> str:
        self._n += 1
        return f"u{self._n}"

    def let(self, expr: str) -> str:
        v = self.tmp()
        self.lines.append(f"{v} = {expr}")
        return v


def _emit_op(em: _Emitter, node: Node, args: list[str], arg_dts: list[str]) -> str:
    """Append statements computing ``node`` from the argument variables; returns the expression
    (a variable or a literal) holding its value in the compute type of ``node.dtype``."""
    op, dt = node.op, node.dtype
    name = op[3:]
    a = args[0] if args else None
    adt = arg_dts[0] if arg_dts else None
    ct = _ct(dt)
    is_f = dt in _FLOATS

    if op == "sc.cast":
        return _emit_cast(em, a, adt, dt)
    if name in ("exp", "tanh") and ct == "np.float32":  # vectorizable float32 versions
        return em.let(_round(dt, f"{name}_f32({a})"))
    if name in ("exp", "log", "sqrt", "tanh", "sin", "cos"):
        return em.let(_round(dt, f"np.{name}({a})"))
    if name == "rsqrt":
        return em.let(_round(dt, f"{ct}(1.0) / np.sqrt({a})"))
    if name == "reciprocal":
        return em.let(_round(dt, f"{ct}(1.0) / {a}"))
    if name in ("erf", "gelu") and ct == "np.float32":  # vectorizable, max error ~1 ulp of f32
        return em.let(_round(dt, f"{name}_f32({a})"))
    if name == "erf":
        return em.let(_round64(dt, f"math.erf(np.float64({a}))"))
    if name == "gelu":
        if dt == "f64":
            return em.let(f"0.5 * {a} * (1.0 + math.erf({a} / {math.sqrt(2.0)!r}))")
        half = em.let(f"np.float32(0.5) * {a}")
        return em.let(_round64(dt, f"np.float64({half}) * (1.0 + math.erf(np.float64({a}) / {math.sqrt(2.0)!r}))"))
    if name == "gelu_tanh":
        k = _lit(dt, math.sqrt(2.0 / math.pi))
        c = _lit(dt, 0.044715)
        cube = em.let(f"{a} * {a} * {a}")
        inner = em.let(f"{k} * ({a} + {c} * {cube})")
        th = "tanh_f32" if ct == "np.float32" else "np.tanh"
        return em.let(_round(dt, f"{ct}(0.5) * {a} * ({ct}(1.0) + {th}({inner}))"))
    if name in ("sigmoid", "silu") and ct == "np.float32":
        s = em.let(f"sigmoid_f32({a})")
        return em.let(_round(dt, s if name == "sigmoid" else f"{a} * {s}"))
    if name in ("sigmoid", "silu"):
        e = em.let(f"np.exp(-abs({a}))")
        s = em.let(f"({ct}(1.0) / ({ct}(1.0) + {e})) if {a} >= {ct}(0.0) else ({e} / ({ct}(1.0) + {e}))")
        if name == "sigmoid":
            return em.let(_round(dt, s)) if dt in ("f16", "bf16") else s
        return em.let(_round(dt, f"{a} * {s}"))
    if name == "neg":
        return em.let(f"-{a}" if is_f else _round(dt, f"-{a}"))
    if name == "abs":
        return em.let(f"abs({a})" if is_f else _round(dt, f"abs({a})"))
    selected = emit_select(em, name, dt, args)
    if selected is not None:
        return selected
    if name == "square":
        return em.let(_round(dt, f"{a} * {a}"))

    b = args[1] if len(args) > 1 else None
    sym = {"add": "+", "sub": "-", "mul": "*"}
    if name in sym:
        return em.let(_round(dt, f"{a} {sym[name]} {b}"))
    if name == "div":
        if is_f:
            return em.let(_round(dt, f"{a} / {b}"))
        return _emit_int_div(em, a, b, dt)
    if name == "pow":
        return em.let(_round(dt, f"{a} ** {b}"))
    if name == "logical_and":
        return em.let(f"{a} & {b}")
    if name == "logical_or":
        return em.let(f"{a} | {b}")
    raise NotImplementedError(f"codegen: no scalar rule for {op}")


_COMPARE = {"equal": "==", "not_equal": "!=", "less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">="}


def emit_select(em, name: str, dt: str, args: list[str]) -> str | None:
    """The rules that only compare and pick an operand, the same on every target (this emitter
    and the CUDA one): relu, maximum/minimum (a NaN operand propagates, as NumPy), comparisons,
    logical_not, where. None for any other op."""
    a = args[0] if args else None
    b = args[1] if len(args) > 1 else None
    is_f = dt in _FLOATS
    if name == "relu":
        z = _lit(dt, 0)
        if is_f:
            return em.let(f"{a} if ({a} >= {z} or {a} != {a}) else {z}")
        return em.let(f"{a} if {a} > {z} else {z}")
    if name in ("maximum", "minimum"):
        c = ">=" if name == "maximum" else "<="
        if is_f:
            return em.let(f"{a} if ({a} {c} {b} or {a} != {a}) else {b}")
        return em.let(f"{a} if {a} {c} {b} else {b}")
    if name in _COMPARE:
        return em.let(f"{a} {_COMPARE[name]} {b}")
    if name == "logical_not":
        return em.let(f"not {a}")
    if name == "where":
        return em.let(f"{args[1]} if {a} else {args[2]}")
    return None


def _emit_int_div(em: _Emitter, a: str, b: str, dt: str) -> str:
    """C division (toward zero) with NumPy's wrap-around for MIN // -1; zero divisors counted."""
    em.int_div = True
    wide = "np.uint64" if dt == "ui8" else "np.int64"
    x = em.let(f"{wide}({a})")
    y = em.let(f"{wide}({b})")
    q = em.tmp()
    em.lines.append(f"if {y} == 0:")
    em.lines.append("    bad += 1")
    em.lines.append(f"    {q} = {wide}(0)")
    if dt != "ui8":
        em.lines.append(f"elif {y} == -1:")
        em.lines.append(f"    {q} = -{x}")
    em.lines.append("else:")
    em.lines.append(f"    {q} = {x} // {y}")
    if dt != "ui8":
        em.lines.append(f"    if {q} * {y} != {x} and (({x} < 0) != ({y} < 0)):")
        em.lines.append(f"        {q} += 1")
    return em.let(f"{_INTS[dt]}({q})")


def _emit_cast(em: _Emitter, a: str, src: str, dst: str) -> str:
    if src == dst:
        return a
    if dst == "i1":
        return em.let(f"{a} != 0" if src != "i1" else a)
    if src == "i1":
        one, zero = _lit(dst, 1), _lit(dst, 0)
        return em.let(f"{one} if {a} else {zero}")
    if dst in _INTS:
        if src in _FLOATS:
            return em.let(f"{_INTS[dst]}(np.int64({a}))" if dst != "i64" else f"np.int64({a})")
        return em.let(f"{_INTS[dst]}({a})")
    # dst is a float
    if src in _INTS:
        if dst == "f64":
            return em.let(f"np.float64({a})")
        return em.let(_round(dst, f"np.float32({a})"))
    # float -> float (values of f16/bf16 are exact f32 numbers)
    if dst == "f64":
        return em.let(f"np.float64({a})")
    if src == "f64":
        return em.let(_round64(dst, a))
    return em.let(_round(dst, a))  # f32/f16/bf16 -> f32/f16/bf16


# ---------------------------------------------------------------------------------------------
# source


HELPERS = ("f16_to_f32", "f32_to_f16", "bf16_to_f32", "f32_to_bf16", "round_f16", "round_bf16", "f64_round_f16",
           "f64_round_bf16", "exp_f32", "tanh_f32", "sigmoid_f32", "erf_f32", "gelu_f32")

CHUNK = 32768


def _load(dt: str, ref: str) -> str:
    if dt == "f16":
        return f"f16_to_f32({ref})"
    if dt == "bf16":
        return f"bf16_to_f32({ref})"
    return ref


def _store(dt: str, v: str) -> str:
    if dt == "f16":
        return f"f32_to_f16({v})"
    if dt == "bf16":
        return f"f32_to_bf16({v})"
    return v


def _live(prog: Program) -> list[bool]:
    live = [False] * len(prog.nodes)
    stack = list(prog.outputs)
    while stack:
        i = stack.pop()
        if live[i]:
            continue
        live[i] = True
        n = prog.nodes[i]
        if n.op not in ("input", "const"):
            stack.extend(n.args)
    return live


def _body(prog: Program) -> tuple[list[str], bool, set[int]]:
    """Statements of one element (output ``k``'s store uses the placeholder ``{OUTk}`` for its
    index). Returns (lines, whether integer division is used, the inputs that are read)."""
    em = _Emitter()
    val: dict[int, str] = {}
    live = _live(prog)
    used: set[int] = set()
    for i, n in enumerate(prog.nodes):
        if not live[i]:
            continue
        if n.op == "input":
            val[i] = f"x{n.args[0]}"
            used.add(n.args[0])
        elif n.op == "const":
            val[i] = _lit(n.dtype, n.value)
        else:
            val[i] = _emit_op(em, n, [val[a] for a in n.args], [prog.nodes[a].dtype for a in n.args])
    for k, o in enumerate(prog.outputs):
        em.lines.append(f"y{k}[{{OUT{k}}}] = {_store(prog.nodes[o].dtype, val[o])}")
    return em.lines, em.int_div, used


def generate(prog: Program) -> str:
    """Python source of a module with ``kser`` and ``kpar`` for ``prog``."""
    K = prog.ndim
    nin = len(prog.inputs)
    nout = len(prog.outputs)
    body, int_div, used_inputs = _body(prog)
    params = ", ".join([f"n{k}" for k in range(K)] + [f"a{j}" for j in range(nin)] + [f"y{k}" for k in range(nout)])
    # all index arithmetic is unsigned (m* = the sizes as uint64): Numba then omits the
    # negative-index wraparound, which otherwise blocks vectorization of the inner loop
    U = "np.uint64"

    # arrays with their flags: ("a", j) inputs that are read, ("y", k) outputs
    arrays = [("a", j) for j in sorted(used_inputs)] + [("y", k) for k in range(nout)]

    def flags_of(key):
        return prog.inputs[key[1]][1] if key[0] == "a" else prog.out_flags[key[1]]

    def off_name(key, k):
        return f"p{key[0]}{key[1]}_{k}"

    def stride(key, k: int) -> str:
        """The array's stride along loop k: the product of the later loops it varies along."""
        fl = flags_of(key)
        later = [f"m{m}" for m in range(k + 1, K) if fl[m]]
        return " * ".join(later) if later else f"{U}(1)"

    def offsets(ind: str) -> tuple[list[str], dict]:
        """Offsets of every array for the outer indices i0..i{K-2}."""
        lines, offs = [], {key: "0" for key in arrays}
        for k in range(K - 1):
            for key in arrays:
                if flags_of(key)[k]:
                    base = "" if offs[key] == "0" else f"{offs[key]} + "
                    lines.append(f"{ind}{off_name(key, k)} = {base}i{k} * ({stride(key, k)})")
                    offs[key] = off_name(key, k)
        return lines, offs

    def index(key, offs, ivar) -> str:
        if not flags_of(key)[K - 1]:
            return offs[key]
        return f"{offs[key]} + {ivar}" if offs[key] != "0" else ivar

    def hoisted(offs: dict) -> list[str]:
        return [f"x{j} = {_load(prog.inputs[j][0], f'a{j}[{offs[(t, j)]}]')}" for t, j in arrays
                if t == "a" and not prog.inputs[j][1][K - 1]]

    def inner(ivar: str, offs: dict) -> list[str]:
        out = [f"x{j} = {_load(prog.inputs[j][0], f'a{j}[{index((t, j), offs, ivar)}]')}" for t, j in arrays
               if t == "a" and prog.inputs[j][1][K - 1]]
        for ln in body:
            for k in range(nout):
                ln = ln.replace(f"{{OUT{k}}}", index(("y", k), offs, ivar))
            out.append(ln)
        return out

    sizes_u = [f"    m{k} = {U}(n{k})" for k in range(K)]

    # serial: nested loops
    ser = list(sizes_u)
    ind = "    "
    offs = {key: "0" for key in arrays}
    for k in range(K - 1):
        ser.append(f"{ind}for i{k} in range(m{k}):")
        ind += "    "
        for key in arrays:
            if flags_of(key)[k]:
                base = "" if offs[key] == "0" else f"{offs[key]} + "
                ser.append(f"{ind}{off_name(key, k)} = {base}i{k} * ({stride(key, k)})")
                offs[key] = off_name(key, k)
    ser += [ind + ln for ln in hoisted(offs)]
    ser.append(f"{ind}for i{K - 1} in range(m{K - 1}):")
    ser += [ind + "    " + ln for ln in inner(f"i{K - 1}", offs)]

    # parallel: prange over chunks of CHUNK consecutive elements of the iteration space; a chunk
    # walks the rows it overlaps (short inner loops are grouped, a flat space still splits)
    par = list(sizes_u)
    last = f"m{K - 1}"
    par.append(f"    total = {' * '.join(f'm{k}' for k in range(K))}")
    par.append(f"    nw = (total + {U}({CHUNK - 1})) // {U}({CHUNK})")
    par.append("    for w in prange(nw):")
    ind = "        "
    par.append(f"{ind}lo = w * {U}({CHUNK})")
    par.append(f"{ind}hi = min(lo + {U}({CHUNK}), total)")
    if K == 1:
        zero = {key: "0" for key in arrays}
        par += [ind + ln for ln in hoisted(zero)]
        par.append(f"{ind}for i0 in range(lo, hi):")
        par += [ind + "    " + ln for ln in inner("i0", zero)]
    else:
        par.append(f"{ind}r = lo // {last}")
        par.append(f"{ind}c = lo - r * {last}")
        par.append(f"{ind}pos = lo")
        par.append(f"{ind}while pos < hi:")
        ind2 = ind + "    "
        par.append(f"{ind2}ce = min({last}, c + (hi - pos))")
        par.append(f"{ind2}rr = r")
        for k in range(K - 2, 0, -1):  # unravel the row into i0..i{K-2}
            par.append(f"{ind2}i{k} = rr % m{k}")
            par.append(f"{ind2}rr = rr // m{k}")
        par.append(f"{ind2}i0 = rr")
        olines, offs = offsets(ind2)
        par += olines
        par += [ind2 + ln for ln in hoisted(offs)]
        par.append(f"{ind2}for i{K - 1} in range(c, ce):")
        par += [ind2 + "    " + ln for ln in inner(f"i{K - 1}", offs)]
        par.append(f"{ind2}pos += ce - c")
        par.append(f"{ind2}r += {U}(1)")
        par.append(f"{ind2}c = {U}(0)")

    used = sorted(h for h in HELPERS if any(re.search(rf"\b{h}\(", ln) for ln in ser))
    head = ["# generated by sparsec.lower.codegen: elementwise kernel", "import math", "",
            "import numpy as np", "from numba import njit, prange"]
    if used:
        head.append(f"from sparsec.runtime.cpu.numerics import {', '.join(used)}")
    desc = "; ".join(f"{n.op}:{n.dtype}" for n in prog.nodes if n.op not in ("input", "const"))
    head.append(f"# {desc}")
    head.append(f"# inputs: {', '.join(f'{dt}{list(map(int, fl))}' for dt, fl in prog.inputs)}")
    if any(not all(f) for f in prog.out_flags):
        head.append(f"# outputs: {', '.join(str(list(map(int, f))) for f in prog.out_flags)}")
    src = head + [""]

    def fn(name, parallel, lines):
        opts = "cache=True, error_model='numpy', nogil=True" + (", parallel=True" if parallel else "")
        out = ["", f"@njit({opts})", f"def {name}({params}):"]
        if int_div:
            out.append("    bad = 0")
        out += lines
        if int_div:
            out.append("    if bad > 0:")
            out.append("        raise ZeroDivisionError('integer division by zero')")
        return out

    src += fn("kser", False, ser)
    src += fn("kpar", True, par)
    return "\n".join(src) + "\n"


def numba_signature(prog: Program):
    """The one signature both functions are compiled for."""
    from numba import types
    tymap = {"f32": types.float32, "f64": types.float64, "f16": types.uint16, "bf16": types.uint16,
             "i8": types.int8, "i32": types.int32, "i64": types.int64, "ui8": types.uint8, "i1": types.boolean}
    args = [types.int64] * prog.ndim
    args += [types.Array(tymap[dt], 1, "C", readonly=True) for dt, _ in prog.inputs]
    args += [types.Array(tymap[dt], 1, "C") for dt in prog.out_dtypes]
    return types.void(*args)


# ---------------------------------------------------------------------------------------------
# the callable kernel: a thin Python wrapper over the compiled functions


@dataclass
class ElementwiseKernel:
    """What ``build`` returns: ``fn(*inputs, *outputs)``, ``bind(*inputs, *outputs)`` (the same
    call with the arrays fixed: sizes and flat views computed once; see ``Kernel.bind``) and
    facts for reports."""
    fn: object
    source: str
    key: str
    ndim: int
    threshold: int
    info: dict = field(default_factory=dict)
    bind: object = None


_U16 = np.dtype(np.uint16)


def build(prog: Program, groups: list[list[int]], input_is_u16: list[bool], output_is_u16: list[bool],
          n_operands: int, constants: list[np.ndarray], parallel: str = "lazy",
          dim_source: dict[int, tuple[int, int]] | None = None) -> ElementwiseKernel:
    """Generate, cache and compile ``prog``; return the wrapper.

    ``groups``: the iteration-space dims of each collapsed loop (from ``collapse``); the first
    ``n_operands`` program inputs are the call's inputs, the rest are ``constants`` (arrays the
    wrapper passes itself). ``dim_source[d] = (k, j)``: the runtime size of space dim ``d`` is
    dim ``j`` of output ``k`` (default: output 0 spans the space). ``parallel``: ``"eager"``
    (compile ``kpar`` now), ``"lazy"`` (on the first large call) or ``"never"``."""
    from sparsec.runtime import kernel_cache
    from sparsec.runtime.cpu.common import bound

    src = generate(prog)
    sig = numba_signature(prog)
    ser = kernel_cache.compile_function(src, "kser", sig)
    th = parallel_threshold(prog.cost())
    ns: dict = {"_ser": ser, "_u16": _U16, "_bound": bound}

    def _par_now():
        """The parallel kernel, compiled now if it is still lazy."""
        if ns["_par"] is _lazy_par:
            ns["_par"] = kernel_cache.compile_function(src, "kpar", sig)
        return ns["_par"]

    def _lazy_par(*args):
        return _par_now()(*args)

    if parallel == "eager":
        ns["_par"] = kernel_cache.compile_function(src, "kpar", sig)
    else:
        ns["_par"] = _lazy_par if parallel == "lazy" else ser
    ns["_par_now"] = _par_now
    for i, c in enumerate(constants):
        c = np.ascontiguousarray(c).reshape(-1)
        ns[f"_c{i}"] = c.view(_U16) if input_is_u16[n_operands + i] else c
    nout = len(prog.outputs)
    ins = [f"a{j}" for j in range(n_operands)]
    outs = [f"o{k}" for k in range(nout)]
    simple = dim_source is None
    sizes = []
    for g in groups:
        if simple:
            sizes.append(" * ".join(f"s[{d}]" for d in g) if g else "1")
        else:
            sizes.append(" * ".join(f"o{dim_source[d][0]}.shape[{dim_source[d][1]}]" for d in g) if g else "1")
    args = []
    for j in range(len(prog.inputs)):
        if j >= n_operands:
            args.append(f"_c{j - n_operands}")
        else:
            args.append(f"a{j}.reshape(-1)" + (".view(_u16)" if input_is_u16[j] else ""))
    for k in range(nout):
        args.append(f"o{k}.reshape(-1)" + (".view(_u16)" if output_is_u16[k] else ""))
    # fn computes the sizes and flat views per call; bind (Kernel.bind) the same expressions once,
    # then returns the call with them fixed (None unless every array is C-contiguous: a reshape
    # that copies would leave the bound call a stale array)
    params = ", ".join(ins + outs)
    head = ["    s = o0.shape"] if simple else []
    head += [f"    n{k} = {e}" for k, e in enumerate(sizes)]
    call = ", ".join([f"n{k}" for k in range(len(sizes))] + args)
    big = "False" if parallel == "never" else f"{' * '.join(f'n{k}' for k in range(len(sizes))) or '1'} >= {th}"
    contiguous = " and ".join(f"{a}.flags.c_contiguous" for a in ins + outs)
    lines = [f"def fn({params}):", *head,
             f"    if {big}:", f"        _par({call})", "    else:", f"        _ser({call})",
             "", f"def bind({params}):", f"    if not ({contiguous}):", "        return None", *head,
             f"    args = ({call},)", f"    if {big}:",
             "        return _bound(_par_now(), *args)",
             "    return _bound(_ser, *args)"]
    code = "\n".join(lines) + "\n"
    key = kernel_cache.kernel_key(src)
    exec(compile(code, f"<sparsec elementwise wrapper {key[:12]}>", "exec"), ns)
    fn, bind = ns["fn"], ns["bind"]
    return ElementwiseKernel(fn=fn, source=src, key=key, ndim=prog.ndim, threshold=th,
                             info={"loops": prog.ndim, "cost": prog.cost(), "parallel_threshold": th,
                                   "parallel": parallel, "wrapper": code}, bind=bind)
