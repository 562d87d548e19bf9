"""CUDA kernels on quantized weights (``sparsec/lower/cuda/quant.py``; the grouped cases in
``sparsec/lower/cuda/moe.py``; loaders in ``runtime/cuda/quant.py``) against the reference
interpreter, under numba's CUDA simulator (tiny shapes) or on a GPU:

* ``sc.linear``, ``sc.grouped_matmul``, ``sc.moe_gated_grouped_matmul`` for every format stay
  within the derived bound ``2 gamma_K sum_k |w x|`` (the weights are dequantized exactly as the
  reference does, so only the order of the f32 sums differs): K not a multiple of the block,
  0 / 1 / several rows (GEMV and tiled paths), experts without rows, a bias, gate and up in
  different formats, weights in the canonical ``blocks`` layout or the CPU's ``r16`` / ``r16i``;
* ``sc.embedding`` of a quantized table gives the reference's rows exactly; a bad id raises;
* the traced ``sc.nn.MoE`` layer compiled with ``target="cuda", quantize=q8_0 / q4_0``;
* PTX for sm_90 of the quantized kernels, assembled with ``ptxas`` (subprocess, no simulator).
"""
from sparsec.lower.cuda.testing import cuda_test_process

MODE = cuda_test_process()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_cpu_quant import quantized_graph as cpu_quantized_graph  # noqa: E402
from test_cpu_quant import random_offsets  # noqa: E402
from test_cuda_moe import launched_paths, run_gemv_variants, run_ptx_script, sum_order_bound  # noqa: E402

import sparsec as sc  # noqa: E402
from sparsec.frontend.tracer import Parameter  # noqa: E402
from sparsec.lower.cuda import LoweringError, lower_op  # noqa: E402
from sparsec.lower.cuda.testing import run_cuda  # noqa: E402
from sparsec.quant import FORMATS, layouts, quantize  # noqa: E402
from sparsec.runtime.executable import KernelError  # noqa: E402
from sparsec.runtime.cuda import moe as M  # noqa: E402

F32 = np.float32
LAYOUTS = ["blocks", "r16", "kernel"]  # "kernel": the CPU kernels' own (r16i; r16 for i8c)
FAST_FORMATS = ["q8_0", "q4_0", "i8c"]
SLOW = pytest.mark.slow


def formats_param():
    return [f if f in FAST_FORMATS else pytest.param(f, marks=SLOW) for f in FORMATS]


def quantized_graph(fn, specs, weights, layout, wdtype="float32"):
    """``test_cpu_quant.quantized_graph`` with float32 weights unless told (the embedding test
    traces over int64 ids)."""
    return cpu_quantized_graph(fn, specs, weights, layout, wdtype)


def check_bound(got, want, x, w):
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    err = np.abs(got.astype(np.float64) - want)
    bound = sum_order_bound(x, w, np.float32)
    assert np.all(err <= bound), float(np.max(err / bound))


@pytest.mark.parametrize("fmt", formats_param())
@settings(max_examples=4, deadline=None)
@given(m=st.sampled_from([0, 1, 3, 9]), n=st.integers(1, 6), k=st.integers(1, 140), bias=st.booleans(),
       layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 999))
def test_linear(fmt, m, n, k, bias, layout, seed):
    rng = np.random.default_rng(seed)
    qt = quantize(rng.standard_normal((n, k)).astype(F32), fmt)
    b = Parameter(rng.standard_normal(n).astype(F32))
    g = quantized_graph(lambda x, w: sc.ops.linear(x, w, b if bias else None), [(("tokens", k), "float32")], [qt],
                        layout)
    x = rng.standard_normal((m, k)).astype(F32)
    (got,) = run_cuda(g, x)
    (want,) = sc.interpret(g, x)
    # the bias is one more f32 add on each side: half an ulp of the result each
    w = np.asarray(qt)
    slack = 2.0 ** -23 * np.abs(want) if bias else 0
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= sum_order_bound(x, w, F32) + slack)


