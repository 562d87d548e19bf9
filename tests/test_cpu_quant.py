"""Quantized CPU kernels (``sparsec/lower/cpu/quant.py``, ``runtime/cpu/quant.py``,
``runtime/cpu/llvm_quant.py``) for every format, op and instruction-set path:

* the ``r16`` and ``r16i`` layouts round-trip exactly;
* the activation quantization is exactly the NumPy formula (blocks of 32, ``rint``);
* the three paths (VNNI, AVX2, generic Numba) give bit-identical outputs, exact integer results
  on data where every float operation is exact, and agree with a NumPy evaluation of the
  kernels' formula (dequantized weights times the quantized activations) to f32 rounding;
* through the lowering (``run_naive``), ``sc.linear`` / ``sc.grouped_matmul`` /
  ``sc.moe_gated_grouped_matmul`` stay within the derived bound of the reference interpreter
  (dequantize, then compute in f32): ``sum_k |w_k| * dx_k / 2`` plus rounding, for K not a
  multiple of the block, N not a multiple of the 16-row group, 0 / 1 / many rows, experts
  without rows, f16 / bf16 activations, weights in the canonical ``blocks`` layout, in ``r16`` or
  in the kernels' own (``r16i``; ``r16`` for i8c),
  sizes that take the threads;
* ``sc.embedding`` of a quantized table gives the reference's rows exactly.
"""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsec as sc
from sparsec.frontend.tracer import Parameter
from sparsec.ir.types import QuantType
from sparsec.lower.cpu import LoweringError, lower_op, run_naive
from sparsec.quant import FORMATS, QuantizedTensor, layouts, quantize
from sparsec.quant.repack import LAYOUT, LAYOUT_INLINE, check_kernel_layout, check_r16, kernel_layout
from sparsec.runtime.cpu import linalg as L
from sparsec.runtime.cpu import quant as Q

RUNNABLE = Q.runnable_isas()
ISAS = [pytest.param(isa, marks=pytest.mark.skipif(isa not in RUNNABLE, reason=f"this CPU has no {isa}"))
        for isa in ("vnni", "avx2", "generic")]
ACTS = {"silu": L.ACT_SILU, "gelu": L.ACT_GELU, "gelu_tanh": L.ACT_GELU_TANH, "relu": L.ACT_RELU}
F32 = np.float32


# ---------------------------------------------------------------------------------------------
# NumPy references

def ref_quantize_x(x: np.ndarray, nsub: int):
    """The activation quantization in NumPy: (q int8 [M, nsub*32], dx f32 [M, nsub])."""
    m, k = x.shape
    xp = np.zeros((m, nsub * 32), F32)
    xp[:, :k] = x
    b = xp.reshape(m, nsub, 32)
    d = (np.abs(b).max(-1) / F32(127)).astype(F32)
    with np.errstate(all="ignore"):
        q = np.where(d[..., None] > 0, np.rint(b / d[..., None]), 0)
    return np.clip(q, -127, 127).astype(np.int8).reshape(m, nsub * 32), d


def dequantized_x(x: np.ndarray, nsub: int) -> tuple[np.ndarray, np.ndarray]:
    """(x_hat f64 [M, K], dx per element f64 [M, K])."""
    q, d = ref_quantize_x(x, nsub)
    k = x.shape[1]
    xh = (q.reshape(x.shape[0], nsub, 32) * d[..., None].astype(np.float64)).reshape(x.shape[0], nsub * 32)[:, :k]
    return xh, np.repeat(d.astype(np.float64), 32, axis=-1)[:, :k]


