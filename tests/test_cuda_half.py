"""f16 and bf16 on the CUDA target (``sparsec.runtime.cuda.half``) against the reference
interpreter, under numba's CUDA simulator (small shapes) or on a GPU: elementwise ops and fused
regions, casts (bit exact: one rounding, NaN kept), linear/matmul (f32 accumulation), norms and
rope, attention, reductions, shape and index ops (2-byte moves), the MoE chain, embedding,
conv2d, scatter_add/index_add (f32 accumulation), one_hot, the sparse-input linear, quantized
matmuls on 16-bit activations; PTX for sm_90 of every 16-bit kernel variant,
assembled with ptxas (subprocess without the simulator). Floats compare with the per-dtype
tolerances of ``sc.testing.compare_outputs`` (f16 2e-3, bf16 2e-2), as the CPU tests."""
from sparsec.lower.cuda.testing import cuda_test_process

MODE = cuda_test_process()

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_cuda_moe import run_ptx_script  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.frontend.tracer import Parameter  # noqa: E402
from sparsec.ir.types import QuantType  # noqa: E402
from sparsec.lower.cuda import has_cuda_lowering  # noqa: E402
from sparsec.lower.cuda.testing import run_cuda  # noqa: E402
from sparsec.passes import PassManager  # noqa: E402
from sparsec.quant import quantize  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
HALF = {"f16": np.dtype(np.float16), "bf16": BF16}
FEW = settings(max_examples=5, deadline=None)
ELEMENTWISE = [n for n in sc.testing.available_ops() if n.startswith("sc.") and has_cuda_lowering(n)
               and n in __import__("sparsec.lower.cpu.elementwise", fromlist=["x"]).ELEMENTWISE_OPS]


def spec(a):
    return sc.TensorSpec(a.shape, a.dtype)


def bits(a):
    return np.ascontiguousarray(a).view(np.uint16)


def check(g, *inputs):
    """CUDA vs the interpreter (per-dtype tolerances); returns (reference, CUDA) outputs."""
    ref = sc.interpret(g, *inputs)
    with np.errstate(all="ignore"):
        got = run_cuda(g, *inputs)
    msg = sc.testing.compare_outputs(ref, got)
    assert msg is None, msg
    return ref, got


# -- elementwise, fused regions, casts -----------------------------------------------------------

@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_elementwise_rounds_once_like_the_reference(dt):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(48) * 3).astype(HALF[dt])
    y = (rng.standard_normal(48) * 3).astype(HALF[dt])
    y[:3] = [0.0, np.nan, np.inf]

    def f(x, y):
        return (x + y, x * y, x / y, x - y, sc.ops.maximum(x, y), sc.ops.square(x), -x, sc.ops.relu(y),
                sc.ops.abs(y), sc.ops.exp(x), sc.ops.tanh(x), sc.ops.silu(x), sc.ops.sigmoid(x), sc.ops.gelu(x),
                sc.ops.gelu_tanh(x), sc.ops.erf(x), x < y)
    g = sc.trace(f, spec(x), spec(y))
    ref, got = check(g, x, y)
    for i, (r, o) in enumerate(zip(ref, got)):
        assert o.dtype == r.dtype
        if i < 9:  # exact arithmetic rounded once: bit exact
            assert np.array_equal(bits(o), bits(r)), i
        elif r.dtype != np.bool_:  # f32 math within ~1-2 ulp: the rounded results rarely differ
            assert np.count_nonzero(bits(o) != bits(r)) <= 3, i
        else:
            assert np.array_equal(o, r)