def test_linear_3d_activations_and_the_kernel_name(monkeypatch):
    rng = np.random.default_rng(3)
    qt = quantize(rng.standard_normal((5, 64)).astype(F32), "q4_0")
    g = quantized_graph(lambda x, w: sc.ops.linear(x, w), [((2, "s", 64), "float32")], [qt], "blocks")
    op = next(o for o in g.main.ops if o.name == "sc.linear")
    k = lower_op(op)
    assert k.name == "linear_q4_0" and any("gemv_words" in spec.name for spec in k.kernels)
    paths = launched_paths(monkeypatch)
    for s in (1, 3):   # 2 rows: the word GEMV; 6 rows: the tiled GEMM
        x = rng.standard_normal((2, s, 64)).astype(F32)
        (got,) = run_cuda(g, x)
        assert paths[-1] == ("gemv_words" if s == 1 else "gemm")
        (want,) = sc.interpret(g, x)
        check_bound(got.reshape(2 * s, 5), want.reshape(2 * s, 5), x.reshape(2 * s, 64), np.asarray(qt))


@pytest.mark.parametrize("fmt", formats_param())
@settings(max_examples=4, deadline=None)
@given(e=st.integers(1, 3), m=st.sampled_from([0, 1, 4, 13]), n=st.integers(1, 5), k=st.integers(1, 70),
       empty=st.booleans(), layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 999))
def test_grouped_matmul(fmt, e, m, n, k, empty, layout, seed):
    rng = np.random.default_rng(seed)
    qt = quantize(rng.standard_normal((e, n, k)).astype(F32), fmt)
    g = quantized_graph(lambda x, off, w: sc.ops.grouped_matmul(x, w, off),
                        [(("rows", k), "float32"), ((e + 1,), "int64")], [qt], layout)
    x = rng.standard_normal((m, k)).astype(F32)
    offsets = random_offsets(rng, e, m, empty)
    (got,) = run_cuda(g, x, offsets)
    (want,) = sc.interpret(g, x, offsets)
    w = np.asarray(qt)
    for i in range(e):
        lo, hi = offsets[i], offsets[i + 1]
        check_bound(got[lo:hi], want[lo:hi], x[lo:hi], w[i])


@pytest.mark.parametrize("fmts", [("q8_0", "q8_0"), ("q4_0", "q4_0"), ("i8c", "q4_0"),
                                  pytest.param(("int4g64", "int4"), marks=SLOW)], ids="-".join)
@pytest.mark.parametrize("act", ["silu", "gelu"])
@pytest.mark.parametrize("rows", [2, 11])   # the GEMV and the tiled GEMM
def test_gated_grouped_matmul(fmts, act, rows):
    rng = np.random.default_rng(rows)
    e, n, k = 3, 4, 70
    wg = quantize(rng.standard_normal((e, n, k)).astype(F32), fmts[0])
    wu = quantize(rng.standard_normal((e, n, k)).astype(F32), fmts[1])
    g = quantized_graph(lambda x, off, a, b: sc.ops.moe_gated_grouped_matmul(x, a, b, off, activation=act),
                        [(("rows", k), "float32"), ((e + 1,), "int64")], [wg, wu], "blocks")
    x = rng.standard_normal((rows, k)).astype(F32)
    offsets = np.array([0, 0, rows // 2, rows], np.int64)   # expert 0 without rows
    (got,) = run_cuda(g, x, offsets)
    (want,) = sc.interpret(g, x, offsets)
    # gate and up within the sum-order bound; through act(g) * u the error stays relative
    assert np.max(np.abs(got - want)) <= 1e-5 * max(1.0, float(np.max(np.abs(want))))


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "int4", pytest.param("int4g128", marks=SLOW)])
@pytest.mark.parametrize("gated", [False, True])
def test_word_gemv_for_whole_blocks(fmt, gated, monkeypatch):
    """K a whole number of blocks: the decode GEMV reads the packed weights as 32-bit words."""
    rng = np.random.default_rng(11)
    e, n, k = 3, 5, 128
    wg, wu = (quantize(rng.standard_normal((e, n, k)).astype(F32), fmt) for _ in range(2))
    if gated:
        g = quantized_graph(lambda x, off, a, b: sc.ops.moe_gated_grouped_matmul(x, a, b, off, activation="silu"),
                            [(("rows", k), "float32"), ((e + 1,), "int64")], [wg, wu], "r16")
    else:
        g = quantized_graph(lambda x, off, a: sc.ops.grouped_matmul(x, a, off),
                            [(("rows", k), "float32"), ((e + 1,), "int64")], [wg], "r16")
    op = next(o for o in g.main.ops if o.name.startswith("sc.") and "grouped" in o.name)
    assert any("gemv_words" in spec.name for spec in lower_op(op).kernels)
    x = rng.standard_normal((4, k)).astype(F32)
    offsets = np.array([0, 3, 3, 4], np.int64)      # 3 rows (two accumulator passes), none, 1
    paths = launched_paths(monkeypatch)
    (got,) = run_cuda(g, x, offsets)
    assert paths == ["gemv_words"]
    (want,) = sc.interpret(g, x, offsets)
    if gated:
        assert np.max(np.abs(got - want)) <= 1e-5 * max(1.0, float(np.max(np.abs(want))))
    else:
        w = np.asarray(wg)
        for i in range(e):
            lo, hi = offsets[i], offsets[i + 1]
            check_bound(got[lo:hi], want[lo:hi], x[lo:hi], w[i])


