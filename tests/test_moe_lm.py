"""An MoE causal LM (decoder layers whose MLP is sc.nn.MoE) traces, round-trips and interprets."""
import numpy as np

import sparsec as sc


def _moe_lm():
    return sc.nn.CausalLM(vocab=50, hidden=32, layers=2, heads=4, kv_heads=2, ffn=64, seed=0,
                          mlp=lambda i: sc.nn.MoE(hidden=32, ffn=16, num_experts=4, top_k=2, router="softmax",
                                                  norm_topk_prob=False, shared_ffn=16, shared_expert_gate=True,
                                                  seed=10 + i))


def test_moe_causal_lm_names_trace_and_run():
    lm = _moe_lm()
    names = set(lm.state_dict())
    assert "model.layers.1.mlp.experts.3.down_proj.weight" in names
    assert "model.layers.0.mlp.shared_expert_gate.weight" in names
    g = sc.trace(lm, sc.TensorSpec(("batch", "seq"), "int64"))
    text = str(g)
    assert str(sc.parse(text)) == text
    ids = np.array([[1, 7, 3, 9], [4, 4, 0, 49]], dtype=np.int64)
    (logits,) = sc.interpret(g, ids)
    assert logits.shape == (2, 4, 50) and logits.dtype == np.float32 and np.isfinite(logits).all()
    # causal: the logits of the first tokens do not depend on later tokens
    ids2 = ids.copy()
    ids2[:, 3] = [11, 12]
    (logits2,) = sc.interpret(g, ids2)
    np.testing.assert_allclose(logits[:, :3], logits2[:, :3], rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits[:, 3], logits2[:, 3])
