"""sc.rms_norm, sc.layer_norm, sc.rope and sc.attention: references against independent NumPy
formulas, shape rules, traced API, and (when torch is installed) against torch."""
import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sparsec as sc
from sparsec.ir import get_opdef


def ref(name, *arrays, **attrs):
    opdef = get_opdef(name)
    attrs = opdef.normalize_attrs(attrs)
    out = opdef.run_reference(list(arrays), attrs)
    return out[0]


def rng_arrays(seed, *shapes, dtype=np.float32):
    r = np.random.default_rng(seed)
    return [r.standard_normal(s).astype(dtype) for s in shapes]


# ---------------------------------------------------------------------------------------------
# independent formulas (float64, written the way the papers / HF code state them)

def rms_norm_f64(x, w, eps):
    x = x.astype(np.float64)
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w.astype(np.float64)


def layer_norm_f64(x, w, b, eps):
    x = x.astype(np.float64)
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def rope_rotate_half_f64(x, pos, theta, rotary_dim=0):
    """HF Llama apply_rotary_pos_emb: x*cos + rotate_half(x)*sin with emb = cat(freqs, freqs);
    partial rotary (GPT-NeoX rotary_pct) rotates x[..., :r] and passes the rest."""
    r = rotary_dim or x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, r, 2) / r)
    p = pos.astype(np.float64)
    if p.ndim == 2:
        p = p[:, None, :]                          # [B, 1, S] against x [B, H, S, D]
    freqs = p[..., None] * inv
    emb = np.concatenate([freqs, freqs], axis=-1)
    xr, xp = x[..., :r].astype(np.float64), x[..., r:].astype(np.float64)
    rot = xr * np.cos(emb) + rotate_half(xr) * np.sin(emb)
    return np.concatenate([rot, xp], axis=-1)


def rope_complex_f64(x, pos, theta, rotary_dim=0):
    """GPT-J / Meta Llama: pairs (x[2i], x[2i+1]) as complex numbers times exp(i*pos*freq_i)."""
    r = rotary_dim or x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, r, 2) / r)
    p = pos.astype(np.float64)
    if p.ndim == 2:
        p = p[:, None, :]
    z = x[..., 0:r:2].astype(np.float64) + 1j * x[..., 1:r:2].astype(np.float64)
    z = z * np.exp(1j * p[..., None] * inv)
    out = x.astype(np.float64).copy()
    out[..., 0:r:2], out[..., 1:r:2] = z.real, z.imag
    return out


def attention_loops(q, k, v, mask=None, causal=False, scale=None):
    """One query at a time, one kv head per query head group, plain Python softmax."""
    B, Hq, S, D = q.shape
    Hkv, L, Dv = k.shape[1], k.shape[2], v.shape[3]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    full_mask = None if mask is None else np.broadcast_to(mask, (B, Hq, S, L))
    out = np.zeros((B, Hq, S, Dv))
    for b in range(B):
        for h in range(Hq):
            kv = h // (Hq // Hkv)
            for i in range(S):
                scores, keep = [], []
                for j in range(L):
                    s = float(np.dot(q[b, h, i].astype(np.float64), k[b, kv, j].astype(np.float64))) * scale
                    ok = not causal or j <= i + (L - S)
                    if full_mask is not None:
                        m = full_mask[b, h, i, j]
                        if full_mask.dtype == np.bool_:
                            ok = ok and bool(m)
                        else:
                            s += float(m)
                    if ok:
                        scores.append(s)
                        keep.append(j)
                if not keep:
                    continue
                mx = max(scores)
                w = [math.exp(s - mx) for s in scores]
                tot = sum(w)
                for wj, j in zip(w, keep):
                    out[b, h, i] += wj / tot * v[b, kv, j].astype(np.float64)
    return out


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


# ---------------------------------------------------------------------------------------------
# rms_norm / layer_norm

@given(st.integers(0, 2 ** 31), st.lists(st.integers(1, 5), min_size=0, max_size=2), st.integers(1, 33),
       st.sampled_from([1e-6, 1e-5, 0.1]))