@pytest.mark.parametrize("geometry", [(8, 1, 2), (16, 2, 4), (8, 2, 1)])
def test_word_gemv_in_wide_geometries(geometry, monkeypatch):
    """The word GEMV with more threads per column and fewer columns per block (what
    ``gemv_geometry`` picks on a device for long rows), scaled to the simulator."""
    monkeypatch.setattr(M, "gemv_geometry", lambda *a, **kw: geometry)
    rng = np.random.default_rng(12)
    e, n, k = 2, 3, 256
    wg, wu = (quantize(rng.standard_normal((e, n, k)).astype(F32), "q8_0") for _ in range(2))
    g = quantized_graph(lambda x, off, a, b: sc.ops.moe_gated_grouped_matmul(x, a, b, off, activation="silu"),
                        [(("rows", k), "float32"), ((e + 1,), "int64")], [wg, wu], "r16")
    x = rng.standard_normal((3, k)).astype(F32)
    offsets = np.array([0, 2, 3], np.int64)
    paths = launched_paths(monkeypatch)
    (got,) = run_cuda(g, x, offsets)
    assert paths == ["gemv_words"]
    (want,) = sc.interpret(g, x, offsets)
    assert np.max(np.abs(got - want)) <= 1e-5 * max(1.0, float(np.max(np.abs(want))))


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "int4"])
@pytest.mark.parametrize("geometry", [None, (4, 2, 1), (8, 1, 2)])
def test_word_gemv_reads_16_bytes_where_the_weights_are_aligned(fmt, geometry, monkeypatch):
    """Blocks of a multiple of 4 words: the word GEMV loads 4 words (16 bytes) per thread and
    load (``_v4``) where the ``qs`` arrays are 16-byte aligned, else one word: same results."""
    if geometry is not None:
        monkeypatch.setattr(M, "gemv_geometry", lambda *a, **kw: geometry)
    rng = np.random.default_rng(13)
    e, n, k = 3, 4, 192
    wg, wu = (quantize(rng.standard_normal((e, n, k)).astype(F32), fmt) for _ in range(2))
    g = quantized_graph(lambda x, off, a, b: sc.ops.moe_gated_grouped_matmul(x, a, b, off, activation="silu"),
                        [(("rows", k), "float32"), ((e + 1,), "int64")], [wg, wu], "r16")
    x = rng.standard_normal((5, k)).astype(F32)
    offsets = np.array([0, 2, 2, 5], np.int64)
    (want,) = sc.interpret(g, x, offsets)
    for (got,) in run_gemv_variants(g, monkeypatch, x, offsets, kernel="gemv_words"):
        assert np.max(np.abs(got - want)) <= 1e-5 * max(1.0, float(np.max(np.abs(want))))


def test_linear_row_tiles_beyond_the_grid_limit(monkeypatch):
    import sparsec.lower.cuda.moe as rules
    monkeypatch.setattr(rules, "MAX_GRID_Y", 1)   # 65535 on a device: one block row strides over all
    rng = np.random.default_rng(8)
    qt = quantize(rng.standard_normal((6, 40)).astype(F32), "q8_0")
    b = Parameter(rng.standard_normal(6).astype(F32))
    g = quantized_graph(lambda x, w: sc.ops.linear(x, w, b), [(("tokens", 40), "float32")], [qt], "blocks")
    x = rng.standard_normal((11, 40)).astype(F32)
    (got,) = run_cuda(g, x)
    (want,) = sc.interpret(g, x)
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= sum_order_bound(x, np.asarray(qt), F32) + 2.0 ** -23 * np.abs(want))


