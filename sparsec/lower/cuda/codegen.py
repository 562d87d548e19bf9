"""CUDA code generation of elementwise kernels: the same ``codegen.Program`` the CPU target
builds for one elementwise op or an ``sc.fused`` region (``sparsec.lower.codegen``) becomes the
Python source of one numba.cuda kernel.

Iteration space and broadcasting are the CPU generator's: output dims collapsed into ``K``
loops (``codegen.collapse``), every input varying or broadcast per loop (flags fixed at
generation time), arrays passed flat with the loop sizes as int64 arguments, so one kernel
serves every rank and runtime size with the same broadcast pattern. The kernel is a grid-stride
loop over the flat output index ``e``; each thread unravels ``e`` into the loop indices and
computes every input's offset from them (consecutive threads touch consecutive output elements:
coalesced stores, and coalesced loads for inputs that vary along the last loop).

Numerics: f32 math through libdevice (``math.exp`` etc. on float32: CUDA's ``expf``, within
2 ulp), f64 in f64; f16/bf16 values are widened to f32 as they are loaded (``runtime.cuda.half``:
f16 arrays are numba float16, bf16 arrive as uint16 bits), every op computes in f32 and rounds its
result to the 16-bit format (``round_f16``/``round_bf16``, nearest even), as the CPU generator and
the references ("compute in f32, round to the operand dtype"); a cast from f64 to f16 rounds once; integer results wrap to their width after each op (as NumPy); integer
division truncates toward zero and a zero divisor is reported through the kernel's error slot
(the CPU kernel raises ``ZeroDivisionError``; a device cannot, so the runtime raises a
``KernelError`` at the end of the call), the result element is then 0.
"""
from __future__ import annotations

import math

from ..codegen import _FLOATS, _INTS, Program, _ct, _lit, emit_select

_HALF = ("f16", "bf16")

#: error code of an integer division by zero (``err[0]``)
ERR_INT_DIV_ZERO = 1


class _Emitter:
    def __init__(self):
        self.lines: list[str] = []
        self.int_div = False
        self._n = 0

    def let(self, expr: str) -> str:
        self._n += 1
        v = f"u{self._n}"
        self.lines.append(f"{v} = {expr}")
        return v


def _emit_op(em: _Emitter, op: str, dt: str, args: list[str], arg_dts: list[str]) -> str:
    """The value of one op; an f16/bf16 result is computed in f32 and rounded once to its format
    (the reference's "compute in f32, round to the operand dtype", as the CPU kernels)."""
    if dt in _HALF and op != "sc.cast":
        v = _emit_op_compute(em, op, "f32", args, ["f32" if d in _HALF else d for d in arg_dts])
        return em.let(f"round_{dt}({v})")
    return _emit_op_compute(em, op, dt, args, arg_dts)


def _emit_op_compute(em: _Emitter, op: str, dt: str, args: list[str], arg_dts: list[str]) -> str:
    name = op[3:]
    a = args[0] if args else None
    ct = _ct(dt)
    is_f = dt in _FLOATS
    if op == "sc.cast":
        return _emit_cast(em, a, arg_dts[0], dt)
    if name in ("exp", "log", "sqrt", "tanh", "sin", "cos", "erf"):
        return em.let(f"{ct}(math.{name}({a}))")
    if name == "rsqrt":
        return em.let(f"{ct}({ct}(1.0) / math.sqrt({a}))")
    if name == "reciprocal":
        return em.let(f"{ct}({ct}(1.0) / {a})")
    if name == "gelu":
        return em.let(f"{ct}({ct}(0.5) * {a} * ({ct}(1.0) + math.erf({a} * {ct}({1.0 / math.sqrt(2.0)!r}))))")
    if name == "gelu_tanh":
        k, c = _lit(dt, math.sqrt(2.0 / math.pi)), _lit(dt, 0.044715)
        return em.let(f"{ct}({ct}(0.5) * {a} * ({ct}(1.0) + math.tanh({k} * ({a} + {c} * {a} * {a} * {a}))))")
    if name in ("sigmoid", "silu"):
        e = em.let(f"{ct}(math.exp(-abs({a})))")
        s = em.let(f"{ct}(1.0) / ({ct}(1.0) + {e}) if {a} >= {ct}(0.0) else {e} / ({ct}(1.0) + {e})")
        return em.let(f"{ct}({s})" if name == "sigmoid" else f"{ct}({a} * {s})")
    if name == "neg":
        return em.let(f"{ct}(-{a})")
    if name == "abs":
        return em.let(f"{ct}(abs({a}))")
    selected = emit_select(em, name, dt, args)
    if selected is not None:
        return selected
    if name == "square":
        return em.let(f"{ct}({a} * {a})")
    b = args[1] if len(args) > 1 else None
    sym = {"add": "+", "sub": "-", "mul": "*"}
    if name in sym:
        return em.let(f"{ct}({a} {sym[name]} {b})")
    if name == "div":
        if is_f:
            return em.let(f"{ct}({a} / {b})")
        return _emit_int_div(em, a, b, dt)
    if name == "pow":
        if is_f:
            return em.let(f"{ct}(math.pow({a}, {b}))")
        return em.let(f"{ct}(np.int64({a}) ** np.int64({b}))")
    if name == "logical_and":
        return em.let(f"{a} and {b}")
    if name == "logical_or":
        return em.let(f"{a} or {b}")
    raise NotImplementedError(f"cuda codegen: no scalar rule for {op}")


