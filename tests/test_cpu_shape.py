"""CPU kernels of the shape ops against the reference interpreter."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cpu_elementwise import T, check_graph, check_op_on_random_graph, graph_of

import sparsec as sc
from sparsec.lower.cpu import lower_op, run_naive

OWNED = {"sc.reshape", "sc.transpose", "sc.concat", "sc.slice", "sc.broadcast_to", "sc.expand_dims", "sc.squeeze",
         "sc.stack"}


@pytest.mark.parametrize("op", sorted(OWNED))
@settings(max_examples=12)
@given(data=st.data())
def test_op_matches_reference(op, data):
    check_op_on_random_graph(data, op, OWNED, ("f32", "i64", "bf16"), max_ops=3)


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(OWNED))
@settings(max_examples=max(60, settings.default.max_examples))
@given(data=st.data())
def test_op_matches_reference_all_dtypes(op, data):
    dts = ("f32", "f64", "f16", "bf16", "i8", "i32", "i64", "ui8", "i1")
    check_op_on_random_graph(data, op, OWNED, dts, max_ops=4, max_size=6)


@pytest.mark.parametrize("shape,perm", [((128, 1024), (1, 0)), ((4, 33, 17), (0, 2, 1)), ((2, 3, 4, 5), (0, 2, 1, 3)),
                                        ((2, 3, 4), (2, 1, 0)), ((2, 1, 3, 4), (1, 3, 0, 2)), ((5, 6), (0, 1)),
                                        ((3, 4, 5), (2, 0, 1)), ((1, 7), (1, 0))])
@pytest.mark.parametrize("dt", [np.float32, np.int8, ml_dtypes.bfloat16, np.float64, np.bool_])
def test_transpose_patterns(shape, perm, dt):
    x = (np.random.default_rng(0).standard_normal(shape) * 10).astype(dt)
    g = graph_of("sc.transpose", [T(shape, x.dtype)], {"perm": list(perm)})
    (out,) = check_graph(g, [x], "sc.transpose", OWNED)
    assert np.array_equal(out, x.transpose(perm))


def test_views_share_memory_and_symbolic_reshape():
    g = graph_of("sc.reshape", [T(("batch", "seq", 64), "f32")], {"shape": [-1, 8, 8]})
    k = lower_op(g.main.ops[0])
    assert k.view
    x = np.random.rand(2, 3, 64).astype(np.float32)
    (y,) = k.fn(x)
    assert y.shape == (6, 8, 8) and np.shares_memory(x, y)
    # [batch*seq, 64] -> [batch, seq, 64]: two symbolic dims, read from the run's bindings
    g3 = sc.trace(lambda v: sc.ops.reshape(sc.ops.reshape(v, (-1, 64)), (v.shape[0], v.shape[1], 64)),
                  sc.TensorSpec(("batch", "seq", 64), "float32"))
    check_graph(g3, [x], "sc.reshape", OWNED)
    assert "_cdb()" in lower_op(g3.main.ops[1]).info["source"]
    for axes in ([0], [1, 3], [-1]):
        ge = graph_of("sc.expand_dims", [T(("tokens", 4), "f32")], {"axes": axes})
        (y,) = check_graph(ge, [np.ones((5, 4), np.float32)], "sc.expand_dims", OWNED)
        squeezed = [i for i, d in enumerate(ge.main.ops[0].result.type.shape) if d == 1]
        gs = graph_of("sc.squeeze", [ge.main.ops[0].result.type], {"axes": squeezed})
        (z,) = check_graph(gs, [y], "sc.squeeze", OWNED)
        assert z.shape == (5, 4) and np.shares_memory(y, z)


def test_concat_stack_slice_broadcast():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((3, 2)).astype(np.float32)
    check_graph(graph_of("sc.concat", [T((3, 4), "f32"), T((3, 2), "f32")], {"axis": 1}), [a, b], "sc.concat", OWNED)
    check_graph(graph_of("sc.stack", [T((3, 4), "f32")] * 3, {"axis": -1}), [a, a, a], "sc.stack", OWNED)
    for start, stop, step in [(None, None, -1), (1, None, 2), (-3, -1, 1), (5, 0, -2), (None, 2, 1)]:
        g = graph_of("sc.slice", [T((3, 4), "f32")], {"axis": 1, "start": start, "stop": stop, "step": step})
        check_graph(g, [a], "sc.slice", OWNED)
    g = graph_of("sc.broadcast_to", [T((4,), "bf16")], {"shape": ["tokens", 3, 4]})
    # the symbol is not bound by any input here: bind it through another input
    g = sc.trace(lambda x, y: sc.ops.broadcast_to(y, (x.shape[0], 3, 4)), sc.TensorSpec(("tokens",), "float32"),
                 sc.TensorSpec((4,), "bfloat16"))
    check_graph(g, [np.zeros(5, np.float32), rng.standard_normal(4).astype(ml_dtypes.bfloat16)],
                "sc.broadcast_to", OWNED)
    assert run_naive.last_kernels == ["sc.broadcast_to"]
