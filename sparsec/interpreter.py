"""The reference interpreter: runs any graph with the ops' NumPy references. It is the
specification every pass and kernel is checked against."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import InterpretError
from .ir import Block, Graph, Operation, TensorType, as_dtype
from .ir.types import QuantType, bind_dim, bound_dims, current_dim_bindings, dim_symbols, eval_dim


def _bind_inputs(fn, arrays) -> dict[str, int]:
    if len(arrays) != len(fn.args):
        raise InterpretError(f"@{fn.name} takes {len(fn.args)} inputs ({', '.join(fn.input_names())}), "
                             f"got {len(arrays)}")
    bindings: dict[str, int] = {}
    for a, name, x in zip(fn.args, fn.input_names(), arrays):
        t = a.type
        if not isinstance(t, TensorType):
            continue
        if x.ndim != t.rank:
            raise InterpretError(f"input {name!r}: expected rank {t.rank} {t.pretty()}, got shape {x.shape}")
        if as_dtype(x.dtype) != t.dtype:
            raise InterpretError(f"input {name!r}: expected dtype {t.dtype}, got {x.dtype}")
        for j, (d, n) in enumerate(zip(t.shape, x.shape)):
            if isinstance(d, int):
                if d != n:
                    raise InterpretError(f"input {name!r}: dim {j} must be {d} ({t.pretty()}), got shape {x.shape}")
            else:
                syms = dim_symbols(d)
                if len(syms) == 1 and d == syms[0]:
                    prev = bindings.setdefault(d, n)
                    if prev != n:
                        raise InterpretError(f"input {name!r}: dim {j} is {d!r}={prev} from an earlier input, "
                                             f"got {n}")
    return bindings


def run_block(block: Block, env: dict[int, np.ndarray], weights: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Execute ``block`` with ``env`` holding its arguments; returns the terminator's operands."""
    for op in block.ops:
        if op.name in ("func.return", "sc.yield"):
            return [env[id(v)] for v in op.operands]
        outs = run_op(op, env, weights)
        for r, val in zip(op.results, outs):
            env[id(r)] = val
    return []


def run_op(op: Operation, env, weights) -> tuple:
    if op.name == "sc.param":
        name = op.attrs["name"]
        if name not in weights:
            raise InterpretError(f"{op.describe()}: no weight named {name!r} in the weight store "
                                 f"(pass weights=... or load the model's weights)")
        w = weights[name]
        t = op.result.type
        if isinstance(t, QuantType) != hasattr(w, "fmt") or (isinstance(t, QuantType) and (
                w.fmt != t.format or tuple(w.shape) != t.shape)):
            # a quantized param must hold a QuantizedTensor of its format and shape (its
            # reference value is the dequantized array: consumers call np.asarray on it)
            held = (f"a {w.fmt} weight {list(w.shape)}" if hasattr(w, "fmt")
                    else f"an array {list(np.shape(w))} {getattr(w, 'dtype', '')}")
            raise InterpretError(f"{op.describe()}: declared {t} but the weight store holds {held}")
        return (w,)
    opdef = op.opdef
    if opdef is None or opdef.reference is None:
        raise InterpretError(f"{op.describe()}: no reference implementation")
    args = [env[id(v)] for v in op.operands]
    try:
        if op.regions:
            outs = opdef.run_reference(args, {**op.attrs, "regions": op.regions, "weights": weights})
        else:
            outs = opdef.run_reference(args, op.attrs)
    except InterpretError:
        raise
    except Exception as e:  # an op failing at run time names itself and its origin (torch.fx style)
        shapes = ", ".join(f"{getattr(a, 'shape', '?')}:{getattr(a, 'dtype', type(a).__name__)}" for a in args)
        raise InterpretError(f"{op.describe()} failed on inputs ({shapes}): {type(e).__name__}: {e}") from e
    if len(outs) != len(op.results):
        raise InterpretError(f"{op.describe()}: reference returned {len(outs)} values for {len(op.results)} results")
    if "defines_dim" in opdef.traits and outs:
        # the op defines a data-dependent dim (sc.nonzero's size): bind it to what this run got,
        # so its results and every later op are checked against the actual count
        bind_dim(op.attrs["size"], np.shape(outs[0])[0] if np.ndim(outs[0]) else 0)
    fixed = []
    for r, o in zip(op.results, outs):
        o = np.asarray(o)
        t = r.type
        if isinstance(t, TensorType):
            # the reference is the specification: it must produce exactly the declared type
            if o.dtype != t.dtype.np:
                raise InterpretError(f"{op.describe()}: reference gave dtype {o.dtype} for {t.pretty()}")
            if o.ndim != t.rank:
                raise InterpretError(f"{op.describe()}: reference gave shape {o.shape} for {t.pretty()}")
            bindings = current_dim_bindings()
            for j, (d, n) in enumerate(zip(t.shape, o.shape)):
                if isinstance(d, int) or all(s in bindings for s in dim_symbols(d)):
                    want = d if isinstance(d, int) else eval_dim(d, bindings)
                    if want != n:
                        raise InterpretError(f"{op.describe()}: result {r.index} has shape {o.shape}, but its type "
                                             f"{t.pretty()} gives dim {j} = {want} in this run")
        fixed.append(o)
    return tuple(fixed)


def interpret(graph: Graph, *arrays, weights: Mapping[str, np.ndarray] | None = None,
              function: str | None = None) -> tuple[np.ndarray, ...]:
    """Run ``graph`` on NumPy ``arrays`` with the reference semantics; returns a tuple of arrays."""
    fn = graph.functions[function] if function else graph.main
    arrays = [np.asarray(a) for a in arrays]
    bindings = _bind_inputs(fn, arrays)
    w = dict(graph.weights)
    if weights:
        w.update(weights)
    env: dict[int, np.ndarray] = {id(a): x for a, x in zip(fn.args, arrays)}
    with bound_dims(bindings):  # references of sc.reshape/sc.broadcast_to read symbolic dim sizes
        return tuple(run_block(fn.body, env, w))