def nsub_of(qt) -> int:
    g = 128 if qt.fmt == "int4g128" else 64 if qt.fmt == "int4g64" else 32
    return -(-qt.shape[-1] // g) * g // 32


def magnitude(qt) -> np.ndarray:
    """Per element, the size of the weight's terms in the kernel's sums (|d q| + |m| for int4)."""
    canon = layouts.to_blocks(qt)
    if not qt.fmt.startswith("int4"):
        return np.abs(np.asarray(qt)).astype(np.float64)
    p = canon.parts
    g = 128 if qt.fmt == "int4g128" else 64 if qt.fmt == "int4g64" else 32
    k = qt.shape[-1]
    d = np.repeat(np.abs(p["d"].astype(np.float64)), g, -1)[..., :k]
    m = np.repeat(np.abs(p["m"].astype(np.float64)), g, -1)[..., :k]
    return 15 * d + m


def ref_formula(x: np.ndarray, qt) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's formula in f64 (y = w_dequantized @ x_hat) and its f32 rounding tolerance."""
    nsub = nsub_of(qt)
    xh, _ = dequantized_x(x, nsub)
    w = np.asarray(qt).astype(np.float64)
    terms = np.abs(xh) @ magnitude(qt).T
    # the kernel rounds once per sub-block product, per block sum / scale / accumulation
    return xh @ w.T, (nsub + 16) * 2.0 ** -23 * terms + 1e-30


def interpreter_bound(x: np.ndarray, w: np.ndarray, nsub: int) -> np.ndarray:
    """The module docstring's bound on |kernel - reference| (x f32 rows, w the dequantized weight)."""
    _, dx = dequantized_x(x.astype(F32), nsub)
    aw = np.abs(w.astype(np.float64))
    k = x.shape[1]
    return (dx / 2) @ aw.T * (1 + 2.0 ** -10) + 2.0 ** -22 * (k + 64) * (np.abs(x.astype(np.float64)) @ aw.T) + 1e-30


def run_path(isa, fn_name, x, qt, *rest):
    """Call the runtime kernel of ``isa`` directly; returns out [M, N] (f32)."""
    p = Q.prepare(qt)
    fn = Q.kernel_address(qt.fmt, isa)
    out = np.full((x.shape[0], p.N), np.nan, F32)
    if fn_name == "linear":
        Q.linear(fn, x, p, rest[0] if rest else None, out)
    else:
        offsets, act, qt2 = rest
        assert Q.qmatmul(fn, x, p, None if qt2 is None else Q.prepare(qt2), offsets, None, act, out)
    return out


# ---------------------------------------------------------------------------------------------
# layout and activation quantization

@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=10, deadline=None)
@given(lead=st.sampled_from([(), (1,), (3,)]), n=st.integers(1, 40), k=st.integers(1, 300), seed=st.integers(0, 99))
def test_r16_layout_round_trip(fmt, lead, n, k, seed):
    w = np.random.default_rng(seed).standard_normal(lead + (n, k)).astype(F32)
    qt = quantize(w, fmt)
    assert layouts.preferred_layout(fmt) == kernel_layout(fmt) == (LAYOUT if fmt == "i8c" else LAYOUT_INLINE)
    for layout, check in ((LAYOUT, check_r16), (kernel_layout(fmt), check_kernel_layout)):
        r = layouts.repack(qt, layout)
        assert r.layout == layout
        check(fmt, qt.shape, r.parts)
        back = layouts.to_blocks(r)
        for name, part in qt.parts.items():
            assert np.array_equal(back.parts[name], part), name
        assert np.array_equal(np.asarray(r), np.asarray(qt))
        if layout == LAYOUT_INLINE:  # the same bytes as r16, each block's scales moved inline
            r16 = layouts.repack(qt, LAYOUT).parts
            assert sorted(np.concatenate([v.reshape(-1).view(np.uint8) for v in r16.values()])) == \
                sorted(r.parts["data"].reshape(-1))


@settings(max_examples=25, deadline=None)
@given(m=st.integers(0, 5), k=st.integers(1, 130), scale=st.sampled_from([1e-30, 1e-3, 1.0, 1e4]),
       zeros=st.booleans(), seed=st.integers(0, 99))