def test_rms_norm_matches_formula(seed, lead, d, eps):
    x, w = rng_arrays(seed, tuple(lead) + (d,), (d,))
    y = ref("sc.rms_norm", x, w, eps=eps)
    assert y.dtype == np.float32 and y.shape == x.shape
    close(y, rms_norm_f64(x, w, eps))


def test_rms_norm_low_precision_rounds_like_hf():
    x, w = rng_arrays(1, (3, 16), (16,))
    xb, wb = x.astype(ml_dtypes.bfloat16), w.astype(ml_dtypes.bfloat16)
    y = ref("sc.rms_norm", xb, wb, eps=1e-6)
    assert y.dtype == ml_dtypes.bfloat16
    # HF: normalize in f32, round to bf16, multiply by the bf16 weight, round again
    xf = xb.astype(np.float32)
    n = (xf / np.sqrt((xf * xf).mean(-1, keepdims=True) + np.float32(1e-6))).astype(ml_dtypes.bfloat16)
    expect = (wb.astype(np.float32) * n.astype(np.float32)).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(y.astype(np.float32), expect.astype(np.float32))
    # f16 activations with an f32 weight promote to f32
    y2 = ref("sc.rms_norm", x.astype(np.float16), w, eps=1e-6)
    assert y2.dtype == np.float32


@given(st.integers(0, 2 ** 31), st.integers(1, 4), st.integers(2, 40), st.sampled_from(["wb", "w", "none"]))
def test_layer_norm_matches_formula(seed, n, d, affine):
    x, w, b = rng_arrays(seed, (n, d), (d,), (d,))
    x = x * 3 + 5  # a non-zero mean exercises the centring
    w_, b_ = (w, b) if affine == "wb" else ((w, None) if affine == "w" else (None, None))
    y = ref("sc.layer_norm", x, w_, b_, eps=1e-5)
    assert y.dtype == np.float32
    close(y, layer_norm_f64(x, w_, b_, 1e-5), 1e-4)


def test_norm_shape_rules():
    with pytest.raises(sc.TraceError, match="weight length"):
        sc.trace(lambda x, w: sc.ops.rms_norm(x, w), sc.TensorSpec((2, 8)), sc.TensorSpec((4,)))
    with pytest.raises(sc.TraceError, match="float"):
        sc.trace(lambda x, w: sc.ops.rms_norm(x, w), sc.TensorSpec((2, 8), "int64"), sc.TensorSpec((8,)))
    with pytest.raises(sc.TraceError, match="bias length"):
        sc.trace(lambda x, w, b: sc.ops.layer_norm(x, w, b), sc.TensorSpec((2, 8)), sc.TensorSpec((8,)),
                 sc.TensorSpec((7,)))
    with pytest.raises(ValueError, match="bias needs a weight"):
        sc.trace(lambda x, b: sc.ops.layer_norm(x, None, b), sc.TensorSpec((2, 8)), sc.TensorSpec((8,)))


# ---------------------------------------------------------------------------------------------
# rope

@given(st.integers(0, 2 ** 31), st.integers(1, 2), st.integers(1, 3), st.integers(1, 6),
       st.sampled_from([2, 4, 8, 16]), st.sampled_from([10000.0, 500000.0, 100.0]), st.booleans(),
       st.booleans())
def test_rope_matches_rotate_half_and_complex_forms(seed, b, h, s, d, theta, batch_pos, interleaved):
    (x,) = rng_arrays(seed, (b, h, s, d))
    r = np.random.default_rng(seed + 1)
    pos = r.integers(0, 200, size=(b, s) if batch_pos else (s,)).astype(np.int64)
    y = ref("sc.rope", x, pos, theta=theta, interleaved=interleaved)
    expect = (rope_complex_f64 if interleaved else rope_rotate_half_f64)(x, pos, theta)
    assert y.dtype == np.float32 and y.shape == x.shape
    close(y, expect, 2e-5)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_partial_rotary_leaves_the_tail(interleaved):
    (x,) = rng_arrays(3, (2, 2, 5, 12))
    pos = np.arange(5, dtype=np.int64) + 7
    y = ref("sc.rope", x, pos, theta=10000.0, rotary_dim=4, interleaved=interleaved)
    np.testing.assert_array_equal(y[..., 4:], x[..., 4:])
    expect = (rope_complex_f64 if interleaved else rope_rotate_half_f64)(x, pos, 10000.0, rotary_dim=4)
    close(y, expect, 2e-5)