def _emit_int_div(em: _Emitter, a: str, b: str, dt: str) -> str:
    em.int_div = True
    wide = "np.uint64" if dt == "ui8" else "np.int64"
    x = em.let(f"{wide}({a})")
    y = em.let(f"{wide}({b})")
    q = em.let(f"{wide}(0)")
    em.lines.append(f"if {y} == 0:")
    em.lines.append(f"    if cuda.atomic.compare_and_swap(err[0:1], 0, {ERR_INT_DIV_ZERO}) == 0:")
    em.lines.append("        err[1] = e")
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
    if dst in _HALF:  # one rounding from the source value (values of f16/bf16 are exact f32 numbers)
        if src == "i1":
            return em.let(f"np.float32(1.0) if {a} else np.float32(0.0)")
        if src == "f64" and dst == "f16":
            return em.let(f"f64_round_f16({a})")  # NumPy rounds float64 -> float16 directly
        return em.let(f"round_{dst}(np.float32({a}))")  # ml_dtypes: float64 -> bfloat16 through f32
    if dst == "i1":
        return em.let(f"{a} != 0" if src != "i1" else a)
    if src == "i1":
        return em.let(f"{_lit(dst, 1)} if {a} else {_lit(dst, 0)}")
    if dst in _INTS:
        if src in _FLOATS:
            return em.let(f"{_INTS[dst]}(np.int64({a}))")
        return em.let(f"{_INTS[dst]}({a})")
    return em.let(f"{_ct(dst)}({a})")


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


def generate(prog: Program) -> tuple[str, bool]:
    """Python source of ``def kern(total, n0.., a0.., y0..[, err])`` and whether it is checked
    (has an error slot)."""
    K = prog.ndim
    nin, nout = len(prog.inputs), len(prog.outputs)
    em = _Emitter()
    val: dict[int, str] = {}
    used: set[int] = set()
    live = _live(prog)
    for i, n in enumerate(prog.nodes):
        if not live[i]:
            continue
        if n.op == "input":
            val[i] = f"x{n.args[0]}"
            used.add(n.args[0])
        elif n.op == "const":
            val[i] = _lit(n.dtype, n.value)
        else:
            val[i] = _emit_op(em, n.op, n.dtype, [val[a] for a in n.args], [prog.nodes[a].dtype for a in n.args])

    def offset(flags) -> str:
        terms = []
        for k in range(K):
            if not flags[k]:
                continue
            later = [f"n{m}" for m in range(k + 1, K) if flags[m]]
            terms.append(f"i{k}" + "".join(f" * {s}" for s in later))
        return " + ".join(terms) if terms else "0"

    params = ["total"] + [f"n{k}" for k in range(K)] + [f"a{j}" for j in range(nin)] + [f"y{k}" for k in range(nout)]
    if em.int_div:
        params.append("err")
    lines = [f"def kern({', '.join(params)}):",
             "    start = cuda.grid(1)",
             "    step = cuda.gridsize(1)",
             "    for e in range(start, total, step):"]
    ind = "        "
    if K == 1:
        lines.append(f"{ind}i0 = e")
    else:
        lines.append(f"{ind}r = e")
        for k in range(K - 1, 0, -1):
            lines.append(f"{ind}i{k} = r % n{k}")
            lines.append(f"{ind}r = r // n{k}")
        lines.append(f"{ind}i0 = r")
    for j in sorted(used):
        ref = f"a{j}[{offset(prog.inputs[j][1])}]"
        dt = prog.inputs[j][0]
        lines.append(f"{ind}x{j} = " + (f"{dt}_to_f32({ref})" if dt in _HALF else ref))
    lines += [ind + ln for ln in em.lines]
    for k, o in enumerate(prog.outputs):
        dt = prog.out_dtypes[k]
        v = f"f32_to_{dt}({val[o]})" if dt in _HALF else val[o]
        lines.append(f"{ind}y{k}[{offset(prog.out_flags[k])}] = {v}")
    desc = "; ".join(f"{n.op}:{n.dtype}" for n in prog.nodes if n.op not in ("input", "const"))
    head = ["# generated by sparsec.lower.cuda.codegen: elementwise CUDA kernel", f"# {desc}",
            f"# inputs: {', '.join(f'{dt}{list(map(int, fl))}' for dt, fl in prog.inputs)}",
            "import math", "import numpy as np", "from numba import cuda",
            "from sparsec.runtime.cuda.half import (bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, "
            "f64_round_f16, round_bf16, round_f16)", ""]
    return "\n".join(head + lines) + "\n", em.int_div