def test_activation_quantization_is_the_numpy_formula(m, k, scale, zeros, seed):
    x = (np.random.default_rng(seed).standard_normal((m, k)) * scale).astype(F32)
    if zeros and k > 40:
        x[:, :32] = 0  # an all-zero block: dx = 0, q = 0
    nsub = -(-k // 32)
    xq, xd, xc, xm = Q.quantize_activations(x, "q8_0", nsub)
    q, d = ref_quantize_x(x, nsub)
    assert np.array_equal(xq, q) and np.array_equal(xd, d)
    assert np.array_equal(xc, -128 * q.reshape(m, nsub, 32).astype(np.int32).sum(-1))
    _, _, xc4, _ = Q.quantize_activations(x, "q4_0", nsub)
    assert np.array_equal(xc4, -8 * q.reshape(m, nsub, 32).astype(np.int32).sum(-1))
    if nsub % 2 == 0:  # int4g64: per weight block, sum over its 2 sub-blocks of dx * sum(q)
        _, _, _, xm = Q.quantize_activations(x, "int4g64", nsub)
        s = q.reshape(m, nsub, 32).astype(np.int32).sum(-1).astype(F32) * d
        assert np.array_equal(xm, (F32(0) + s[:, 0::2]) + s[:, 1::2])


def test_non_finite_activations_give_nan_rows():
    qt = quantize(np.random.default_rng(0).standard_normal((20, 64)).astype(F32), "q8_0")
    x = np.ones((3, 64), F32)
    x[1, 40] = np.inf
    x[2, 3] = np.nan
    for isa in RUNNABLE:
        y = run_path(isa, "linear", x, qt)
        assert np.isfinite(y[0]).all() and np.isnan(y[1]).all() and np.isnan(y[2]).all()


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan, F32(np.finfo(F32).max)])
def test_activation_blocks_with_non_finite_values_quantize_to_nan_scales(bad):
    """The block holding an inf or NaN gets a NaN scale and zero integers; its neighbours
    quantize as usual (the largest finite float is an ordinary block: scale max/127)."""
    x = np.random.default_rng(1).standard_normal((2, 96)).astype(F32)
    x[1, 40] = bad
    xq, xd, xc, _ = Q.quantize_activations(x, "q8_0", 3)
    ok, _, _, _ = Q.quantize_activations(x[:1], "q8_0", 3)
    assert np.array_equal(xq[:1], ok) and np.isfinite(xd[0]).all()
    if np.isfinite(bad):
        assert xd[1, 1] == F32(np.finfo(F32).max) / F32(127) and np.abs(xq[1, 32:64]).max() == 127
    else:
        assert np.isnan(xd[1, 1]) and not xq[1, 32:64].any() and xc[1, 1] == 0
    assert np.isfinite(xd[1, [0, 2]]).all() and xq[1, :32].any() and xq[1, 64:].any()


# ---------------------------------------------------------------------------------------------
# the paths against each other and against the formula

@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=12, deadline=None)
@given(m=st.sampled_from([0, 1, 2, 5, 9]), n=st.integers(1, 40), k=st.integers(1, 200), seed=st.integers(0, 999))
def test_paths_are_bit_identical_and_match_the_formula(fmt, m, n, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(F32)
    qt = quantize(rng.standard_normal((n, k)).astype(F32), fmt)
    outs = {isa: run_path(isa, "linear", x, qt) for isa in RUNNABLE}
    first = outs[RUNNABLE[0]]
    for isa, y in outs.items():
        assert np.array_equal(y, first), f"{isa} differs from {RUNNABLE[0]}"
    want, tol = ref_formula(x, qt)
    assert np.all(np.abs(first - want) <= tol), np.max(np.abs(first - want) / tol)


@pytest.mark.parametrize("fmt", FORMATS)
def test_threads_and_parallel_quantization(fmt):
    """Sizes past the serial thresholds: the activations are quantized on threads
    (M * K >= PARALLEL_QUANT) and the items are split between threads; still bit-identical."""
    rng = np.random.default_rng(11)
    m, n, k = 66, 40, 1000
    assert m * k >= Q.PARALLEL_QUANT
    x = rng.standard_normal((m, k)).astype(F32)
    qt = quantize(rng.standard_normal((3, n, k)).astype(F32), fmt)
    offsets = np.array([0, 30, 30, m], np.int64)
    outs = {isa: run_path(isa, "grouped", x, qt, offsets, L.ACT_NONE, None) for isa in RUNNABLE}
    first = outs[RUNNABLE[0]]
    for isa, y in outs.items():
        assert np.array_equal(y, first), isa
    for e in (0, 2):
        lo, hi = offsets[e], offsets[e + 1]
        sub = QuantizedTensor(qt.fmt, qt.shape[1:], {kk: v[e] for kk, v in qt.parts.items()})
        want, tol = ref_formula(x[lo:hi], sub)
        assert np.all(np.abs(first[lo:hi] - want) <= tol)
    xq, xd, _, _ = Q.quantize_activations(x, fmt, nsub_of(qt))
    q, d = ref_quantize_x(x, nsub_of(qt))
    assert np.array_equal(xq, q) and np.array_equal(xd, d)


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "int4"])
@settings(max_examples=8, deadline=None)
@given(m=st.integers(0, 6), act=st.sampled_from([L.ACT_NONE, L.ACT_SILU]), strided=st.booleans(),
       seed=st.integers(0, 999))