def test_quantized_rows_must_be_f32_or_16_bit():
    qt = quantize(np.ones((4, 32), F32), "q8_0")   # (f16/bf16 rows: tests/test_cuda_half.py)
    g = quantized_graph(lambda x, w: sc.ops.linear(x, w), [((1, 32), "float64")], [qt], "blocks", "float64")
    with pytest.raises(LoweringError, match=r"sc.linear.*f32, f16 or bf16 activations.*f64"):
        lower_op(next(o for o in g.main.ops if o.name == "sc.linear"))


@pytest.mark.parametrize("fmt", formats_param())
def test_embedding_rows_are_exact(fmt):
    rng = np.random.default_rng(5)
    qt = quantize(rng.standard_normal((13, 70)).astype(F32), fmt)
    g = quantized_graph(lambda ids, t: sc.ops.embedding(ids, t), [((2, "n"), "int64")], [qt], "r16")
    ids = rng.integers(0, 13, (2, 3)).astype(np.int64)
    ids[0, 0], ids[1, 1] = 0, 12
    (got,) = run_cuda(g, ids)
    (want,) = sc.interpret(g, ids)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    with pytest.raises(KernelError, match="index 13 is out of range for an embedding table of 13 rows"):
        run_cuda(g, np.array([[1, 13], [0, 0]], np.int64))


@pytest.mark.parametrize("mode", ["q8_0", "q4_0"])
def test_compiled_moe_layer(mode):
    moe = sc.nn.MoE(32, 12, 4, 2, naming="mixtral", seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 32), "float32"))
    cm = sc.compile(g, target="cuda", quantize=mode, progress=False, accuracy_samples=0)
    # the artifact stores what the CUDA kernels read: the canonical block layout (the CPU repacks)
    qweights = {n: w for n, w in cm.graph.weights.items() if hasattr(w, "layout")}
    assert qweights and all(w.layout == "blocks" for w in qweights.values()), {n: w.layout for n, w in qweights.items()}
    assert "layout=blocks" in cm.pipeline
    cpu = sc.compile(sc.trace(moe, sc.TensorSpec(("tokens", 32), "float32")), quantize=mode, progress=False,
                     accuracy_samples=0)
    want_layout = layouts.preferred_layout(next(iter(qweights.values())).fmt)
    assert {w.layout for w in cpu.graph.weights.values() if hasattr(w, "layout")} == {want_layout}
    kernels = [s.kernel for s in cm.executables["main"].plan.steps]
    assert f"grouped_gated_{mode}" in kernels and f"grouped_{mode}" in kernels, kernels
    for t in (1, 3):
        x = np.random.default_rng(t).standard_normal((t, 32)).astype(F32)
        (want,) = sc.interpret(cm.graph, x)
        got = cm(x)
        got = got[0] if isinstance(got, tuple) else got
        assert np.max(np.abs(got - want)) <= 1e-5 * max(1.0, float(np.max(np.abs(want))))


def test_cli_compile_target_cuda_quantize_stores_blocks(tmp_path):
    """``sparsec compile --target cuda --quantize``: the .spc holds what the CUDA kernels read."""
    from click.testing import CliRunner

    from sparsec.cli import main
    from sparsec.fileio import weights_path_for, write_weights
    lm = sc.nn.CausalLM(vocab=32, hidden=32, layers=1, heads=2, kv_heads=1, ffn=64, seed=0)
    g = sc.trace(lm, sc.TensorSpec(("batch", "seq"), "int64"))
    path = tmp_path / "lm.mlir"
    path.write_text(str(g))
    write_weights(weights_path_for(str(path)), g.weights)
    spc = tmp_path / "lm.spc"
    r = CliRunner().invoke(main, ["compile", str(path), "-o", str(spc), "--target", "cuda", "--quantize", "q4_0",
                                  "--accuracy-samples", "0"])
    assert r.exit_code == 0, r.output
    cm = sc.load(str(spc))
    layouts_ = {w.layout for w in cm.graph.weights.values() if hasattr(w, "layout")}
    assert layouts_ == {"blocks"}, layouts_
    ids = np.array([[1, 2, 3]], np.int64)
    got = cm(ids)
    got = got[0] if isinstance(got, tuple) else got
    (want,) = sc.interpret(cm.graph, ids)
    assert np.max(np.abs(got - want)) <= 1e-4 * max(1.0, float(np.max(np.abs(want))))


