"""Ops whose result size depends on the data: ``nonzero``.

Every other op's result shape follows from its operand types. ``sc.nonzero`` returns one index
vector per axis whose common length ``n`` is only known when it runs, so the op *defines* a new
symbolic dim: its ``size`` attribute names it (``"nnz0"``; the tracer picks a name unique in the
function), the shape rule gives each result ``[size]``, and every op after it derives its
shapes from that symbol as from a function input's. The op declares this with the trait
``defines_dim``:

- the printed IR needs nothing more: the parser re-derives ``size`` from the attribute, as it
  re-derives every other dim through the shape rules, so the text round-trips;
- the verifier checks the name is a plain symbol, not an input dim and not defined twice in the
  function (two ops defining one symbol would claim their results have equal lengths);
- the interpreter binds the symbol to the actual count when the op runs
  (``sparsec.ir.types.bind_dim``), so the shapes of the ops after it are checked against it;
- the CPU target cannot plan memory for such sizes and refuses the op
  (``sparsec.lower.cpu.NOT_LOWERED``). It exists for the per-expert "index the tokens routed
  to me" loop Hugging Face MoE models use, which the sparse-activation pass (in the default
  pipeline) rewrites into top-k dispatch (``passes/sparse_activation.py``).
"""
from __future__ import annotations

import numpy as np

from ..frontend.tracer import as_tensor, current_tracer, emit
from ..ir import Str, TensorType, register
from ..ir.types import canon_dim, dim_symbols
from ._util import I64, tensor

__all__ = ["nonzero"]

#: the trait of ops whose ``size`` attribute names a symbolic dim they define
DEFINES_DIM = "defines_dim"


def check_symbol(size: str) -> None:
    """``size`` must be one plain symbol name (not a product, not a number)."""
    try:
        ok = isinstance(size, str) and canon_dim(size) == size and dim_symbols(size) == (size,)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"size must be a plain symbol name such as 'nnz0', got {size!r}")


@register
class Nonzero:
    """``np.nonzero(x)``: for each axis of ``x`` (rank >= 1, any dtype) an int64 vector of the
    coordinates of the nonzero (true) elements, in row-major order (``torch.nonzero(x,
    as_tuple=True)``, ``torch.where(x)``). The vectors' common length is data dependent: the
    symbolic dim named by ``size``, which this op defines (a name unique in the function,
    different from every input dim). Not lowerable to the CPU target."""
    name = "sc.nonzero"
    operands = ("x",)
    attrs = {"size": Str(doc="name of the symbolic dim holding the number of nonzero elements")}
    traits = ("pure", DEFINES_DIM)

    def infer(x, *, size):
        tensor(x, "x")
        if x.rank == 0:
            raise ValueError("sc.nonzero needs a tensor of rank >= 1 (a scalar has no coordinates)")
        check_symbol(size)
        return tuple(TensorType((size,), I64) for _ in range(x.rank))

    def reference(x, *, size):
        if x.ndim == 0:
            raise ValueError("sc.nonzero needs a tensor of rank >= 1")
        return tuple(np.asarray(i, dtype=np.int64) for i in np.nonzero(x))


# ---------------------------------------------------------------------------------------------
# traced API

def nonzero(x) -> tuple:
    """``np.nonzero(x)``: a tuple of int64 index vectors, one per axis of ``x``, of a
    data-dependent length (a fresh symbolic dim ``nnz<i>``). ``tok, slot = nonzero(ids == e)``
    lists the (token, slot) pairs routed to expert ``e``."""
    x = as_tensor(x)
    size = current_tracer().fresh_symbol("nnz")
    out = emit("sc.nonzero", x, size=size)
    return out if isinstance(out, tuple) else (out,)