def test_fixed_call_is_qmatmul(fmt, m, act, strided, seed):
    """``Q.fixed_call`` (what a prebound quantized step calls: the compiled entry point with every
    array and a carved scratch bound) gives ``Q.qmatmul``'s bits: grouped rows, a gated pair, a
    scratch reused across calls, and -1 for malformed offsets. No rows, or a non-contiguous
    ``x`` (which the C-layout entry must not see), give None: the step keeps its per-call path."""
    rng = np.random.default_rng(seed)
    k, n = 96, 40
    wide = rng.standard_normal((m, 2 * k)).astype(F32)
    x = wide[:, ::2] if strided else np.ascontiguousarray(wide[:, :k])
    w, w2 = (Q.prepare(quantize(rng.standard_normal((3, n, k)).astype(F32), fmt)) for _ in range(2))
    cut = sorted(rng.integers(0, m + 1, 2).tolist())
    offsets = np.array([0, *cut, m], np.int64)
    v = w2 if act != L.ACT_NONE else w
    fn = Q.kernel_address(fmt, Q.current_isa())
    want, got = np.full((m, n), np.nan, F32), np.full((m, n), np.nan, F32)
    assert Q.qmatmul(fn, np.ascontiguousarray(x), w, v, offsets, None, act, want)
    fixed = Q.fixed_call(fn, w, v, x, offsets, Q._NO_BIAS, act, got)
    bad = np.array([0, m + 1, m + 1, m + 1], np.int64)
    if m == 0 or strided:  # not bindable: the caller keeps the per-call path
        assert fixed is None and Q.fixed_call(fn, w, v, x, bad, Q._NO_BIAS, act, got) is None
        return
    assert fixed() == 0 and np.array_equal(got, want)
    got[...] = np.nan
    assert fixed() == 0 and np.array_equal(got, want)  # its scratch is reused
    assert Q.fixed_call(fn, w, v, x, bad, Q._NO_BIAS, act, got)() == -1


def exact_weight(rng, fmt, n, k) -> QuantizedTensor:
    """Integer weights whose quantization is exact: every block holds both ends of the format's
    range, so d = 1 (and m = -8 for int4)."""
    lo, hi = (-127, 127) if fmt in ("q8_0", "i8c") else (-8, 7)
    w = rng.integers(lo, hi + 1, (n, k)).astype(F32)
    g = 32 if fmt not in ("int4g64", "int4g128") else int(fmt[6:])
    if fmt == "i8c":
        w[:, 0], w[:, -1] = lo, hi
    else:
        for b in range(0, k, g):
            w[:, b] = lo
            if fmt != "q4_0" and b + 1 < k:  # q4_0: d from the extreme -8 alone
                w[:, b + 1] = hi
    qt = quantize(w, fmt)
    assert np.array_equal(np.asarray(qt), w)
    return qt


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_exact_integer_products(isa, fmt):
    """Where every float operation is exact, the output is the exact integer product: the int8
    sums (with the 4-bit unpacking and the +128 / -8 corrections) are exact on every path."""
    rng = np.random.default_rng(7)
    for m, n, k in [(1, 37, 96), (6, 16, 64), (3, 5, 256)]:
        qt = exact_weight(rng, fmt, n, k)
        x = rng.integers(-127, 128, (m, k)).astype(F32)
        x[:, ::32] = 127  # every activation block has dx = 1
        got = run_path(isa, "linear", x, qt)
        want = x.astype(np.int64) @ np.asarray(qt).astype(np.int64).T
        assert np.array_equal(got, want.astype(F32))