def test_casts_with_16_bit_floats_are_bit_exact():
    rng = np.random.default_rng(1)
    vals = np.concatenate([rng.uniform(-300, 300, 24), [0.0, -0.0, 0.5, -0.5, 1.5, 2.5, 65519.0, 70000.0, 1e-8,
                                                        np.nan, np.inf, -np.inf]])
    all_dts = ("f32", "f64", "f16", "bf16", "i8", "i32", "i64", "ui8", "i1")
    for src in all_dts:
        npdt = sc.ir.as_dtype(src).np
        if src == "i1":
            x = vals > 0
        elif src in ("f32", "f64", "f16", "bf16"):
            with np.errstate(all="ignore"):
                x = vals.astype(npdt)
        else:
            x = np.clip(np.nan_to_num(vals), 0 if src == "ui8" else -100, 100).astype(npdt)
        for dst in all_dts:
            if dst == src or (src not in HALF and dst not in HALF):
                continue
            xs = x
            if src in HALF and dst in ("i8", "i32", "i64", "ui8"):   # in range: defined
                xs = np.clip(np.nan_to_num(x.astype(np.float64)), 0 if dst == "ui8" else -100, 100).astype(x.dtype)
            g = sc.trace(lambda a, dst=dst: sc.ops.cast(a, dst), spec(xs))
            (out,) = run_cuda(g, xs)
            with np.errstate(all="ignore"):
                want = xs.astype(sc.ir.as_dtype(dst).np)
            assert out.dtype == want.dtype, (src, dst)
            if dst in HALF:
                assert np.array_equal(bits(out), bits(want)), (src, dst, xs[bits(out) != bits(want)])
            else:
                np.testing.assert_array_equal(out, want, err_msg=f"{src}->{dst}")


def test_f64_to_f16_rounds_once_and_bf16_keeps_nan():
    x = np.array([1 + 2**-11 + 2**-40, 1 + 2**-11, 1 + 3 * 2**-11, 65520.0, -65519.9], np.float64)
    (out,) = run_cuda(sc.trace(lambda a: sc.ops.cast(a, "f16"), spec(x)), x)
    with np.errstate(over="ignore"):
        assert np.array_equal(bits(out), bits(x.astype(np.float16)))
    f = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -np.nan, 3.4e38, 1e-40], np.float32)
    f[3] = -np.float32(np.nan)
    f = np.concatenate([f, np.array([0x7FA00001, 0xFFC00010], np.uint32).view(np.float32)])
    (out,) = run_cuda(sc.trace(lambda a: sc.ops.cast(a, "bf16"), spec(f)), f)
    want = f.astype(BF16)
    nan = np.isnan(f)
    assert np.array_equal(bits(out)[~nan], bits(want)[~nan])
    # NaN stays a quiet NaN of the same sign (the payload of a signalling NaN may differ from
    # ml_dtypes', as in the CPU kernels)
    assert np.isnan(out[nan].astype(np.float32)).all() and np.array_equal(bits(out)[nan] >> 15, bits(want)[nan] >> 15)
    assert (bits(out)[nan] & 0x40).all()


@FEW
@given(data=st.data(), fuse=st.booleans(), dt=st.sampled_from(["f16", "bf16"]))
def test_elementwise_random_graphs(data, fuse, dt):
    g = data.draw(sc.testing.graphs(ops=ELEMENTWISE, max_ops=4, dtypes=(dt, "f32", "i32")), label="graph")
    assume(all(has_cuda_lowering(o.name) or o.name in ("sc.param", "sc.constant", "func.return") for o in g.main.ops))
    if fuse:
        g = PassManager.parse("fuse-elementwise").run(g)
    inputs = data.draw(sc.testing.inputs_for(g, max_size=3), label="inputs")
    try:
        expected = sc.testing.run(g, inputs)
    except sc.errors.SparsecError:
        return  # an integer division by zero: tests/test_cuda_ops.py checks the device's report
    with np.errstate(all="ignore"):
        got = run_cuda(g, *inputs)
    msg = sc.testing.compare_outputs(expected, got)
    assert msg is None, f"{msg}\n{g}"