PTX_SCRIPT = r"""
import json, sys, tempfile
import numpy as np
import sparsec as sc
from sparsec.lower.lowering import lower_function
from sparsec.runtime.cuda.ptx import emit_ptx
from sparsec.frontend.tracer import Parameter
from sparsec.ir.types import QuantType
from sparsec.quant import quantize

def quantized_graph(fn, specs, weights):
    params = [Parameter(np.zeros(qt.shape, np.float32)) for qt in weights]
    g = sc.trace(lambda *a: fn(*a, *params), *[sc.TensorSpec(s, d) for s, d in specs])
    ops = [o for o in g.main.ops if o.name == "sc.param"]
    for op, qt in zip(ops, weights):
        op.result.type = QuantType(qt.fmt, qt.shape)
        g.weights[op.attrs["name"]] = qt
    return g

plans = []
rng = np.random.default_rng(0)
for fmt in sys.argv[1].split(","):
    lin = quantize(rng.standard_normal((8, 64)).astype(np.float32), fmt)
    wg, wu = (quantize(rng.standard_normal((3, 8, 64)).astype(np.float32), fmt) for _ in range(2))
    g = quantized_graph(lambda x, off, ids, a, b, c: (sc.ops.moe_gated_grouped_matmul(x, a, b, off),
                                                      sc.ops.linear(x, c), sc.ops.embedding(ids, c)),
                        [(("rows", 64), "float32"), ((4,), "int64"), ((3,), "int32")], [wg, wu, lin])
    plans.append(lower_function(g, None, "cuda"))
with tempfile.TemporaryDirectory() as d:
    print(json.dumps([(r.name, r.ptxas, r.op, r.spill_bytes) for r in emit_ptx(plans, d)]))
"""


@pytest.mark.parametrize("fmts", [",".join(FAST_FORMATS),
                                  pytest.param(",".join(f for f in FORMATS if f not in FAST_FORMATS), marks=SLOW)])
def test_ptx_of_the_quantized_kernels(fmts):
    from sparsec.runtime.cuda.ptx import find_ptxas
    results = run_ptx_script(PTX_SCRIPT, fmts)
    ops = {op for _, _, op, _ in results}
    assert {"sc.linear", "sc.embedding", "sc.moe_gated_grouped_matmul"} <= ops, ops
    # linear and gated: the GEMV with 4 accumulators and with 1 (one row per expert; these shapes
    # are too small for wider GEMVs), for the word formats (whole 4-word groups per block) also
    # the 16-byte variants plus the scalar one for misaligned weights; the GEMM in each of its
    # row-tile heights; the embedding's dequantized rows
    fl = fmts.split(",")
    from sparsec.runtime.cuda import quant as CQ
    vec = [f for f in fl if CQ.FORMAT_KINDS[f][0] in CQ.WORD_KINDS and 64 % CQ.FORMAT_KINDS[f][1] == 0
           and CQ.words_per_block(*CQ.FORMAT_KINDS[f]) % 4 == 0]        # K = 64 in the script
    tiles = len(M.GEMM_ROW_TILES)
    assert len(results) == (5 + 2 * tiles) * len(fl) + 2 * len(vec)
    assert sum(name.startswith("grouped_gemm") for name, _, _, _ in results) == 2 * tiles * len(fl)
    assert sum("_32x4x1" in name for name, _, _, _ in results) == 2 * len(fl)
    assert sum(name.split("__")[0].endswith("_v4") for name, _, _, _ in results) == 4 * len(vec)
    for name, status, op, spilled in results:
        assert status == "ok" if find_ptxas() else status.startswith("skipped"), (name, op, status)
        assert not spilled, f"{name} ({op}) spills {spilled} bytes of registers to local memory (ptxas -v)"