def test_rope_position_zero_is_identity_and_norm_preserved():
    (x,) = rng_arrays(4, (1, 3, 4, 8))
    pos = np.array([0, 1, 2, 3], np.int64)
    y = ref("sc.rope", x, pos)
    np.testing.assert_allclose(y[:, :, 0], x[:, :, 0], rtol=0, atol=0)
    # a rotation keeps each (i, i + d/2) pair's length
    n = lambda t: np.hypot(t[..., :4], t[..., 4:])  # noqa: E731
    np.testing.assert_allclose(n(y), n(x), rtol=1e-5)
    assert not np.allclose(y[:, :, 1:], x[:, :, 1:])


def test_rope_shape_rules():
    pos = sc.TensorSpec(("seq",), "int64")
    with pytest.raises(sc.TraceError, match="rotary_dim 3"):
        sc.trace(lambda x, p: sc.ops.rope(x, p, rotary_dim=3), sc.TensorSpec((1, 2, "seq", 8)), pos)
    with pytest.raises(sc.TraceError, match="rotary_dim 16"):
        sc.trace(lambda x, p: sc.ops.rope(x, p, rotary_dim=16), sc.TensorSpec((1, 2, "seq", 8)), pos)
    with pytest.raises(sc.TraceError, match="positions"):
        sc.trace(lambda x, p: sc.ops.rope(x, p), sc.TensorSpec((1, 2, 5, 8)), sc.TensorSpec((4,), "int64"))
    with pytest.raises(sc.TraceError, match="integer"):
        sc.trace(lambda x, p: sc.ops.rope(x, p), sc.TensorSpec((1, 2, 4, 8)), sc.TensorSpec((4,)))
    with pytest.raises(sc.TraceError, match="positions batch"):
        sc.trace(lambda x, p: sc.ops.rope(x, p), sc.TensorSpec((2, 2, 4, 8)), sc.TensorSpec((3, 4), "int64"))


# ---------------------------------------------------------------------------------------------
# attention

attn_shapes = st.tuples(st.integers(1, 2), st.integers(1, 2), st.sampled_from([1, 2, 3]), st.integers(1, 4),
                        st.integers(0, 3), st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 3, 8]))


@given(st.integers(0, 2 ** 31), attn_shapes, st.booleans(), st.sampled_from(["none", "bool", "float", "pad"]))
def test_attention_matches_loops(seed, shapes, causal, mask_kind):
    B, Hkv, group, S, extra, D, Dv = shapes
    Hq, L = Hkv * group, S + extra
    q, k, v = rng_arrays(seed, (B, Hq, S, D), (B, Hkv, L, D), (B, Hkv, L, Dv))
    r = np.random.default_rng(seed + 7)
    mask = {"none": None,
            "bool": r.random((B, 1, S, L)) < 0.7,
            "float": (r.standard_normal((1, Hq, S, L)) * 2).astype(np.float32),
            "pad": (r.random((B, 1, 1, L)) < 0.7)}[mask_kind]
    y = ref("sc.attention", q, k, v, mask, causal=causal)
    assert y.shape == (B, Hq, S, Dv) and y.dtype == np.float32
    close(y, attention_loops(q, k, v, mask, causal), 1e-5)


def test_attention_causal_offset_and_scale():
    q, k, v = rng_arrays(5, (1, 2, 2, 4), (1, 2, 5, 4), (1, 2, 5, 4))
    y = ref("sc.attention", q, k, v, None, causal=True, scale=0.5)
    close(y, attention_loops(q, k, v, causal=True, scale=0.5))
    # the last query sees every key: it equals bidirectional attention for that row
    full = ref("sc.attention", q, k, v, None, causal=False, scale=0.5)
    np.testing.assert_allclose(y[:, :, -1], full[:, :, -1], rtol=1e-6)
    # the first query (position L-S = 3) does not see key 4: changing v[4] leaves it alone
    v2 = v.copy()
    v2[:, :, 4] += 100
    y2 = ref("sc.attention", q, k, v2, None, causal=True, scale=0.5)
    np.testing.assert_array_equal(y2[:, :, 0], y[:, :, 0])
    assert not np.allclose(y2[:, :, 1], y[:, :, 1])