def _random_graph_over_every_cuda_op(data, dt):
    ops = [n for n in sc.testing.available_ops() if has_cuda_lowering(n)]
    g = data.draw(sc.testing.graphs(ops=ops, max_ops=5, dtypes=(dt, "i64", "i32", "i1")), label="graph")
    assume(all(has_cuda_lowering(o.name) or o.name in ("sc.param", "sc.constant", "func.return") for o in g.main.ops))
    inputs = data.draw(sc.testing.inputs_for(g, max_size=3), label="inputs")
    try:
        expected = sc.testing.run(g, inputs)
    except sc.errors.SparsecError:
        return  # bad data for the reference (tests/test_cuda_ops.py checks the device's report)
    with np.errstate(all="ignore"):
        got = run_cuda(g, *inputs)
    msg = sc.testing.compare_outputs(expected, got)
    assert msg is None, f"{msg}\ninputs {[(a.shape, a.dtype) for a in inputs]}\n{g}"


@settings(max_examples=8, deadline=None)
@given(data=st.data(), dt=st.sampled_from(["f16", "bf16"]))
def test_random_graphs_over_every_cuda_op(data, dt):
    _random_graph_over_every_cuda_op(data, dt)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(data=st.data(), dt=st.sampled_from(["f16", "bf16"]))
def test_random_graphs_over_every_cuda_op_thorough(data, dt):
    _random_graph_over_every_cuda_op(data, dt)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_fused_region_rounds_every_intermediate(dt):
    x = np.random.default_rng(4).standard_normal((3, 20)).astype(HALF[dt])
    c = np.random.default_rng(5).standard_normal((20,)).astype(HALF[dt])

    def f(x):
        e = sc.ops.exp(x) + x
        return e * x + sc.ops.constant(c), sc.ops.cast(e, "float32"), sc.ops.iota(x, axis=1, dtype=dt) * x
    g = PassManager.parse("fuse-elementwise").run(sc.trace(f, spec(x)))
    assert any(o.name == "sc.fused" for o in g.main.ops)
    ref, got = check(g, x)
    assert np.count_nonzero(bits(got[0]) != bits(ref[0])) <= 2


# -- linear / matmul, norms, rope, attention -----------------------------------------------------

@FEW
@given(dt=st.sampled_from(["f16", "bf16"]), m=st.integers(1, 9), k=st.integers(1, 11), n=st.integers(1, 7),
       bias=st.booleans(), seed=st.integers(0, 99))
@example(dt="bf16", m=4, k=37, n=5, bias=True, seed=0)   # the GEMV
@example(dt="f16", m=6, k=9, n=7, bias=False, seed=1)    # the tiled GEMM, partial tiles
def test_linear_and_matmul(dt, m, k, n, bias, seed):
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(HALF[dt]) for s in ((m, k), (n, k), (n,)))

    def f(x, w, b):
        return (sc.ops.linear(x, w, b) if bias else sc.ops.linear(x, w),
                sc.ops.matmul(x, w, transpose_b=True), sc.ops.matmul(sc.ops.reshape(x, (1, m, k)), x, transpose_b=True))
    ref, got = check(sc.trace(f, spec(x), spec(w), spec(b)), x, w, b)
    for r, o in zip(ref, got):  # f32 sums in another order, rounded once: nearly always the same bits
        assert np.count_nonzero(bits(o) != bits(r)) <= max(1, r.size // 10)


@FEW
@given(dt=st.sampled_from(["f16", "bf16"]), interleaved=st.booleans(), rotary=st.sampled_from([0, 4]),
       batched=st.booleans(), seed=st.integers(0, 99))
def test_norms_and_rope(dt, interleaved, rotary, batched, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 2, 3, 8)) * 2).astype(HALF[dt])
    w, b = rng.standard_normal(8).astype(HALF[dt]), rng.standard_normal(8).astype(HALF[dt])
    pos = rng.integers(0, 50, (2, 3) if batched else (3,))

    def f(x, w, b, p):
        return (sc.ops.rms_norm(x, w, eps=1e-5), sc.ops.layer_norm(x, w, b), sc.ops.layer_norm(x),
                sc.ops.rope(x, p, interleaved=interleaved, rotary_dim=rotary))
    check(sc.trace(f, spec(x), spec(w), spec(b), spec(pos)), x, w, b, pos)


