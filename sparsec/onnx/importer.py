"""``load_onnx``: an ONNX model (opset 13 or later) as an ``sc.Graph``.

- Graph inputs become function arguments: ``dim_param`` dims become symbolic dims of that name
  (made an identifier), unnamed dynamic dims get fresh names (``d0``, ``d1``, ...).
- Initializers and ``Constant`` nodes are values known at import (``Const``). Nodes whose inputs
  are all known are evaluated at import (by ``onnx.reference``), so shape computations and
  weight transposes fold away. A known value that reaches a traced op becomes an
  ``sc.constant`` when small (at most ``SMALL`` elements) and an ``sc.param`` weight named after
  the ONNX value otherwise.
- Shapes are known too: ``Shape(x)`` is a ``Const`` whose elements may be symbolic dims
  (``"batch"``), and ``Gather``/``Slice``/``Concat``/``Unsqueeze``/``Mul``/... over such vectors
  are computed at import with exact symbolic arithmetic, so ``Shape -> Gather -> Concat ->
  Reshape`` becomes one ``sc.reshape`` to ``[batch, -1, 64]``. What cannot be expressed (a
  reshape to a shape computed from tensor data) is an error naming the node.
- Every other node goes through its converter (``converters.CONVERTERS``), one function per ONNX
  op type, which emits ``sc`` ops; the ops get the node's name as their location, so later errors
  name the ONNX node.
- Before anything is converted, every op type without a converter is collected and reported in
  one ``OnnxImportError`` (op type, count, node names).
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import SparsecError
from ..frontend.tracer import Parameter, Tensor, TensorSpec, as_tensor, current_tracer, emit, trace
from ..ir import Graph, as_dtype

#: the oldest default-domain opset the importer accepts
MIN_OPSET = 13
#: known values with at most this many elements become sc.constant; larger ones sc.param weights
SMALL = 16


class OnnxImportError(SparsecError):
    """An ONNX model that cannot be imported (bad file, old opset, unsupported ops or dtypes,
    shapes that depend on tensor data)."""


class DataDependentError(OnnxImportError):
    """A value that must be known at import (a reshape target, axes, k) is computed from tensor
    data at run time. ``value`` names the ONNX value; when it is a graph input, binding it
    (``load_onnx(..., bind_inputs={name: array})``) specializes the graph to that value."""

    def __init__(self, msg: str, value: str | None = None):
        super().__init__(msg)
        self.value = value


class Const:
    """A value known at import: a NumPy array of ``dtype``. For shape vectors the array may have
    dtype object, its elements ints or symbolic dims (``"batch"``, ``"batch*seq"``)."""

    __slots__ = ("arr", "dtype", "name")

    def __init__(self, arr, dtype=None, name: str | None = None):
        arr = np.asarray(arr)
        self.arr = arr
        self.dtype = np.dtype(dtype) if dtype is not None else arr.dtype
        self.name = name

    @property
    def symbolic(self) -> bool:
        return self.arr.dtype == object and any(isinstance(v, str) for v in self.arr.flat)

    @property
    def shape(self) -> tuple:
        return self.arr.shape

    def numeric(self) -> np.ndarray:
        """The array in its dtype (only when no element is symbolic)."""
        return self.arr.astype(self.dtype) if self.arr.dtype != self.dtype else self.arr

    def ints(self) -> list:
        """The elements as a flat list of ints / symbolic dims."""
        return [v if isinstance(v, str) else int(v) for v in self.arr.reshape(-1).tolist()]

    def __repr__(self) -> str:
        return f"Const({self.arr!r}, {self.dtype})"


def onnx_dtype(elem_type: int, where: str):
    """The sparsec dtype of an ONNX ``TensorProto`` element type, else an error naming ``where``."""
    from onnx import TensorProto, helper
    try:
        npd = helper.tensor_dtype_to_np_dtype(elem_type)
        return as_dtype(npd)
    except (KeyError, ValueError, TypeError):
        name = TensorProto.DataType.Name(elem_type) if elem_type in TensorProto.DataType.values() else elem_type
        raise OnnxImportError(f"{where}: element type {name} is not supported (sparsec has float32, float16, "
                              f"bfloat16, float64, int8, int32, int64, uint8, bool)") from None


def _ident(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not s or not (s[0].isalpha() or s[0] == "_"):
        s = "d_" + s
    return s


def supported_ops() -> list[str]:
    """The ONNX op types (default domain) the importer converts."""
    from .converters import CONVERTERS
    return sorted(CONVERTERS)


def _load_model(model):
    import onnx
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model))
        except Exception as e:  # protobuf's DecodeError and friends
            raise OnnxImportError(f"cannot parse ONNX model bytes: {e}") from None
    path = os.fspath(model)
    if not os.path.exists(path):
        raise OnnxImportError(f"{path}: no such file")
    try:
        return onnx.load(path)
    except Exception as e:
        raise OnnxImportError(f"{path}: not a readable ONNX model: {type(e).__name__}: {e}") from None


def _check_opset(m) -> int:
    version = None
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            version = o.version
    if version is None:
        raise OnnxImportError("the model imports no default-domain (ai.onnx) opset")
    if version < MIN_OPSET:
        raise OnnxImportError(f"the model uses opset {version}; sparsec imports opset {MIN_OPSET} and later "
                              f"(convert it with onnx.version_converter.convert_version(model, {MIN_OPSET}))")
    return version


def _node_label(node, i: int) -> str:
    return node.name or (node.output[0] if node.output else f"#{i}")


def check_supported(m) -> None:
    """Raise one ``OnnxImportError`` listing every op type without a converter (counts and node names)."""
    from .converters import CONVERTERS
    missing: dict[str, list[str]] = {}
    for i, node in enumerate(m.graph.node):
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        if node.domain in ("", "ai.onnx") and node.op_type in CONVERTERS:
            continue
        missing.setdefault(key, []).append(_node_label(node, i))
    if missing:
        lines = []
        for op, names in sorted(missing.items()):
            shown = ", ".join(repr(n) for n in names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
            lines.append(f"  {op} x{len(names)}: {shown}")
        total = sum(len(v) for v in missing.values())
        raise OnnxImportError(f"{total} node(s) of {len(missing)} unsupported ONNX op type(s):\n" + "\n".join(lines)
                              + f"\n(supported: {', '.join(sorted(CONVERTERS))})")


class Context:
    """The state of one import: ONNX value name -> ``Tensor`` (traced) or ``Const`` (known)."""

    def __init__(self, model, opset: int):
        self.model = model
        self.opset = opset
        self.env: dict[str, object] = {}
        self.params: dict[str, Tensor] = {}
        self.node = None
        self.dim_tensors: dict = {}
        self.keep: list = []
        self.superseded: list = []   # ops replaced by a fused form; erased at the end if unread

    # -- values ---------------------------------------------------------------------------
    def get(self, name: str):
        if name == "":
            return None
        if name not in self.env:
            raise OnnxImportError(f"value {name!r} is used before it is defined (the graph is not in topological "
                                  f"order, or the input is missing)")
        return self.env[name]

    def tensor(self, v) -> Tensor:
        """A traced tensor for ``v`` (a Tensor, a Const, or None -> None)."""
        if v is None or isinstance(v, Tensor):
            return v
        if isinstance(v, Const):
            return self.materialize(v)
        raise TypeError(f"not a value: {v!r}")

    def materialize(self, c: Const) -> Tensor:
        if c.symbolic:
            return self.symbolic_tensor(c)
        arr = c.numeric()
        try:
            as_dtype(arr.dtype)
        except ValueError:
            raise OnnxImportError(f"{self.where()}: a constant {c.name or ''} of dtype {arr.dtype} is not supported "
                                  f"by sparsec") from None
        if arr.size <= SMALL:
            return as_tensor(arr.copy(order="C"))
        if c.name is None:
            c.name = f"onnx.const{len(self.params)}"
        if c.name not in self.params:
            p = Parameter(arr.copy(order="C"))
            self.keep.append(p)   # the tracer keys parameters by id(): keep each alive
            current_tracer().param_names[id(p)] = c.name
            self.params[c.name] = as_tensor(p)
        return self.params[c.name]

    def dim_tensor(self, d) -> Tensor:
        """An int64 scalar tensor holding the size of symbolic dim ``d`` at run time."""
        if d not in self.dim_tensors:
            one = as_tensor(np.array(1, np.int64))
            ones = emit("sc.broadcast_to", one, shape=(d,))
            self.dim_tensors[d] = emit("sc.sum", ones, axes=(), keepdims=False)
        return self.dim_tensors[d]

    def symbolic_tensor(self, c: Const) -> Tensor:
        from ..ops import reshape, stack
        elems = [self.dim_tensor(v) if isinstance(v, str) else as_tensor(np.array(v, np.int64))
                 for v in c.arr.reshape(-1).tolist()]
        out = stack(elems, 0) if elems else as_tensor(np.zeros((0,), np.int64))
        out = reshape(out, c.arr.shape)
        if np.dtype(c.dtype) != np.int64:
            out = emit("sc.cast", out, dtype=as_dtype(c.dtype))
        return out

    def where(self) -> str:
        n = self.node
        return "the graph" if n is None else f"node {n.name or n.output[0]!r} ({n.op_type})"

    def fail(self, msg: str):
        raise OnnxImportError(f"{self.where()}: {msg}")

    def const_input(self, v, what: str) -> Const:
        """``v`` must be known at import (a shape, axes, k ...)."""
        if isinstance(v, Const):
            return v
        name = next((n for n in self.node.input if n and self.env.get(n) is v), None) if self.node else None
        raise DataDependentError(f"{self.where()}: {what} must be known at import (a constant or computed from "
                                 f"shapes), but it is computed from tensor data at run time"
                                 + (f" (value {name!r})" if name else "")
                                 + "; sparsec graphs have shapes fixed by their inputs' shapes", name)


def _fold(node, values: list, opset: int) -> list | None:
    """Evaluate ``node`` over known numeric inputs with ``onnx.reference``; None if it cannot."""
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    inputs, feeds = [], {}
    for name, v in zip(node.input, values):
        if name == "":
            continue
        arr = v.numeric()
        inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape))
        feeds[name] = arr
    outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o]
    g = helper.make_graph([node], "fold", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    try:
        res = ReferenceEvaluator(m).run(None, feeds)
    except Exception:
        return None
    return [np.asarray(r) for r in res]


#: op types evaluated at import when all their inputs are known (and small enough)
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
#: do not fold computations over more elements than this (weights are folded up to this size)
FOLD_LIMIT = 1 << 24


def _convert_node(ctx: Context, node) -> None:
    from .converters import CONVERTERS, attributes, sym_fold
    ins = [ctx.get(n) for n in node.input]
    attrs = attributes(node)
    outs = None
    present = [v for v in ins if v is not None]
    if present and all(isinstance(v, Const) for v in present) and node.op_type not in _NO_FOLD:
        # every input known at import: evaluate the node now (shape arithmetic, weight transposes)
        if any(v.symbolic for v in present):
            outs = sym_fold(ctx, node, ins, attrs)
        elif sum(v.arr.size for v in present) <= FOLD_LIMIT:
            res = _fold(node, ins, ctx.opset)
            if res is not None:
                outs = [Const(r) for r in res]
    if outs is None:
        outs = CONVERTERS[node.op_type](ctx, node, ins, attrs)
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    for name, v in zip(node.output, outs):
        if name:
            if isinstance(v, Const) and v.name is None:
                v.name = name
            ctx.env[name] = v


def load_onnx(model, *, name: str = "main", bind_inputs: dict | None = None) -> Graph:
    """Import an ONNX model (a path, serialized bytes or an ``onnx.ModelProto``) as an ``sc.Graph``.

    ``bind_inputs`` (``{graph input name: array}``) makes those graph inputs constants of the
    given values: the graph is specialized to them (for inputs that determine shapes, such as
    the target shape of a ``Reshape``; the ONNX backend does this for its node tests).

    Raises ``OnnxImportError`` for unreadable files, opsets before 13, unsupported op types (all
    listed at once), unsupported element types and shapes computed from tensor data.
    """
    import importlib.util
    if importlib.util.find_spec("onnx") is None:
        raise OnnxImportError("ONNX import needs the onnx package: pip install 'sparsec[onnx]'") from None
    m = _load_model(model)
    opset = _check_opset(m)
    g = m.graph
    check_supported(m)
    inits = {t.name: t for t in g.initializer}
    bound = {k: np.asarray(v) for k, v in (bind_inputs or {}).items()}
    unknown = sorted(set(bound) - {vi.name for vi in g.input})
    if unknown:
        raise OnnxImportError(f"bind_inputs names {unknown}, which are not graph inputs")
    specs, used_syms, fresh = [], set(), [0]
    sym_names: dict[str, str] = {}

    def fresh_sym():
        while f"d{fresh[0]}" in used_syms or f"d{fresh[0]}" in sym_names.values():
            fresh[0] += 1
        used_syms.add(f"d{fresh[0]}")
        return f"d{fresh[0]}"

    for vi in g.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                used_syms.add(_ident(d.dim_param))
    for vi in g.input:
        if vi.name in inits or vi.name in bound:
            continue
        if not vi.type.HasField("tensor_type"):
            raise OnnxImportError(f"graph input {vi.name!r}: only tensor inputs are supported (got a "
                                  f"{vi.type.WhichOneof('value')})")
        tt = vi.type.tensor_type
        dt = onnx_dtype(tt.elem_type, f"graph input {vi.name!r}")
        if not tt.HasField("shape"):
            raise OnnxImportError(f"graph input {vi.name!r} has no shape (its rank must be known)")
        shape = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param:
                shape.append(sym_names.setdefault(d.dim_param, _ident(d.dim_param)))
            else:
                shape.append(fresh_sym())
        specs.append(TensorSpec(tuple(shape), dt, name=vi.name))

    ctx = Context(m, opset)

    def forward(*args):
        real_inputs = [vi for vi in g.input if vi.name not in inits and vi.name not in bound]
        for vi, a in zip(real_inputs, args):
            ctx.env[vi.name] = a
        from onnx import numpy_helper
        for t in g.initializer:
            try:
                arr = numpy_helper.to_array(t)
            except Exception as e:
                raise OnnxImportError(f"initializer {t.name!r}: cannot read it: {e}") from None
            ctx.env[t.name] = Const(arr, name=t.name)
        for k, arr in bound.items():
            ctx.env[k] = Const(arr, name=k)
        block = current_tracer().function.body
        for i, node in enumerate(g.node):
            ctx.node = node
            before = len(block.ops)
            try:
                _convert_node(ctx, node)
            except OnnxImportError:
                raise
            except (SparsecError, ValueError, TypeError, IndexError, KeyError) as e:
                msg = str(e).split("\n  at ")[0]
                msg = re.sub(r"(sc\.\w+) \([^()]*:\d+\)", r"\1", msg)   # the tracer's Python location
                raise OnnxImportError(f"{ctx.where()}: {msg}") from None
            loc = f"onnx:{_node_label(node, i)}"
            for op in block.ops[before:]:
                if op.loc is None or not op.loc.startswith("onnx:"):
                    op.loc = loc
        ctx.node = None
        outs = {}
        for vo in g.output:
            v = ctx.get(vo.name)
            outs[vo.name] = ctx.tensor(v)
        returned = {id(t.value) for t in outs.values()}
        for op in reversed(ctx.superseded):
            if all(not r.uses and id(r) not in returned for r in op.results):
                op.erase()
        return outs

    forward.__name__ = g.name or "onnx_model"
    try:
        graph = trace(forward, *specs, name=name)
    except OnnxImportError:
        raise
    except SparsecError as e:
        raise OnnxImportError(str(e)) from None
    _check_outputs(graph, g)
    return graph


def _check_outputs(graph: Graph, g) -> None:
    """Declared static output dims must agree with what the shape rules derived."""
    for vo, v in zip(g.output, graph.main.body.ops[-1].operands):
        tt = vo.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = tt.shape.dim
        if len(dims) != v.type.rank:
            raise OnnxImportError(f"graph output {vo.name!r}: declared rank {len(dims)}, imported {v.type.pretty()}")
        for j, (d, got) in enumerate(zip(dims, v.type.shape)):
            if d.HasField("dim_value") and isinstance(got, int) and d.dim_value != got:
                raise OnnxImportError(f"graph output {vo.name!r}: dim {j} is declared {d.dim_value}, imported "
                                      f"{v.type.pretty()}")