def test_attention_gqa_uses_grouped_kv_heads():
    # kv head j must serve query heads 2j and 2j+1 (not j and j+2)
    q, k, v = rng_arrays(6, (1, 4, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4))
    y = ref("sc.attention", q, k, v, None)
    for h in range(4):
        yh = ref("sc.attention", q[:, h:h + 1], k[:, h // 2:h // 2 + 1], v[:, h // 2:h // 2 + 1], None)
        np.testing.assert_allclose(y[:, h:h + 1], yh, rtol=1e-6)


def test_attention_fully_masked_rows_are_zero_and_nan_propagates():
    q, k, v = rng_arrays(7, (1, 1, 3, 4), (1, 1, 2, 4), (1, 1, 2, 4))
    y = ref("sc.attention", q, k, v, None, causal=True)  # query 0 sits at position -1: sees nothing
    np.testing.assert_array_equal(y[0, 0, 0], 0)
    close(y, attention_loops(q, k, v, causal=True))
    q[0, 0, 2, 0] = np.nan
    y = ref("sc.attention", q, k, v, None)
    assert np.isnan(y[0, 0, 2]).all() and np.isfinite(y[0, 0, :2]).all()


def test_attention_low_precision():
    q, k, v = rng_arrays(8, (1, 2, 3, 8), (1, 2, 3, 8), (1, 2, 3, 8))
    qb, kb, vb = (t.astype(ml_dtypes.bfloat16) for t in (q, k, v))
    y = ref("sc.attention", qb, kb, vb, None, causal=True)
    assert y.dtype == ml_dtypes.bfloat16
    expect = attention_loops(*(t.astype(np.float32) for t in (qb, kb, vb)), causal=True)
    np.testing.assert_allclose(y.astype(np.float32), expect, atol=2e-2)


def test_attention_shape_rules():
    T = sc.TensorSpec
    f = lambda q, k, v: sc.ops.attention(q, k, v)  # noqa: E731
    with pytest.raises(sc.TraceError, match="multiple of kv heads"):
        sc.trace(f, T((1, 3, 4, 8)), T((1, 2, 4, 8)), T((1, 2, 4, 8)))
    with pytest.raises(sc.TraceError, match="head_dim of k"):
        sc.trace(f, T((1, 2, 4, 8)), T((1, 2, 4, 4)), T((1, 2, 4, 8)))
    with pytest.raises(sc.TraceError, match="key length of v"):
        sc.trace(f, T((1, 2, 4, 8)), T((1, 2, 4, 8)), T((1, 2, 5, 8)))
    with pytest.raises(sc.TraceError, match="rank 4"):
        sc.trace(f, T((2, 4, 8)), T((2, 4, 8)), T((2, 4, 8)))
    with pytest.raises(sc.TraceError, match="does not broadcast"):
        sc.trace(lambda q, k, v, m: sc.ops.attention(q, k, v, m), T((1, 2, 4, 8)), T((1, 2, 5, 8)),
                 T((1, 2, 5, 8)), T((1, 1, 4, 4), "bool"))
    with pytest.raises(sc.TraceError, match="boolean"):
        sc.trace(lambda q, k, v, m: sc.ops.attention(q, k, v, m), T((1, 2, 4, 8)), T((1, 2, 4, 8)),
                 T((1, 2, 4, 8)), T((1, 1, 4, 4), "int64"))


# ---------------------------------------------------------------------------------------------
# traced API: symbolic dims, text round trip, interpretation

def test_traced_block_round_trips_and_interprets():
    def block(q, k, v, pos, pad, w):
        q = sc.ops.rope(sc.ops.rms_norm(q, w), pos, theta=500000.0)
        k = sc.ops.rope(k, pos, theta=500000.0, rotary_dim=4, interleaved=True)
        return {"causal": sc.ops.attention(q, k, v, causal=True),
                "masked": sc.ops.attention(q, k, v, pad, scale=0.25),
                "ln": sc.ops.layer_norm(v, w, w, eps=1e-12)}

    specs = [sc.TensorSpec(("batch", 4, "seq", 8)), sc.TensorSpec(("batch", 2, "seq", 8)),
             sc.TensorSpec(("batch", 2, "seq", 8)), sc.TensorSpec(("batch", "seq"), "int64"),
             sc.TensorSpec(("batch", 1, 1, "seq"), "bool"), sc.TensorSpec((8,))]
    g = sc.trace(block, *specs)
    text = str(g)
    assert "sc.rope" in text and "sc.attention" in text and "sc.rms_norm" in text and "sc.layer_norm" in text
    g2 = sc.parse(text)
    assert str(g2) == text
    q, k, v, w = rng_arrays(9, (2, 4, 3, 8), (2, 2, 3, 8), (2, 2, 3, 8), (8,))
    pos = np.array([[0, 1, 2], [5, 6, 7]], np.int64)
    pad = np.array([1, 1, 0, 1, 1, 1], bool).reshape(2, 1, 1, 3)
    causal, masked, ln = sc.interpret(g2, q, k, v, pos, pad, w)
    qe = rope_rotate_half_f64(rms_norm_f64(q, w, 1e-6), pos, 500000.0)
    ke = rope_complex_f64(k, pos, 500000.0, rotary_dim=4)
    close(causal, attention_loops(qe, ke, v, causal=True), 1e-4)
    close(masked, attention_loops(qe, ke, v, pad, scale=0.25), 1e-4)
    close(ln, layer_norm_f64(v, w, w, 1e-12), 1e-4)
    assert causal.shape == (2, 4, 3, 8) and ln.shape == v.shape


# ---------------------------------------------------------------------------------------------
# optional: torch as a second opinion

def test_against_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    q, k, v = rng_arrays(10, (2, 4, 5, 8), (2, 2, 7, 8), (2, 2, 7, 8))
    tq, tk, tv = (torch.from_numpy(t) for t in (q, k, v))
    kk, vv = tk.repeat_interleave(2, dim=1), tv.repeat_interleave(2, dim=1)
    # torch's is_causal aligns to the top-left; build the bottom-right (KV-cache) mask by hand
    m = torch.ones(5, 7, dtype=torch.bool).tril(diagonal=7 - 5)
    np.testing.assert_allclose(ref("sc.attention", q, k, v, None, causal=True),
                               F.scaled_dot_product_attention(tq, kk, vv, attn_mask=m).numpy(), atol=1e-5)
    pad = np.random.default_rng(1).standard_normal((2, 1, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(ref("sc.attention", q, k, v, pad),
                               F.scaled_dot_product_attention(tq, kk, vv, attn_mask=torch.from_numpy(pad)).numpy(),
                               atol=1e-5)

    x, w = rng_arrays(11, (3, 16), (16,))
    np.testing.assert_allclose(ref("sc.rms_norm", x, w, eps=1e-6),
                               F.rms_norm(torch.from_numpy(x), (16,), torch.from_numpy(w), eps=1e-6).numpy(),
                               atol=1e-5)
    b = rng_arrays(12, (16,))[0]
    np.testing.assert_allclose(ref("sc.layer_norm", x, w, b, eps=1e-5),
                               F.layer_norm(torch.from_numpy(x), (16,), torch.from_numpy(w),
                                            torch.from_numpy(b), eps=1e-5).numpy(), atol=1e-5)

    # HF Llama rotary, written with torch ops
    (xq,) = rng_arrays(13, (2, 3, 6, 8))
    pos = np.array([[0, 1, 2, 3, 4, 5], [9, 10, 11, 12, 13, 14]], np.int64)
    inv = 1.0 / (10000.0 ** (torch.arange(0, 8, 2, dtype=torch.int64).float() / 8))
    freqs = (inv[None, :, None] @ torch.from_numpy(pos)[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]
    tx = torch.from_numpy(xq)
    rh = torch.cat((-tx[..., 4:], tx[..., :4]), dim=-1)
    np.testing.assert_allclose(ref("sc.rope", xq, pos), (tx * cos + rh * sin).numpy(), atol=1e-5)