@pytest.mark.parametrize("isa", ISAS)
def test_assembly_uses_the_instruction_set(isa):
    if isa == "generic":
        assert Q.kernel_address("q8_0", isa) == 0
        return
    from sparsec.runtime.cpu.llvm_quant import quant_kernels
    for fmt in ("q8_0", "q4_0"):  # (one format per build: the builds the other tests use)
        asm = quant_kernels(isa, (fmt,)).assembly
        if isa == "vnni":
            assert "vpdpbusd" in asm and "zmm" in asm
        else:
            assert "vpmaddubsw" in asm and "vpdpbusd" not in asm and "zmm" not in asm


# ---------------------------------------------------------------------------------------------
# through the lowering, against the reference interpreter

def quantized_graph(fn, specs, weights, layout, wdtype=None):
    """Trace ``fn`` over float Parameters of the weights' shapes (of the first input's dtype, or
    ``wdtype``), then make those params the quantized weights (in ``layout``)."""
    wdtype = wdtype or specs[0][1]
    params = [Parameter(np.zeros(qt.shape, ml_dtypes.bfloat16 if wdtype == "bfloat16" else wdtype))
              for qt in weights]
    g = sc.trace(lambda *a: fn(*a, *params), *[sc.TensorSpec(s, d) for s, d in specs])
    ops = [o for o in g.main.ops if o.name == "sc.param"]
    ops = [o for o in ops if tuple(o.result.type.shape) in [qt.shape for qt in weights]]
    assert len(ops) == len(weights)
    for op, qt in zip(ops, weights):
        op.result.type = QuantType(qt.fmt, qt.shape)
        g.weights[op.attrs["name"]] = layouts.repack(qt, kernel_layout(qt.fmt) if layout == "kernel" else layout)
    return g


def run_graph(g, inputs, isa, op_name):
    with Q.use_isa(isa):
        got = run_naive(g, *inputs)
    assert op_name in run_naive.last_kernels
    with np.errstate(all="ignore"):
        want = sc.interpret(g, *inputs)
    return got, want


def check_within_bound(got, want, x, w, nsub, half=False):
    assert got.dtype == want.dtype and got.shape == want.shape
    bound = interpreter_bound(x.astype(F32), w, nsub)
    if half:  # both sides round their f32 result to f16 / bf16 once (two half ulps, relative)
        eps = 2.0 ** -7 if want.dtype == ml_dtypes.bfloat16 else 2.0 ** -10
        bound = bound + eps * np.abs(want.astype(np.float64)) + 2.0 ** -24
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert np.all(err <= bound), float(np.max(err / bound))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=6, deadline=None)
@given(m=st.sampled_from([0, 1, 3, 17]), n=st.integers(1, 50), k=st.integers(1, 160), bias=st.booleans(),
       dtype=st.sampled_from(["float32", "float16", "bfloat16"]), layout=st.sampled_from(["blocks", LAYOUT, "kernel"]),
       seed=st.integers(0, 999))
