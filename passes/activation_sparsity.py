"""``activation-sparsity``: zero the small activations of dense MLPs and skip their weight rows.

Opt-in (not in the default pipeline), CATS / TEAL style: in a dense MLP most inputs of each
projection are small, and zeroing those below a magnitude threshold changes the output little.
A zeroed input needs no weight row, so at decode (one token, where reading the weights is the
work) a fraction ``target`` of zeroed inputs is about that fraction fewer bytes read::

    activation-sparsity{target=0.5}                     # half of every MLP's inputs skipped
    activation-sparsity{target=0.4,sites=down}          # only the down projection's input
    activation-sparsity{target=0.5,calibration=calib.npz}

What is rewritten
-----------------
Top-level, bias-free ``sc.linear`` MLPs whose weights are ``sc.param`` tensors (not quantized):

- gated (SwiGLU, GeGLU...): ``down(act(gate(x)) * up(x))``, either ``sc.mul`` operand order, act
  one of silu, gelu, gelu_tanh, relu; the product may also be an ``sc.fused`` region holding
  exactly ``act`` and ``mul`` (the IR after ``fuse-elementwise``), so the pass runs after the
  default pipeline (``default,activation-sparsity{target=0.5}``) as well as before it;
- plain: ``fc2(act(fc1(x)))`` (same activations, also as a one-op ``sc.fused``).

The hidden values (``gate(x)``, ``up(x)``, the activation) must be used by the MLP only. In a
chain ``linear-act-linear-act-linear`` the first MLP takes the middle linear (a linear is
rewritten once). Each
MLP has two *sites*, ``x`` (the input of gate and up, or of fc1) and ``h`` (the input of down / fc2),
each with its own threshold ``t`` so that the fraction ``target`` of the site's calibration
values has ``|v| < t``. With ``sites=all`` (default) every projection becomes
``sc.sparse_input_linear(site, W.t, t)`` (about ``target`` of the MLP's weight bytes skipped);
with ``sites=down`` only the down projection / fc2 (at most a third of a SwiGLU MLP's bytes).

The new op reads its weight transposed, ``[in, out]``: the pass adds ``<weight>.t`` to
``graph.weights`` (the transpose of the ``[out, in]`` weight; the same name in every function
that reads it) and drops the old weight when no ``sc.param`` reads it any longer.

Left alone: MoE experts (``sc.grouped_matmul`` and the other dispatch ops; also dense-form
experts whose output is multiplied by a routing weight: run ``sparse-activation``, i.e. the
default pipeline, first), linears with a bias, quantized weights, ops inside regions, MLPs whose
hidden values are used elsewhere. A graph without MLPs is unchanged and needs no calibration.

Calibration
-----------
The thresholds come from running the reference interpreter on calibration inputs and taking
the ``target`` quantile of each site's ``|values|``:

- by default ``samples`` random batches made from the function's signature: float inputs
  N(0, 1), every symbolic dim bound to ``tokens`` (``batch`` to 1), integer inputs that index an
  embedding table (``sc.embedding`` ids, ``sc.take`` indices of a weight) uniform over its rows.
  Any other input (integer positions, masks) cannot be made up: the pass raises a
  ``CalibrationError`` that names it;
- ``calibration=<file.npz>``: one array per input name of the function (``np.savez(path,
  x=...)``), or a stack of batches with one more leading axis.

With ``target=0`` nothing is run (every threshold is 0). Functions are calibrated in order (``main`` first); a function whose MLPs were all calibrated
in an earlier one (a causal LM's ``decode`` shares its weights with ``main``) reuses their
thresholds and is not run. The thresholds are fixed at compile time: the sparsity on other
inputs is near ``target`` when they are distributed like the calibration data (random inputs
are a stand-in; real prompts calibrate a real model better).

Statistics: ``mlps sparsified`` (per function), ``linears sparsified``, ``weights
transposed``, and per site ``threshold (<mlp> <site>)`` and ``calibrated sparsity %
(<mlp> <site>)`` where ``<mlp>`` is the common prefix of the MLP's weight names.

Exactness: with ``target=0`` every threshold is 0 and the rewrite computes the dense MLP (up to
summation order). Otherwise the output differs from the dense model by design; the error is
what the zeroed inputs contributed (``measure_sparsity`` reports the skipped fraction on given
inputs; tests and ``examples/activation_sparsity.py`` report the relative output error).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import SparsecError
from ..ir import Builder, Operation, OpResult, TensorType, Value
from ..ir.types import bound_dims, dim_symbols
from .registry import Pass, Statistics, option, register_pass

#: activations recognised between the projections
_ACTIVATIONS = ("sc.silu", "sc.gelu", "sc.gelu_tanh", "sc.relu")


class CalibrationError(SparsecError):
    """The pass cannot calibrate: no calibration data for an input, or bad data."""


# ---------------------------------------------------------------------------------------------
# matching

@dataclass
class _MLP:
    """One matched MLP: its linears (``first`` = gate/up or fc1, ``down`` = down or fc2) and sites."""
    x: Value                  # input of the first projections
    h: Value                  # input of the down projection
    first: list[Operation]    # gate and up (gated) or fc1
    down: Operation
    weights: tuple[str, ...]  # weight names of first..., down: the MLP's identity across functions

    @property
    def label(self) -> str:
        """The common prefix of the weight names (``model.layers.0.mlp``), else ``mlp(<weights>)``."""
        prefix = os.path.commonprefix(list(self.weights))
        prefix = prefix[:prefix.rindex(".")] if "." in prefix else ""
        return prefix or f"mlp({','.join(w.removesuffix('.weight') for w in self.weights)})"


def _producer(v: Value) -> Operation | None:
    return v.op if isinstance(v, OpResult) else None


def _param_name(v: Value) -> str | None:
    op = _producer(v)
    if op is None or op.name != "sc.param":
        return None
    t = v.type
    if not isinstance(t, TensorType) or t.rank != 2 or not t.is_static:
        return None
    return op.attrs["name"]


def _linear(v: Value) -> Operation | None:
    """The bias-free ``sc.linear`` over a float ``sc.param`` weight that computes ``v``, else None."""
    op = _producer(v)
    if op is None or op.name != "sc.linear" or len(op.operands) != 2:
        return None
    x, w = op.operands
    if _param_name(w) is None or not isinstance(x.type, TensorType) or not x.type.dtype.is_float:
        return None
    return op


def _only_user(v: Value, op: Operation) -> bool:
    return all(u is op for u in v.users)


def _region_form(op: Operation) -> tuple | None:
    """For an ``sc.fused`` op: ``("gated", act, a, b)`` when its region is ``mul(act(a), b)``
    (either order; ``a``, ``b`` its operands), ``("plain", act, a)`` when it is ``act(a)``."""
    if len(op.regions) != 1 or len(op.results) != 1:
        return None
    block = op.regions[0].block
    inner = [o for o in block.ops if o.name != "sc.yield"]
    term = block.terminator
    if term is None or len(term.operands) != 1:
        return None
    args = {id(a): op.operands[i] for i, a in enumerate(block.args)}
    if len(inner) == 1 and inner[0].name in _ACTIVATIONS and term.operands[0] is inner[0].result:
        a = args.get(id(inner[0].operands[0]))
        return None if a is None else ("plain", inner[0].name, a)
    if len(inner) == 2 and inner[0].name in _ACTIVATIONS and inner[1].name == "sc.mul" \
            and term.operands[0] is inner[1].result:
        act = inner[0]
        m0, m1 = inner[1].operands
        other = m1 if m0 is act.result else m0 if m1 is act.result else None
        if other is None or other is act.result or not _only_user(act.result, inner[1]):
            return None
        a, b = args.get(id(act.operands[0])), args.get(id(other))
        return None if a is None or b is None else ("gated", act.name, a, b)
    return None


def _match(down: Operation) -> _MLP | None:
    """The MLP whose down projection is ``down`` (an ``sc.linear``), else None."""
    if _linear(down.result) is not down:
        return None
    if any(u.name == "sc.mul" for u in down.result.users):
        return None  # a dense-form MoE expert (masked by its routing weight): left to sparse-activation
    h = down.operands[0]
    hop = _producer(h)
    if hop is None or not _only_user(h, down):
        return None
    # (g, u): the pre-activation and, gated, the other factor; each used by the MLP only
    if hop.name in _ACTIVATIONS:
        act, g, u = hop, hop.operands[0], None
    elif hop.name == "sc.mul":
        act = g = u = None
        for a, b in (hop.operands, hop.operands[::-1]):
            ap = _producer(a)
            if ap is not None and ap.name in _ACTIVATIONS and a is not b and _only_user(a, hop):
                act, g, u = ap, ap.operands[0], b
                break
        if act is None or not _only_user(u, hop):
            return None
    elif hop.name == "sc.fused":
        form = _region_form(hop)
        if form is None:
            return None
        act, g, u = hop, form[2], (form[3] if form[0] == "gated" else None)
        if u is not None and not _only_user(u, hop):
            return None
    else:
        return None
    if not _only_user(g, act):
        return None
    if u is None:
        fc1 = _linear(g)
        if fc1 is None:
            return None
        first = [fc1]
    else:
        gate, up = _linear(g), _linear(u)
        if gate is None or up is None or gate is up or gate.operands[0] is not up.operands[0]:
            return None
        first = [gate, up]
    x = first[0].operands[0]
    if x.type.dtype != h.type.dtype:
        return None
    names = tuple(_param_name(op.operands[1]) for op in (*first, down))
    return _MLP(x, h, first, down, names)


def find_mlps(fn) -> list[_MLP]:
    """The MLPs of ``fn``'s top level (see the module docstring), in program order."""
    out, claimed = [], set()
    for op in list(fn.ops):
        if op.name == "sc.linear":
            m = _match(op)
            # in a chain linear-act-linear-act-linear the middle linear would belong to two
            # MLPs (the down of one, the fc1 of the next): the first one takes it
            if m is not None and not claimed & {id(o) for o in (*m.first, m.down)}:
                claimed |= {id(o) for o in (*m.first, m.down)}
                out.append(m)
    return out