@FEW
@given(dt=st.sampled_from(["f16", "bf16"]), causal=st.booleans(), mask=st.sampled_from([None, "bool", "float"]),
       s=st.integers(1, 3), seed=st.integers(0, 99))
def test_attention(dt, causal, mask, s, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((1, 2, s, 8)).astype(HALF[dt])
    k, v = (rng.standard_normal((1, 1, 4, 8)).astype(HALF[dt]) for _ in range(2))
    args = [q, k, v]
    if mask == "bool":
        args.append(rng.random((s, 4)) > 0.3)
    elif mask == "float":
        args.append(rng.standard_normal((1, 1, s, 4)).astype(HALF[dt]))
    g = sc.trace(lambda *a: sc.ops.attention(*a, causal=causal), *map(spec, args))
    check(g, *args)


def test_kv_cache_write_moves_bf16_bits():
    rng = np.random.default_rng(3)
    cache = rng.standard_normal((1, 2, 5, 4)).astype(BF16)
    new = rng.standard_normal((1, 2, 2, 4)).astype(BF16)
    g = sc.trace(lambda c, n: sc.ops.kv_write(c, n, axis=2), spec(cache), spec(new))
    ref, got = check(g, cache, new)
    assert np.array_equal(bits(got[0]), bits(ref[0]))


# -- reductions, shape and index ops -------------------------------------------------------------

@FEW
@given(dt=st.sampled_from(["f16", "bf16"]), shape=st.sampled_from([(2, 3, 70), (3, 1, 5), (1, 66), (4,)]),
       seed=st.integers(0, 99), nan=st.booleans())
def test_reductions(dt, shape, seed, nan):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(HALF[dt])
    y = x.copy()  # top-k without NaN: the reference's order of a bfloat16 NaN is ml_dtypes' sort's
    if nan:
        x.reshape(-1)[rng.integers(0, x.size)] = np.nan

    def f(x, y):
        last = len(shape) - 1
        return (sc.ops.sum(x, axis=last), sc.ops.mean(x), sc.ops.max(x, axis=0), sc.ops.min(x, axis=last),
                sc.ops.argmax(x, axis=last), sc.ops.softmax(x, last), sc.ops.log_softmax(x, 0),
                *sc.ops.topk(y, 1, axis=last), sc.ops.cumsum(x, last), sc.ops.sum(x, axis=(0, last) if last else (0,)))
    ref, got = check(sc.trace(f, spec(x), spec(y)), x, y)
    for i in (2, 3, 4, 7, 8):   # max, min, argmax, topk: exact
        assert np.array_equal(got[i], ref[i], equal_nan=True) if got[i].dtype.kind == "i" else \
            np.array_equal(bits(got[i]), bits(ref[i]))


@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_shape_and_index_ops_move_the_bits(dt):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 4)).astype(HALF[dt])
    ids = np.array([2, 0, 2], np.int64)
    table = rng.standard_normal((5, 4)).astype(HALF[dt])

    def f(x, ids, table):
        t = sc.ops.transpose(x, (2, 0, 1))
        return (sc.ops.reshape(t, (-1,)), sc.ops.slice(x, axis=2, start=1, step=2),
                sc.ops.broadcast_to(sc.ops.expand_dims(table[0], 0), (3, 4)), sc.ops.concat([x, x], axis=1),
                sc.ops.stack([x, x], axis=0), sc.ops.take(x, ids, axis=1), sc.ops.embedding(ids, table),
                sc.ops.take_along_axis(x, sc.ops.reshape(ids, (1, 3, 1)), axis=1),
                sc.ops.scatter(table, sc.ops.broadcast_to(sc.ops.reshape(ids[:2], (2, 1)), (2, 4)),
                               sc.ops.slice(table, axis=0, start=1, stop=3), axis=0))
    ref, got = check(sc.trace(f, spec(x), spec(ids), spec(table)), x, ids, table)
    for r, o in zip(ref, got):
        assert o.dtype == r.dtype and np.array_equal(bits(o), bits(r))


# -- MoE -----------------------------------------------------------------------------------------