#: numba element types of the kernel arguments (bf16 travels as its uint16 bits, see runtime/cuda/half.py)
_NB = {"f32": "float32", "f64": "float64", "f16": "float16", "bf16": "uint16", "i8": "int8", "i32": "int32", "i64": "int64", "ui8": "uint8",
       "i1": "boolean"}


def signature(prog: Program, checked: bool) -> tuple:
    from numba import types
    args = [types.int64] * (prog.ndim + 1)
    args += [getattr(types, _NB[dt])[::1] for dt, _ in prog.inputs]
    args += [getattr(types, _NB[dt])[::1] for dt in prog.out_dtypes]
    if checked:
        args.append(types.int64[::1])
    return tuple(args)


_SOURCES: dict[str, object] = {}  # source -> CudaFunction (identical programs share one kernel)


def build(prog: Program, groups: list[list[int]], n_operands: int, constants: list, name: str,
          dim_source: dict | None = None):
    """The ``CudaKernel`` of ``prog``: ``fn(*inputs, *outputs[, err])``."""
    import hashlib

    import numpy as np

    from ...runtime.cuda import device as D
    from ...runtime.cuda import launch
    from . import CudaKernel

    src, checked = generate(prog)
    fnc = _SOURCES.get(src)
    key = hashlib.sha256(src.encode()).hexdigest()
    if fnc is None:
        ns: dict = {}
        exec(compile(src, f"<sparsec cuda elementwise {key[:12]}>", "exec"), ns)
        ns["kern"].__name__ = f"elementwise_{key[:12]}"
        fnc = _SOURCES[src] = launch.kernel(ns["kern"])
    consts = [D.Uploaded(np.ascontiguousarray(c).reshape(-1)) for c in constants]
    nout = len(prog.outputs)
    K = len(groups)

    def sizes(outs):
        if dim_source is None:
            s = outs[0].shape
            return [math.prod(s[d] for d in g) for g in groups]
        return [math.prod(outs[dim_source[d][0]].shape[dim_source[d][1]] for d in g) for g in groups]

    def fn(*args):
        ins = args[:n_operands]
        outs = args[n_operands:n_operands + nout]
        n = sizes(outs)
        total = math.prod(n)
        if total == 0:
            return
        flat = [a.reshape(a.size) for a in ins] + [c.get() for c in consts] + [o.reshape(o.size) for o in outs]
        extra = [args[n_operands + nout]] if checked else []
        fnc[launch.grid_1d(total)](total, *n, *flat, *extra)

    def error(code, value):
        return f"integer division by zero (output element {value})"

    return CudaKernel(fn, f"{name}[{key[:10]}]", impl="generated", kernels=(fnc.spec(signature(prog, checked)),),
                      checked=checked, error=error if checked else None,
                      info={"source": src, "key": key, "loops": K})
