"""An ONNX backend (``onnx.backend.base.Backend``) that runs models through sparsec, so ONNX's
own backend test suite (``onnx.backend.test``) runs against it::

    import sparsec.onnx_backend as backend
    rep = backend.prepare(model)            # sc.load_onnx + sc.compile (CPU kernels)
    outputs = rep.run([x])                  # a namedtuple of NumPy arrays, one per graph output
    backend.run_model(model, [x]); backend.run_node(node, [x, y])

``prepare(..., mode="compile")`` (default) compiles with the default pipeline and runs the CPU
kernels; ``mode="interpret"`` runs the reference interpreter instead (the environment variable
``SPARSEC_ONNX_BACKEND=interpret`` changes the default). Only the ``CPU`` device is supported.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, helper
from onnx.backend.base import Backend, BackendRep, namedtupledict

from .errors import SparsecError

MODES = ("compile", "interpret")


def _default_mode() -> str:
    return os.environ.get("SPARSEC_ONNX_BACKEND", "compile")


class SparsecRep(BackendRep):
    """A prepared model: ``run(inputs)`` takes a list (graph input order) or a dict by name.

    Graph inputs that determine shapes (a ``Reshape`` target, ``axes``, ``TopK``'s ``k``, given as
    graph inputs rather than constants) cannot be function arguments of a sparsec graph, whose
    shapes follow from its inputs' shapes. Such inputs are *specialized*: the first ``run``
    imports and compiles the model with their values bound as constants
    (``load_onnx(bind_inputs=...)``), and each new set of values compiles again (cached).
    ``specialized`` lists them.
    """

    def __init__(self, model, mode: str, pipeline: str, graph=None, compiled=None, specialized=()):
        self.model = model
        self.mode = mode
        self.pipeline = pipeline
        self.specialized = tuple(specialized)
        inits = {t.name for t in model.graph.initializer}
        self.input_names = [vi.name for vi in model.graph.input if vi.name not in inits]
        self.output_names = [vo.name for vo in model.graph.output]
        self._cache: dict = {}
        if graph is not None:
            self._cache[()] = (graph, compiled)

    @property
    def graph(self):
        """The imported graph (of the last specialization used, when inputs are specialized)."""
        return self._last[0] if hasattr(self, "_last") else self._cache.get((), (None,))[0]

    def _prepared(self, values: dict):
        from .onnx.importer import DataDependentError, load_onnx
        key = tuple((n, values[n].dtype.str, values[n].shape, values[n].tobytes()) for n in self.specialized)
        if key not in self._cache:
            bound = {n: values[n] for n in self.specialized}
            while True:
                try:
                    graph = load_onnx(self.model, bind_inputs=bound)
                    break
                except DataDependentError as e:
                    more = [n for n in shape_inputs(self.model, e.value) if n in values and n not in bound]
                    if not more:
                        raise
                    bound.update({n: values[n] for n in more})
            if len(bound) > len(self.specialized):
                self.specialized = tuple(bound)
                key = tuple((n, values[n].dtype.str, values[n].shape, values[n].tobytes()) for n in self.specialized)
            self._cache[key] = (graph, _compile(graph, self.mode, self.pipeline))
        self._last = self._cache[key]
        return self._last

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, dict):
            missing = [n for n in self.input_names if n not in inputs]
            if missing:
                raise SparsecError(f"missing inputs {missing}; the model takes {self.input_names}")
            arrays = [inputs[n] for n in self.input_names]
        else:
            arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(arrays) != len(self.input_names):
            raise SparsecError(f"the model takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                               f"got {len(arrays)}")
        values = {n: np.asarray(a) for n, a in zip(self.input_names, arrays)}
        graph, compiled = self._prepared(values) if self.specialized else self._cache[()]
        args = [values[n] for n in graph.main.input_names()]
        if self.mode == "interpret":
            from .interpreter import interpret
            outs = interpret(graph, *args)
        else:
            outs = compiled.run(*args)
        names = [n if n.isidentifier() else f"output_{i}" for i, n in enumerate(self.output_names)]
        return namedtupledict("Outputs", names)(*outs)


def shape_inputs(model, value: str | None) -> list[str]:
    """The graph inputs to specialize when ONNX value ``value`` must be known at import (a shape,
    axes, a count): ``value`` itself when it is a graph input, else the integer graph inputs it is
    computed from."""
    if value is None:
        return []
    g = model.graph
    inits = {t.name for t in g.initializer}
    if value in {vi.name for vi in g.input} - inits:
        return [value]
    ints = {vi.name for vi in g.input if vi.name not in inits
            and vi.type.tensor_type.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)}
    producer = {o: n for n in g.node for o in n.output}
    seen, todo, found = set(), [value], []
    while todo:
        v = todo.pop()
        if v in seen or not v:
            continue
        seen.add(v)
        if v in ints:
            found.append(v)
        elif v in producer:
            todo.extend(producer[v].input)
    return sorted(found)


def _compile(graph, mode: str, pipeline: str):
    if mode != "compile":
        return None
    from .compiler import compile as sc_compile
    return sc_compile(graph, pipeline=pipeline, progress=False)


class SparsecBackend(Backend):
    """ONNX backend interface over ``sc.load_onnx`` and ``sc.compile``."""

    @classmethod
    def is_compatible(cls, model: ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: ModelProto, device: str = "CPU", mode: str | None = None, pipeline: str = "default",
                **kwargs: Any) -> SparsecRep:
        from .onnx.importer import DataDependentError, _load_model, load_onnx
        if not cls.supports_device(device):
            raise SparsecError(f"device {device!r} is not supported by the sparsec ONNX backend (CPU only)")
        mode = mode or _default_mode()
        if mode not in MODES:
            raise SparsecError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        model = _load_model(model)
        try:
            graph = load_onnx(model)
        except DataDependentError as e:
            names = shape_inputs(model, e.value)
            if not names:
                raise
            return SparsecRep(model, mode, pipeline, specialized=names)   # imported at the first run
        return SparsecRep(model, mode, pipeline, graph, _compile(graph, mode, pipeline))

    @classmethod
    def run_model(cls, model: ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: NodeProto, inputs: Any, device: str = "CPU", outputs_info=None,
                 opset_version: int | None = None, **kwargs: Any) -> tuple[Any, ...]:
        """Run one node on ``inputs`` (a list in the node's input order, or a dict by name)."""
        if isinstance(inputs, dict):
            arrays = {n: np.asarray(inputs[n]) for n in node.input if n}
        else:
            arrays = {n: np.asarray(x) for n, x in zip([n for n in node.input if n], inputs)}
        vin = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in arrays.items()]
        vout = [helper.make_tensor_value_info(o, 0, None) for o in node.output if o]
        graph = helper.make_graph([node], f"run_node_{node.op_type}", vin, vout)
        from .onnx.importer import MIN_OPSET
        opset = opset_version or onnx.defs.onnx_opset_version()
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, MIN_OPSET))])
        return cls.prepare(model, device, **kwargs).run([arrays[n] for n in arrays])

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().split(":")[0] == "CPU"


is_compatible = SparsecBackend.is_compatible
prepare = SparsecBackend.prepare
run_model = SparsecBackend.run_model
run_node = SparsecBackend.run_node
supports_device = SparsecBackend.supports_device