@FEW
@given(dt=st.sampled_from(["f16", "bf16"]), tokens=st.sampled_from([1, 3, 20]), act=st.sampled_from(["silu", "gelu"]),
       seed=st.integers(0, 99))
@example(dt="bf16", tokens=20, act="silu", seed=0)   # enough rows per expert for the tiled GEMM
def test_moe_chain(dt, tokens, act, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, 8)).astype(HALF[dt])
    logits = rng.standard_normal((tokens, 4)).astype(np.float32)
    wg, wu = ((rng.standard_normal((4, 6, 8)) * 0.3).astype(HALF[dt]) for _ in range(2))
    wd = (rng.standard_normal((4, 8, 6)) * 0.3).astype(HALF[dt])

    def f(x, logits, wg, wu, wd):
        v, ids = sc.ops.topk(logits, 2)
        order, off = sc.ops.moe_dispatch(ids, num_experts=4)
        xp = sc.ops.moe_permute(x, order, top_k=2)
        h = sc.ops.moe_gated_grouped_matmul(xp, wg, wu, off, activation=act)
        y = sc.ops.grouped_matmul(h, wd, off)
        return xp, h, y, sc.ops.moe_combine(y, order, sc.ops.cast(v, x.dtype))
    ref, got = check(sc.trace(f, *map(spec, (x, logits, wg, wu, wd))), x, logits, wg, wu, wd)
    assert np.array_equal(bits(got[0]), bits(ref[0]))


# -- conv2d, scatter_add / index_add / one_hot, sparse-input linear, quantized matmuls -----------

@FEW
@given(dt=st.sampled_from(["f16", "bf16"]), seed=st.integers(0, 99), rows=st.sampled_from([1, 9]))
def test_conv_scatters_and_sparse_input_linear(dt, seed, rows):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 2, 5, 5)).astype(HALF[dt])
    w = rng.standard_normal((4, 1, 3, 3)).astype(HALF[dt])
    b = rng.standard_normal(4).astype(HALF[dt])
    base = rng.standard_normal((5, 4)).astype(HALF[dt])
    idx = rng.integers(0, 5, (6, 4))          # repeated rows: adds in index order, in f32
    upd = rng.standard_normal((6, 4)).astype(HALF[dt])
    ii = np.array([1, 1, 3, 1], np.int64)
    a = rng.standard_normal((rows, 8)).astype(HALF[dt])
    wt = rng.standard_normal((8, 5)).astype(HALF[dt])

    def f(x, w, b, base, idx, upd, ii, a, wt):
        return (sc.ops.conv2d(x, w, b, padding=1, groups=2), sc.ops.scatter_add(base, idx, upd, axis=0),
                sc.ops.index_add(base, ii, sc.ops.slice(upd, axis=0, start=0, stop=4), axis=0),
                sc.ops.one_hot(ii, 4, dtype=dt), sc.ops.sparse_input_linear(a, wt, threshold=0.5))
    args = (x, w, b, base, idx, upd, ii, a, wt)
    ref, got = check(sc.trace(f, *map(spec, args)), *args)
    assert np.array_equal(bits(got[3]), bits(ref[3]))


@pytest.mark.parametrize("fmt,dt", [("q8_0", "bf16"), ("q4_0", "f16"), ("i8c", "bf16"), ("int4", "f16"),
                                    pytest.param("q8_0", "f16", marks=pytest.mark.slow),
                                    pytest.param("q4_0", "bf16", marks=pytest.mark.slow),
                                    pytest.param("i8c", "f16", marks=pytest.mark.slow),
                                    pytest.param("int4", "bf16", marks=pytest.mark.slow)])
