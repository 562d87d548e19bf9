"""sparsec: a model compiler for Mixture-of-Experts, small dense and quantized models.

    import sparsec as sc
    g = sc.trace(fn_or_module, sc.TensorSpec(("tokens", 64), "float32"))
    print(g); sc.parse(str(g)); sc.interpret(g, x)
"""
from . import ops  # noqa: F401  (registers the sc dialect)
from .errors import InterpretError, ParseError, SparsecError, TraceError, VerifyError  # noqa: F401
from .frontend.tracer import Parameter, Tensor, TensorSpec, trace  # noqa: F401
from .interpreter import interpret  # noqa: F401
from .ir import Graph, parse, verify  # noqa: F401

__version__ = "0.1.0"

from . import nn  # noqa: F401,E402
from . import passes  # noqa: F401,E402
from .compiler import CompiledModel, compile, load  # noqa: F401,E402
from .hf import load_hf  # noqa: F401,E402
from .onnx import load_onnx  # noqa: F401,E402


def __getattr__(name):
    # sc.testing (hypothesis strategies) is imported on first use, keeping `import sparsec` light
    if name == "testing":
        import importlib
        return importlib.import_module(".testing", __name__)
    raise AttributeError(f"module 'sparsec' has no attribute {name!r}")