def test_linear(isa, fmt, m, n, k, bias, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    dt = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    qt = quantize(rng.standard_normal((n, k)).astype(F32), fmt)
    b = Parameter(rng.standard_normal(n).astype(dt))
    g = quantized_graph(lambda x, w: sc.ops.linear(x, w, b if bias else None), [(("tokens", k), dtype)], [qt],
                        layout)
    x = rng.standard_normal((m, k)).astype(dt)
    (got,), (want,) = run_graph(g, [x], isa, "sc.linear")
    # (a bias enters both sides exactly: f32 adds of the same values)
    check_within_bound(got, want, x, np.asarray(qt), nsub_of(qt), half=dtype != "float32")


def random_offsets(rng, e, m, empty):
    cuts = np.sort(rng.integers(0, m + 1, e - 1))
    offsets = np.concatenate([[0], cuts, [m]]).astype(np.int64)
    if empty and e > 2:  # expert 1 without rows
        offsets[2] = offsets[1]
        offsets[2:] = np.maximum.accumulate(offsets[2:])
    return offsets


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=5, deadline=None)
@given(e=st.integers(1, 5), m=st.sampled_from([0, 1, 4, 23]), n=st.integers(1, 40), k=st.integers(1, 140),
       empty=st.booleans(), layout=st.sampled_from(["blocks", LAYOUT, "kernel"]), seed=st.integers(0, 999))
def test_grouped_matmul(isa, fmt, e, m, n, k, empty, layout, seed):
    rng = np.random.default_rng(seed)
    qt = quantize(rng.standard_normal((e, n, k)).astype(F32), fmt)
    g = quantized_graph(lambda x, off, w: sc.ops.grouped_matmul(x, w, off),
                        [(("rows", k), "float32"), ((e + 1,), "int64")], [qt], layout)
    x = rng.standard_normal((m, k)).astype(F32)
    offsets = random_offsets(rng, e, m, empty)
    (got,), (want,) = run_graph(g, [x, offsets], isa, "sc.grouped_matmul")
    w = np.asarray(qt)
    for i in range(e):
        lo, hi = offsets[i], offsets[i + 1]
        check_within_bound(got[lo:hi], want[lo:hi], x[lo:hi], w[i], nsub_of(qt))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=4, deadline=None)
@given(e=st.integers(1, 4), m=st.sampled_from([0, 1, 6, 21]), n=st.integers(1, 40), k=st.integers(1, 100),
       act=st.sampled_from(sorted(ACTS)), dtype=st.sampled_from(["float32", "float16"]), seed=st.integers(0, 999))
def test_gated_grouped_matmul(isa, fmt, e, m, n, k, act, dtype, seed):
    rng = np.random.default_rng(seed)
    wg = quantize(rng.standard_normal((e, n, k)).astype(F32), fmt)
    wu = quantize(rng.standard_normal((e, n, k)).astype(F32), fmt)
    g = quantized_graph(lambda x, off, a, b: sc.ops.moe_gated_grouped_matmul(x, a, b, off, activation=act),
                        [(("rows", k), dtype), ((e + 1,), "int64")], [wg, wu], "kernel")
    x = rng.standard_normal((m, k)).astype(dtype)
    offsets = random_offsets(rng, e, m, True)
    (got,), (want,) = run_graph(g, [x, offsets], isa, "sc.moe_gated_grouped_matmul")
    from sparsec.ops.elementwise import UNARY
    xs = x.astype(F32)
    gate, up, eg, eu = (np.zeros((m, n)) for _ in range(4))
    for i in range(e):
        lo, hi = offsets[i], offsets[i + 1]
        if hi > lo:
            gate[lo:hi] = xs[lo:hi].astype(np.float64) @ np.asarray(wg)[i].astype(np.float64).T
            up[lo:hi] = xs[lo:hi].astype(np.float64) @ np.asarray(wu)[i].astype(np.float64).T
            eg[lo:hi] = interpreter_bound(xs[lo:hi], np.asarray(wg)[i], nsub_of(wg))
            eu[lo:hi] = interpreter_bound(xs[lo:hi], np.asarray(wu)[i], nsub_of(wu))
    # |act(g') u' - act(g) u| <= L |g' - g| |u'| + |act(g)| |u' - u|, with L = 1.2 >= |act'| for
    # these activations, |g' - g| <= eg and |u' - u| <= eu (the linear bound), plus the epilogue's rounding
    act_g = np.abs(UNARY[act].reference(gate.astype(F32)).astype(np.float64))
    bound = 1.2 * eg * (np.abs(up) + eu) + (act_g + 1.2 * eg) * eu + 2.0 ** -20 * act_g * np.abs(up) + 1e-30
    if dtype == "float16":
        bound = bound + 2.0 ** -10 * np.abs(want.astype(np.float64)) + 2.0 ** -24
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    assert np.all(err <= bound), float(np.max(err / bound))


