"""Import an ONNX model: build one with onnx.helper, load it with sc.load_onnx, compile, run.

    pip install "sparsec[onnx]"
    python examples/import_onnx.py [OUT_DIR]

The model is a small MoE layer written the way exporters write it: a router (MatMul, Softmax,
TopK), the top-k weights scattered into a dense [tokens, experts] matrix whose shape comes from
Shape -> Gather -> Concat (folded at import into the symbolic dim "tokens"), SiLU experts, and a
weighted sum. The same file then compiles from the command line:
``sparsec compile moe.onnx -o moe.spc && sparsec run moe.spc --input x=x.npy``.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import sparsec as sc

out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
rng = np.random.default_rng(0)
H, F, E, K = 16, 32, 4, 2


def w(*shape):
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32))


inits = [w(H, E), numpy_helper.from_array(np.array([K], np.int64), "k"),
         numpy_helper.from_array(np.array([0], np.int64), "i0"), numpy_helper.from_array(np.array([E], np.int64), "nE")]
inits[0].name = "router.weight"
nodes = [
    helper.make_node("MatMul", ["x", "router.weight"], ["logits"], name="router"),
    helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    helper.make_node("TopK", ["probs", "k"], ["top_w", "top_i"], axis=-1, name="topk"),
    helper.make_node("Shape", ["x"], ["x_shape"]),
    helper.make_node("Gather", ["x_shape", "i0"], ["tokens"], axis=0),
    helper.make_node("Concat", ["tokens", "nE"], ["dense_shape"], axis=0),
    helper.make_node("ConstantOfShape", ["dense_shape"], ["zeros"]),
    helper.make_node("ScatterElements", ["zeros", "top_i", "top_w"], ["dense"], axis=1),
]
terms = []
for e in range(E):
    up, down = w(H, F), w(F, H)
    up.name, down.name = f"experts.{e}.up", f"experts.{e}.down"
    inits += [up, down, numpy_helper.from_array(np.array([e], np.int64), f"e{e}"),
              numpy_helper.from_array(np.array([e + 1], np.int64), f"e{e}_end"),
              numpy_helper.from_array(np.array([1], np.int64), f"ax{e}")]
    nodes += [helper.make_node("MatMul", ["x", up.name], [f"h{e}"]),
              helper.make_node("Sigmoid", [f"h{e}"], [f"s{e}"]),
              helper.make_node("Mul", [f"h{e}", f"s{e}"], [f"a{e}"]),
              helper.make_node("MatMul", [f"a{e}", down.name], [f"o{e}"]),
              helper.make_node("Slice", ["dense", f"e{e}", f"e{e}_end", f"ax{e}"], [f"gate{e}"]),
              helper.make_node("Mul", [f"o{e}", f"gate{e}"], [f"y{e}"])]
    terms.append(f"y{e}")
nodes.append(helper.make_node("Sum", terms, ["y"], name="combine"))
graph = helper.make_graph(nodes, "tiny_moe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["tokens", H])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["tokens", H])], initializer=inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
onnx.checker.check_model(model)
path = os.path.join(out_dir, "moe.onnx")
onnx.save(model, path)

# import: initializers become sc.param weights (the MatMul weights pre-transposed for sc.linear),
# the Shape/Gather/Concat arithmetic folds into the symbolic dim "tokens"
g = sc.load_onnx(path)
print(g)
print("weights:", ", ".join(sorted(g.params())))

x = rng.standard_normal((5, H)).astype(np.float32)
want = ReferenceEvaluator(model).run(None, {"x": x})[0]
(y_ref,) = sc.interpret(g, x)
cm = sc.compile(g)
y = cm(x)
print("interpreter vs onnx.reference: max |diff| =", float(np.abs(y_ref - want).max()))
print("compiled    vs onnx.reference: max |diff| =", float(np.abs(y - want).max()))
assert np.allclose(y_ref, want, rtol=1e-4, atol=1e-5) and np.allclose(y, want, rtol=1e-4, atol=1e-5)
assert np.allclose(cm(x[:2]), ReferenceEvaluator(model).run(None, {"x": x[:2]})[0], rtol=1e-4, atol=1e-5)

# the same model through the ONNX backend interface (what onnx.backend.test drives)
import sparsec.onnx_backend as backend  # noqa: E402

(y2,) = backend.run_model(model, [x])
assert np.allclose(y2, want, rtol=1e-4, atol=1e-5)
print("sparsec.onnx_backend.run_model: ok")

# every unsupported op is reported at once, with counts and node names
bad = helper.make_model(helper.make_graph(
    [helper.make_node("Conv", ["x", "x"], ["c"], name="conv"), helper.make_node("Einsum", ["c"], ["y"], equation="ij->ij")],
    "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]), opset_imports=[helper.make_opsetid("", 18)])
try:
    sc.load_onnx(bad)
except sc.SparsecError as e:
    print("\n".join(str(e).splitlines()[:3]))