# ---------------------------------------------------------------------------------------------
# calibration inputs

def _int_high(graph, arg) -> int | None:
    """The number of rows of the table an integer input indexes, else None."""
    for op in arg.users:
        if op.name == "sc.embedding" and op.operands[0] is arg:
            return int(op.operands[1].type.shape[0])
        if op.name == "sc.take" and len(op.operands) > 1 and op.operands[1] is arg \
                and _producer(op.operands[0]) is not None and _producer(op.operands[0]).name == "sc.param":
            t = op.operands[0].type
            d = t.shape[op.attrs.get("axis", 0) % t.rank]
            return int(d) if isinstance(d, int) else None
    return None


def random_inputs(graph, fn, tokens: int, rng) -> list[np.ndarray]:
    """One random batch for ``fn``'s inputs (see the module docstring), or ``CalibrationError``."""
    bindings = {}
    for a in fn.args:
        if isinstance(a.type, TensorType):
            for d in a.type.shape:
                for s in (dim_symbols(d) if isinstance(d, str) else ()):
                    bindings[s] = 1 if s == "batch" else tokens
    arrays = []
    for a, name in zip(fn.args, fn.input_names()):
        t = a.type
        if not isinstance(t, TensorType):
            raise CalibrationError(f"input {name!r} of @{fn.name} has type {t}: random calibration data cannot be "
                                   f"made for it; pass calibration=<file.npz> with an array per input name")
        shape = t.concrete(bindings)
        if t.dtype.is_float:
            arrays.append(rng.standard_normal(shape).astype(t.dtype.np))
            continue
        high = _int_high(graph, a) if t.dtype.is_int else None
        if high is None:
            raise CalibrationError(
                f"input {name!r} of @{fn.name} ({t.pretty()}) is not a float tensor nor indices into an embedding "
                f"table, so random calibration data cannot be made for it; pass calibration=<file.npz> holding an "
                f"array for each input of @{fn.name} ({', '.join(fn.input_names())}), e.g. "
                f"np.savez('calib.npz', {name}=...)")
        arrays.append(rng.integers(0, high, size=shape).astype(t.dtype.np))
    return arrays