def test_gated_with_gate_and_up_in_different_formats():
    rng = np.random.default_rng(3)
    wg = quantize(rng.standard_normal((3, 20, 70)).astype(F32), "q8_0")
    wu = quantize(rng.standard_normal((3, 20, 70)).astype(F32), "q4_0")
    g = quantized_graph(lambda x, off, a, b: sc.ops.moe_gated_grouped_matmul(x, a, b, off),
                        [(("rows", 70), "float32"), ((4,), "int64")], [wg, wu], "kernel")
    x = rng.standard_normal((9, 70)).astype(F32)
    offsets = np.array([0, 4, 4, 9], np.int64)
    (got,), (want,) = run_graph(g, [x, offsets], RUNNABLE[0], "sc.moe_gated_grouped_matmul")
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
    # the same as the two grouped matmuls and the activation
    gate = np.empty((9, 20), F32)
    up = np.empty((9, 20), F32)
    fn = Q.kernel_address
    assert Q.qmatmul(fn("q8_0", RUNNABLE[0]), x, Q.prepare(wg), None, offsets, None, L.ACT_NONE, gate)
    assert Q.qmatmul(fn("q4_0", RUNNABLE[0]), x, Q.prepare(wu), None, offsets, None, L.ACT_NONE, up)
    L.gated_epilogue(gate, up, L.ACT_SILU)
    assert np.array_equal(got, gate)


def test_bad_offsets_are_refused():
    qt = quantize(np.ones((2, 16, 32), F32), "q8_0")
    g = quantized_graph(lambda x, off, w: sc.ops.grouped_matmul(x, w, off),
                        [(("rows", 32), "float32"), ((3,), "int64")], [qt], "kernel")
    with pytest.raises(ValueError, match="offsets must rise from 0 to 4"):
        run_naive(g, np.ones((4, 32), F32), np.array([0, 3, 2], np.int64))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layout", ["blocks", LAYOUT, "kernel"])
def test_embedding_rows_are_exact(fmt, layout):
    rng = np.random.default_rng(5)
    qt = quantize(rng.standard_normal((37, 70)).astype(F32), fmt)
    g = quantized_graph(lambda ids, t: sc.ops.embedding(ids, t), [((2, "n"), "int64")], [qt], layout, "float32")
    ids = rng.integers(0, 37, (2, 9)).astype(np.int64)
    ids[0, 0], ids[1, 1] = 0, 36
    (got,) = run_naive(g, ids)
    assert "sc.embedding" in run_naive.last_kernels
    (want,) = sc.interpret(g, ids)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    with pytest.raises(IndexError, match="index 37 is out of range"):
        run_naive(g, np.array([[1, 37], [0, 0]], np.int64))


# ---------------------------------------------------------------------------------------------
# choosing the path

def test_path_is_chosen_at_lowering_and_can_be_forced(monkeypatch):
    qt = quantize(np.ones((16, 32), F32), "q4_0")
    g = quantized_graph(lambda x, w: sc.ops.linear(x, w), [(("tokens", 32), "float32")], [qt], "kernel")
    op = next(o for o in g.main.ops if o.name == "sc.linear")
    monkeypatch.delenv("SPARSEC_QUANT_ISA", raising=False)
    k = lower_op(op)
    assert k.name == f"linear_q4_0_{Q.host_isa()}" and k.info["isa"] == Q.host_isa()
    monkeypatch.setenv("SPARSEC_QUANT_ISA", "generic")
    k = lower_op(op)
    assert k.name == "linear_q4_0_generic" and k.impl == "numba"
    monkeypatch.setenv("SPARSEC_QUANT_ISA", "sse9")
    with pytest.raises(LoweringError, match="SPARSEC_QUANT_ISA='sse9'"):
        lower_op(op)
    with Q.use_isa(RUNNABLE[0]):  # set_isa / use_isa (code) win over the environment
        assert lower_op(op).name == f"linear_q4_0_{RUNNABLE[0]}"
    monkeypatch.delenv("SPARSEC_QUANT_ISA")
    with Q.use_isa("generic"):
        assert lower_op(op).name == "linear_q4_0_generic"
    assert lower_op(op).name.endswith(Q.host_isa())


