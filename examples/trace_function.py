"""Trace your own Python function: symbolic dims, readable IR, and errors that point at your line.

    python examples/trace_function.py
"""
import numpy as np

import sparsec as sc


def swiglu_block(x, w_gate, w_up, w_down):
    """A SwiGLU feed-forward written the NumPy way."""
    return (sc.ops.silu(x @ w_gate) * (x @ w_up)) @ w_down


specs = [sc.TensorSpec(("tokens", 32), "float32"), sc.TensorSpec((32, 64), "float32"),
         sc.TensorSpec((32, 64), "float32"), sc.TensorSpec((64, 32), "float32")]
g = sc.trace(swiglu_block, *specs)
print(g)

rng = np.random.default_rng(0)
x, wg, wu, wd = (rng.standard_normal(s.shape if s.shape[0] != "tokens" else (3, 32)).astype("float32")
                 for s in specs)
(y,) = sc.interpret(g, x, wg, wu, wd)
silu = lambda v: v / (1 + np.exp(-v))  # noqa: E731
assert np.allclose(y, (silu(x @ wg) * (x @ wu)) @ wd, rtol=1e-4, atol=1e-5)
print("interpreter output matches NumPy:", y.shape)


def data_dependent(x):
    if x.sum() > 0:  # Python control flow on runtime data cannot be traced
        return x
    return -x


try:
    sc.trace(data_dependent, sc.TensorSpec((4,), "float32"))
except sc.TraceError as e:
    print("TraceError, as expected:\n", e)