def _npz_batches(path: str, fn) -> list[list[np.ndarray]]:
    """Batches of ``fn``'s inputs from an ``.npz`` file (one array per input name, or a stack)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise CalibrationError(f"cannot read calibration data {path}: {e}") from None
    names = fn.input_names()
    missing = [n for n in names if n not in data]
    if missing:
        raise CalibrationError(f"calibration data {path} has no array for input(s) {', '.join(missing)} of "
                               f"@{fn.name} (it holds {', '.join(sorted(data)) or 'nothing'})")
    ranks = [a.type.rank for a in fn.args]
    stacked = [data[n].ndim == r + 1 for n, r in zip(names, ranks)]
    if any(stacked) and not all(stacked):
        raise CalibrationError(f"calibration data {path}: either every input is one batch (its own rank) or every "
                               f"input is a stack of batches (one more leading axis)")
    for n, r in zip(names, ranks):
        if data[n].ndim not in (r, r + 1):
            raise CalibrationError(f"calibration data {path}: {n!r} has shape {data[n].shape}, expected rank {r} "
                                   f"(or {r + 1} for a stack of batches)")
    if not all(stacked):
        return [[data[n] for n in names]]
    count = {data[n].shape[0] for n in names}
    if len(count) != 1:
        raise CalibrationError(f"calibration data {path}: the stacks hold different numbers of batches {sorted(count)}")
    return [[data[n][i] for n in names] for i in range(count.pop())]


def _capture(graph, fn, arrays, values: list[Value]) -> list[np.ndarray]:
    """Run ``fn`` on ``arrays`` with the reference interpreter; the arrays of ``values``."""
    from ..errors import InterpretError
    from ..interpreter import _bind_inputs, run_block
    try:
        bindings = _bind_inputs(fn, arrays)
        env = {id(a): x for a, x in zip(fn.args, arrays)}
        with bound_dims(bindings), np.errstate(all="ignore"):
            run_block(fn.body, env, graph.weights)
    except InterpretError as e:
        raise CalibrationError(f"calibration run of @{fn.name} failed: {e}") from None
    return [env[id(v)] for v in values]


# ---------------------------------------------------------------------------------------------
# the pass

@register_pass
@dataclass(frozen=True)
class ActivationSparsity(Pass):
    """zero MLP activations below calibrated magnitude thresholds and skip their weight rows (opt-in)"""
    name = "activation-sparsity"
    target: float = option(0.5, doc="fraction of each site's values to zero, 0 <= target < 1")
    sites: str = option("all", choices=("all", "down"),
                        doc="all: the inputs of every projection; down: only the down projection's")
    samples: int = option(8, doc="random calibration batches (without calibration=)")
    tokens: int = option(16, doc="size of each symbolic dim (batch: 1) in the random calibration batches")
    seed: int = option(0, doc="seed of the random calibration batches")
    calibration: str = option("", doc=".npz file of calibration inputs (an array per input name)")

    def __post_init__(self):
        if not 0.0 <= self.target < 1.0:
            raise ValueError(f"target must be in [0, 1), got {self.target}")
        if self.samples < 1 or self.tokens < 1:
            raise ValueError(f"samples and tokens must be >= 1, got samples={self.samples}, tokens={self.tokens}")

    def run(self, graph, stats: Statistics) -> None:
        found = {name: find_mlps(fn) for name, fn in graph.functions.items()}
        if not any(found.values()):
            return
        missing = sorted({w for mlps in found.values() for m in mlps for w in m.weights} - set(graph.weights))
        if missing:
            raise CalibrationError(f"weight(s) {', '.join(missing)} are not in the graph's weight store (an .mlir "
                                   f"file takes its weights from the .safetensors file beside it)")
        thresholds = self._calibrate(graph, found, stats)
        transposed: dict[str, str] = {}
        replaced: set[str] = set()
        for name, mlps in found.items():
            for m in mlps:
                tx, th = thresholds[m.weights]
                ops = [(op, tx) for op in m.first] if self.sites == "all" else []
                for op, t in ops + [(m.down, th)]:
                    replaced.add(_param_name(op.operands[1]))
                    self._rewrite(graph, op, t, transposed, stats)
                stats["mlps sparsified"] += 1
        still_read = graph.params()
        for w in sorted(replaced):
            if w not in still_read and w in graph.weights:
                del graph.weights[w]

    # -- calibration ----------------------------------------------------------------------------
    def _batches(self, graph, fn) -> list[list[np.ndarray]]:
        if self.calibration:
            return _npz_batches(self.calibration, fn)
        rng = np.random.default_rng(self.seed)
        return [random_inputs(graph, fn, self.tokens, rng) for _ in range(self.samples)]

    def _calibrate(self, graph, found, stats) -> dict[tuple, tuple[float, float]]:
        out: dict[tuple, tuple[float, float]] = {}
        if self.target == 0:  # nothing to zero: every threshold is 0, no calibration run needed
            return {m.weights: (0.0, 0.0) for mlps in found.values() for m in mlps}
        order = sorted(found, key=lambda n: (n != "main", list(graph.functions).index(n)))
        for name in order:
            todo = [m for m in found[name] if m.weights not in out]
            if not todo:
                continue
            fn = graph.functions[name]
            values = [v for m in todo for v in (m.x, m.h)]
            seen: list[list[np.ndarray]] = [[] for _ in values]
            for arrays in self._batches(graph, fn):
                for s, a in zip(seen, _capture(graph, fn, arrays, values)):
                    s.append(np.abs(np.asarray(a, dtype=np.float64)).ravel())
            for i, m in enumerate(todo):
                ts = []
                for site, mags in (("x", seen[2 * i]), ("h", seen[2 * i + 1])):
                    mags = np.concatenate(mags)
                    t = self._quantile(mags)
                    ts.append(t)
                    if site == "x" and self.sites != "all":
                        continue
                    stats[f"threshold ({m.label} {site})"] = float(f"{t:.6g}")
                    stats[f"calibrated sparsity % ({m.label} {site})"] = \
                        round(100.0 * float(np.mean(mags < t)) if mags.size else 0.0, 2)
                out[m.weights] = (ts[0], ts[1])
        return out

    def _quantile(self, mags: np.ndarray) -> float:
        if self.target == 0 or mags.size == 0:
            return 0.0
        finite = mags[np.isfinite(mags)]
        if finite.size == 0:
            return 0.0
        return float(np.quantile(finite, self.target))

    # -- rewriting ------------------------------------------------------------------------------
    @staticmethod
    def _rewrite(graph, op: Operation, threshold: float, transposed: dict, stats) -> None:
        x, w = op.operands
        old = _param_name(w)
        new = transposed.get(old)
        if new is None:
            new = f"{old}.t"
            taken = set(graph.weights) | set(graph.params())
            n = 1
            while new in taken:
                new = f"{old}.t.{n}"
                n += 1
            graph.weights[new] = np.ascontiguousarray(np.asarray(graph.weights[old]).T)
            transposed[old] = new
            stats["weights transposed"] += 1
        wt = w.type
        b = Builder.before_op(op)
        p = b.create("sc.param", [], {"name": new}, result_types=[TensorType((wt.shape[1], wt.shape[0]), wt.dtype)],
                     loc=op.loc, result_hints=[new])
        s = b.create("sc.sparse_input_linear", [x, p.result], {"threshold": float(threshold)}, loc=op.loc,
                     result_hints=[op.result.name_hint])
        op.result.replace_all_uses_with(s.result)
        op.erase()
        wop = _producer(w)
        if not w.uses:
            wop.erase()
        stats["linears sparsified"] += 1


# ---------------------------------------------------------------------------------------------
# measuring

def measure_sparsity(graph, *arrays, function: str | None = None) -> dict[str, float]:
    """Run ``graph`` (after the pass) on ``arrays`` with the reference interpreter and return the
    fraction of skipped inputs (``|x| < threshold``) of every ``sc.sparse_input_linear``, keyed
    by its weight name, plus ``"all"``: skipped over all of them together (what decides the
    weight bytes saved at one token, each op weighted by its weight's size)."""
    fn = graph.functions[function] if function else graph.main
    ops = [op for op in fn.ops if op.name == "sc.sparse_input_linear"]
    got = _capture(graph, fn, [np.asarray(a) for a in arrays], [op.operands[0] for op in ops])
    out, skipped, total = {}, 0.0, 0.0
    for op, a in zip(ops, got):
        frac = float(np.mean(np.abs(np.asarray(a, np.float64)) < op.attrs["threshold"])) if a.size else 0.0
        out[_param_name(op.operands[1]) or f"op{len(out)}"] = frac
        size = float(np.prod(op.operands[1].type.shape))
        skipped += frac * size
        total += size
    out["all"] = skipped / total if total else 0.0
    return out