def test_quantized_matmuls_on_16_bit_activations(fmt, dt):
    rng = np.random.default_rng(7)
    qt = quantize(rng.standard_normal((6, 64)).astype(np.float32), fmt)
    qe = quantize(rng.standard_normal((3, 6, 64)).astype(np.float32), fmt)
    p, pe = Parameter(np.zeros(qt.shape, HALF[dt])), Parameter(np.zeros(qe.shape, HALF[dt]))
    for m in (1, 9):   # the (word) GEMV and the tiled GEMM
        x, b = rng.standard_normal((m, 64)).astype(HALF[dt]), rng.standard_normal(6).astype(HALF[dt])
        off = np.array([0, m // 2, m // 2, m], np.int64)
        g = sc.trace(lambda x, b, off: (sc.ops.linear(x, p, b), sc.ops.grouped_matmul(x, pe, off),
                                        sc.ops.moe_gated_grouped_matmul(x, pe, pe, off, activation="silu")),
                     spec(x), spec(b), spec(off))
        for op, q in zip([o for o in g.main.ops if o.name == "sc.param"], (qt, qe)):
            op.result.type = QuantType(q.fmt, q.shape)
            g.weights[op.attrs["name"]] = q
        check(g, x, b, off)


@pytest.mark.parametrize("dt", ["f16", "bf16"])
def test_compiled_decoder_block(dt):
    """A Llama-style block with 16-bit weights and activations through ``sc.compile(target="cuda")``
    (the default pipeline: fused elementwise regions between the kernels)."""
    rng = np.random.default_rng(11)
    P = {n: Parameter((rng.standard_normal(s) * 0.3).astype(HALF[dt]))
         for n, s in [("wq", (16, 16)), ("wk", (8, 16)), ("wv", (8, 16)), ("wo", (16, 16)), ("wg", (24, 16)),
                      ("wu", (24, 16)), ("wd", (16, 24)), ("n1", (16,)), ("n2", (16,))]}

    def block(x, pos):
        h = sc.ops.rms_norm(x, P["n1"], eps=1e-5)
        q = sc.ops.transpose(sc.ops.reshape(sc.ops.linear(h, P["wq"]), (1, 3, 2, 8)), (0, 2, 1, 3))
        k = sc.ops.transpose(sc.ops.reshape(sc.ops.linear(h, P["wk"]), (1, 3, 1, 8)), (0, 2, 1, 3))
        v = sc.ops.transpose(sc.ops.reshape(sc.ops.linear(h, P["wv"]), (1, 3, 1, 8)), (0, 2, 1, 3))
        a = sc.ops.attention(sc.ops.rope(q, pos), sc.ops.rope(k, pos), v, causal=True)
        x = x + sc.ops.linear(sc.ops.reshape(sc.ops.transpose(a, (0, 2, 1, 3)), (1, 3, 16)), P["wo"])
        h = sc.ops.rms_norm(x, P["n2"], eps=1e-5)
        return x + sc.ops.linear(sc.ops.silu(sc.ops.linear(h, P["wg"])) * sc.ops.linear(h, P["wu"]), P["wd"])
    x = rng.standard_normal((1, 3, 16)).astype(HALF[dt])
    pos = np.arange(3, dtype=np.int64)
    cm = sc.compile(sc.trace(block, spec(x), spec(pos)), target="cuda", progress=False)
    assert any(s.op == "sc.fused" for s in cm.executables["main"].plan.steps)
    (want,) = sc.interpret(cm.graph, x, pos)
    got = cm(x, pos)
    got = got[0] if isinstance(got, tuple) else got
    assert got.dtype == HALF[dt]
    msg = sc.testing.compare_outputs([want], [got])
    assert msg is None, msg


# -- PTX ------------------------------------------------------------------------------------------

PTX_SCRIPT = r"""
import json, tempfile
import sparsec as sc
from sparsec.lower.lowering import lower_function
from sparsec.passes import PassManager
from sparsec.runtime.cuda.ptx import emit_ptx

def f(x, w, b, w8, p, ids, logits, wg, wd):
    h = sc.ops.linear(x, w, b)
    a = sc.ops.silu(h) * 2.0 + sc.ops.cast(sc.ops.cast(h, "float64"), h.dtype)
    q = sc.ops.reshape(x, (1, 1, 3, 8))
    v, top = sc.ops.topk(logits, 2)
    order, off = sc.ops.moe_dispatch(top, num_experts=4)
    xp = sc.ops.moe_permute(x, order, top_k=2)
    y = sc.ops.grouped_matmul(sc.ops.moe_gated_grouped_matmul(xp, wg, wg, off, activation="silu"), wd, off)
    return (a, sc.ops.cast(a, "float32"), sc.ops.matmul(x, sc.ops.transpose(x, (1, 0))), sc.ops.rms_norm(x, w8),
            sc.ops.layer_norm(h), sc.ops.rope(q, p), sc.ops.attention(q, q, q, causal=True), sc.ops.sum(h, axis=0),
            sc.ops.max(h), sc.ops.argmax(h, axis=-1), sc.ops.softmax(h, -1), sc.ops.log_softmax(h, 0),
            *sc.ops.topk(h, 2), sc.ops.cumsum(h, 1), sc.ops.embedding(ids, w), sc.ops.concat([x, x], axis=0),
            sc.ops.iota(h, axis=1, dtype=h.dtype), sc.ops.moe_combine(y, order, sc.ops.cast(v, x.dtype)),
            sc.ops.conv2d(sc.ops.reshape(x, (1, 1, 3, 8)), sc.ops.reshape(w, (2, 1, 4, 4)), padding=1),
            sc.ops.scatter_add(h, sc.ops.reshape(ids, (3, 1)), sc.ops.slice(h, axis=1, start=0, stop=1), axis=1),
            sc.ops.index_add(w, ids, sc.ops.slice(w, axis=0, start=0, stop=3), axis=0), sc.ops.one_hot(ids, 4, dtype=h.dtype),
            sc.ops.sparse_input_linear(x, sc.ops.transpose(w, (1, 0)), threshold=0.1))

plans = []
for dt in ("float16", "bfloat16"):
    specs = [sc.TensorSpec(s, d) for s, d in [((3, 8), dt), ((4, 8), dt), ((4,), dt), ((8,), dt), ((3,), "int64"),
                                              ((3,), "int64"), ((3, 4), "float32"), ((4, 6, 8), dt), ((4, 8, 6), dt)]]
    g = PassManager.parse("fuse-elementwise").run(sc.trace(f, *specs))
    plans.append(lower_function(g, None, "cuda"))
with tempfile.TemporaryDirectory() as d:
    print(json.dumps([(r.name, r.ptxas, r.op) for r in emit_ptx(plans, d)]))
"""


def test_ptx_of_the_16_bit_kernels():
    from sparsec.runtime.cuda.ptx import find_ptxas
    results = run_ptx_script(PTX_SCRIPT)
    names = {n.rsplit("__", 1)[0] for n, _, _ in results}
    for hdt in ("f16", "bf16"):
        for part in (f"gemm_t16_float32_{hdt}", f"rms_norm_rows_{hdt}",
                     f"layer_norm_rows_float32_{hdt}", f"rope_elems_{hdt}", f"attention_float32_d32_{hdt}",
                     f"reduce_serial_ld_{hdt}_st_{hdt}", f"softmax_block_ld_{hdt}_st_{hdt}", f"argmax_block_ld_{hdt}",
                     f"topk_serial_ld_{hdt}_st_{hdt}", f"cumsum_cols_ld_{hdt}_st_{hdt}", f"iota_{hdt}",
                     f"moe_combine_float32_{hdt}", f"conv2d_float32_{hdt}", f"convert_ld_{hdt}",
                     f"convert_st_{hdt}", f"one_hot_st_{hdt}", f"sparse_input_linear_float32_{hdt}"):
            assert any(n.startswith(part) for n in names), (part, sorted(names))
        assert any(n.startswith("grouped_gemv") and n.endswith(hdt) for n in names), sorted(names)
        assert any(n.startswith("grouped_gemm") and n.endswith(hdt) for n in names), sorted(names)
    assert any(n.startswith("elementwise_") for n in names)
    for name, status, op in results:
        assert status == "ok" if find_ptxas() else status.startswith("skipped"), (name, op, status)
