"""ONNX import: ``sc.load_onnx(path_or_model) -> sc.Graph``.

``sparsec.onnx.importer`` walks the ONNX graph and converts each node with one converter per op
type (``sparsec.onnx.converters.CONVERTERS``); shape computations (``Shape -> Gather -> Concat ->
Reshape``) are evaluated at import, symbolically where dims are symbolic. The ONNX backend
(``onnx.backend.base.Backend``) is ``sparsec.onnx_backend``; ``python -m sparsec.onnx.node_table``
regenerates ``docs/onnx_node_tests.md`` from ONNX's own node tests.
"""
from .importer import OnnxImportError, load_onnx, supported_ops

__all__ = ["OnnxImportError", "load_onnx", "supported_ops"]
