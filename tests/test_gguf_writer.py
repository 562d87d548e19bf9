"""benchmarks/gguf_writer.py: an sc.nn.CausalLM with Mixtral-style MoE layers written as GGUF
gives llama.cpp's logits (F32: sparsec's fp32 logits within 1e-3 relative; q8_0/q4_0: within
quantization error), and sparsec.quant blocks are written in llama.cpp's byte layout.

Benchmark-only dependencies: ``pip install gguf llama-cpp-python``; without them these tests
skip (CI does not install them)."""
import os
import sys

import numpy as np
import pytest

import sparsec as sc

gguf = pytest.importorskip("gguf", reason="benchmark-only dependency: pip install gguf")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from gguf_writer import write_gguf  # noqa: E402

IDS = [5, 17, 42, 300, 7, 511, 64, 128, 3, 99, 250, 1, 260, 33]


def _tiny_lm(seed=3):
    lm = sc.nn.CausalLM(vocab=512, hidden=64, layers=2, heads=4, kv_heads=2, ffn=96, rope_theta=10000.0,
                        norm_eps=1e-5, seed=seed,
                        mlp=lambda i: sc.nn.MoE(hidden=64, ffn=96, num_experts=4, top_k=2, naming="mixtral",
                                                seed=20 + i))
    # non-trivial norm weights, so a misplaced norm shows
    rng = np.random.default_rng(seed)
    sd = {k: (v if not k.endswith("norm.weight") else (1 + 0.2 * rng.standard_normal(v.shape)).astype(np.float32))
          for k, v in lm.state_dict().items()}
    lm.load_state_dict(sd)
    return lm


@pytest.fixture(scope="module")
def tiny():
    lm = _tiny_lm()
    cm = sc.compile(lm, sc.TensorSpec((1, "seq"), "int64"), progress=False)
    return lm, cm(np.array([IDS], np.int64))[0]


def _llama_logits(path, ids):
    llama_cpp = pytest.importorskip("llama_cpp", reason="benchmark-only dependency: pip install llama-cpp-python")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_batch=64, n_threads=2, n_threads_batch=2,
                          logits_all=True, verbose=False, seed=0,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    try:
        llm.eval(ids)
        return np.array(llm.scores[:len(ids)], dtype=np.float32)
    finally:
        llm.close()


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
def test_sparsec_quantizer_writes_llama_cpp_blocks(tmp_path, fmt):
    """With quantizer="sparsec" the GGUF holds sparsec.quant's blocks byte for byte: gguf's
    dequantizer (ggml's layout) gives sparsec's dequantized values exactly."""
    from sparsec.quant import formats
    lm = _tiny_lm()
    path = tmp_path / f"m.{fmt}.gguf"
    info = write_gguf(path, lm, None, fmt, quantizer="sparsec")
    types = {n: t for n, t, _, _ in info["tensors"]}
    assert types["blk.0.ffn_gate_inp.weight"] == "f32" and types["blk.1.ffn_norm.weight"] == "f32"
    assert types["blk.0.ffn_down_exps.weight"] == fmt and types["output.weight"] == fmt
    r = gguf.GGUFReader(path)
    tensors = {t.name: t for t in r.tensors}
    sd = lm.state_dict()
    t = tensors["blk.1.ffn_down_exps.weight"]
    want = formats.dequantize(formats.quantize(np.stack([sd[f"model.layers.1.mlp.experts.{e}.w2.weight"]
                                                         for e in range(4)]), fmt))
    got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(want.shape)
    np.testing.assert_array_equal(got, want)
    # q/k rows are permuted for llama.cpp's RoPE; v is not
    t = tensors["blk.0.attn_v.weight"]
    v = formats.dequantize(formats.quantize(sd["model.layers.0.self_attn.v_proj.weight"], fmt))
    np.testing.assert_array_equal(gguf.quants.dequantize(t.data, t.tensor_type).reshape(v.shape), v)
    md = {f.name: f for f in r.fields.values()}
    assert "llama.expert_count" in md and "tokenizer.ggml.tokens" in md


def test_f32_logits_match_sparsec_fp32(tmp_path, tiny):
    lm, want = tiny
    path = tmp_path / "m.f32.gguf"
    write_gguf(path, lm, None, "f32")
    got = _llama_logits(path, IDS)
    assert got.shape == want.shape
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel < 1e-3, f"llama.cpp vs sparsec fp32: max abs diff / max |logit| = {rel:.2e}"
    assert (got.argmax(-1) == want.argmax(-1)).all()


@pytest.mark.parametrize("fmt,tol", [("q8_0", 0.03), ("q4_0", 0.25)])
def test_quantized_logits_within_quantization_error(tmp_path, tiny, fmt, tol):
    """q8_0 / q4_0 GGUFs: llama.cpp's logits stay near sparsec's fp32 logits (the quantization
    error of the weights, plus llama.cpp's q8 activations): bounds about 2x the measured 0.013 / 0.11."""
    lm, want = tiny
    path = tmp_path / f"m.{fmt}.gguf"
    write_gguf(path, lm, None, fmt)
    got = _llama_logits(path, IDS)
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel < tol, f"llama.cpp {fmt} vs sparsec fp32: max abs diff / max |logit| = {rel:.2e}"
