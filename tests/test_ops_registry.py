"""One op, one place: every op in the sc dialect has its shape rule, reference and documentation."""
import inspect

import sparsec as sc
from sparsec.ir.opdef import REGISTRY

# Every family of the dialect the core issue asks for is present.
REQUIRED = {
    "sc.add", "sc.sub", "sc.mul", "sc.div", "sc.neg", "sc.exp", "sc.log", "sc.sqrt", "sc.rsqrt", "sc.tanh", "sc.pow",
    "sc.maximum", "sc.minimum", "sc.cast", "sc.relu", "sc.gelu", "sc.gelu_tanh", "sc.silu", "sc.sigmoid",
    "sc.matmul", "sc.linear", "sc.sum", "sc.mean", "sc.max", "sc.argmax", "sc.softmax", "sc.log_softmax",
    "sc.topk", "sc.take", "sc.embedding", "sc.scatter_add", "sc.index_add", "sc.reshape", "sc.transpose",
    "sc.concat", "sc.slice", "sc.where", "sc.equal", "sc.less", "sc.greater", "sc.rms_norm", "sc.layer_norm",
    "sc.rope", "sc.attention", "sc.moe_dispatch", "sc.moe_permute", "sc.grouped_matmul", "sc.moe_combine",
    "sc.param", "sc.constant", "sc.fused",
}


def test_required_ops_exist():
    assert REQUIRED - set(REGISTRY) == set()


def test_every_op_has_rule_reference_and_doc():
    for name, opdef in REGISTRY.items():
        assert opdef.reference is not None, f"{name} has no NumPy reference"
        assert opdef.declared_result or opdef.infer is not None, f"{name} has no shape rule"
        assert opdef.doc, f"{name} has no docstring"
        assert name.startswith("sc."), name


def test_infer_and_reference_take_the_declared_attributes():
    for name, opdef in REGISTRY.items():
        for fn in (opdef.infer, opdef.reference):
            if fn is None:
                continue
            params = inspect.signature(fn).parameters
            kw = {p for p, v in params.items() if v.kind == v.KEYWORD_ONLY}
            extra = {"regions", "weights"} if opdef.regions else set()
            assert set(opdef.attrs) <= kw | extra or any(v.kind == v.VAR_KEYWORD for v in params.values()), \
                f"{name}.{fn.__name__} does not take attributes {sorted(set(opdef.attrs) - kw)}"


def test_op_count_is_reported():
    # the public registry is reachable from the package
    assert sc.ops.REGISTRY is REGISTRY and len(REGISTRY) >= len(REQUIRED)
