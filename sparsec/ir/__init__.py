"""The IR: types, values, ops, blocks/functions, builder, printer, parser, verifier."""
from .attributes import REQUIRED, AttrKind, Bool, Dims, DTypeAttr, Float, Floats, Int, Ints, Str, TensorAttr
from .builder import Builder, infer_result_types
from .core import Block, BlockArgument, Function, Graph, Operation, OpResult, Region, Value
from .dtypes import DType, as_dtype
from .opdef import REGISTRY, OpDef, define, get_opdef, register
from .parser import parse
from .printer import print_graph
from .types import (Dim, QuantType, TensorType, Type, broadcast_shapes, canon_dim, dim_div, dim_mul, dim_prod,
                    eval_dim, is_static)
from .verifier import verify