def test_a_weight_of_the_wrong_format_is_refused():
    qt = quantize(np.ones((16, 32), F32), "q4_0")
    g = quantized_graph(lambda x, w: sc.ops.linear(x, w), [(("tokens", 32), "float32")], [qt], "kernel")
    name = next(o.attrs["name"] for o in g.main.ops if o.name == "sc.param")
    g.weights[name] = quantize(np.ones((16, 32), F32), "q8_0")
    with pytest.raises(ValueError, match="the weight is q8_0"):
        run_naive(g, np.ones((1, 32), F32))


# ---------------------------------------------------------------------------------------------
# a compiled MoE layer

@pytest.mark.parametrize("mode", ["q8_0", "q4_0", "int8", "int4"])
def test_compiled_moe_layer(mode):
    moe = sc.nn.MoE(64, 96, 8, 2, naming="mixtral", seed=0)
    g = sc.trace(moe, sc.TensorSpec(("tokens", 64), "float32"))
    cm = sc.compile(g, quantize=mode, progress=False, accuracy_samples=0)
    kernels = {s.kernel for s in cm.executables["main"].plan.steps}
    fmt = {"int8": "i8c", "int4": "int4"}.get(mode, mode)
    isa = Q.current_isa()
    assert f"grouped_gated_{fmt}_{isa}" in kernels and f"grouped_{fmt}_{isa}" in kernels
    for t in (1, 5, 40):
        x = np.random.default_rng(t).standard_normal((t, 64)).astype(F32)
        (want,) = sc.interpret(cm.graph, x)
        got = cm(x)
        # the activation quantization error: about 1/254 of the inputs' block maxima, relative
        assert np.linalg.norm(got - want) <= 0.02 * np.linalg.norm(want)


# ---------------------------------------------------------------------------------------------
# thorough variants

@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=150, deadline=None)
@given(m=st.integers(0, 40), n=st.integers(1, 150), k=st.integers(1, 700), seed=st.integers(0, 10**6))
def test_paths_thorough(fmt, m, n, k, seed):
    test_paths_are_bit_identical_and_match_the_formula.hypothesis.inner_test(fmt, m, n, k, seed)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=60, deadline=None)
@given(e=st.integers(1, 9), m=st.integers(0, 70), n=st.integers(1, 90), k=st.integers(1, 400),
       empty=st.booleans(), layout=st.sampled_from(["blocks", LAYOUT, "kernel"]), seed=st.integers(0, 10**6))
def test_grouped_thorough(fmt, e, m, n, k, empty, layout, seed):
    for isa in RUNNABLE:
        test_grouped_matmul.hypothesis.inner_test(isa, fmt, e, m, n, k, empty, layout, seed)


def test_fixed_call_reads_the_thread_count_per_call():
    """A bound call reads ``numba.set_num_threads`` at each call (the kernel asks the threading
    layer itself): one and all threads give ``Q.qmatmul``'s bits, on a product big enough to split."""
    import numba
    rng = np.random.default_rng(3)
    w = Q.prepare(quantize(rng.standard_normal((2, 512, 1024)).astype(F32), "q4_0"))
    x = rng.standard_normal((3, 1024)).astype(F32)
    offsets = np.array([0, 2, 3], np.int64)
    fn = Q.kernel_address("q4_0", Q.current_isa())
    want, got = np.empty((3, 512), F32), np.empty((3, 512), F32)
    assert Q.qmatmul(fn, x, w, None, offsets, None, L.ACT_NONE, want)
    call = Q.fixed_call(fn, w, w, x, offsets, Q._NO_BIAS, L.ACT_NONE, got)
    before = numba.get_num_threads()
    try:
        for t in sorted({1, before}):
            numba.set_num_threads(t)
            got[...] = np.nan
            assert call() == 0 and np.array_equal(got, want)
    finally:
        numba.set_num_threads(before)
