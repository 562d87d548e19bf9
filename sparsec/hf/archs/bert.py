"""BERT encoders (``bert``; e.g. sentence-transformers/all-MiniLM-L6-v2) as ``sc.nn.BertModel``:
``forward(input_ids, attention_mask, token_type_ids)`` -> ``last_hidden_state``. Checkpoints
saved from a task model (``BertForMaskedLM``...) prefix the encoder with ``bert.``; the prefix is
dropped and the task heads (``cls.*``) are ignored."""
from __future__ import annotations

from ...nn import BertModel
from ..config import expect, get, refuse, require

MODEL_TYPES = ("bert",)
BERT_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


def build(config: dict, weight_names=None) -> BertModel:
    act = expect(config, "hidden_act", tuple(BERT_ACTIVATIONS), "gelu")
    expect(config, "position_embedding_type", ("absolute",), "absolute")
    refuse(config, "is_decoder", ok=(None, False), why="BERT as a decoder")
    refuse(config, "add_cross_attention", ok=(None, False))
    hidden, heads = require(config, "hidden_size"), require(config, "num_attention_heads")
    if hidden % heads:
        raise ValueError(f"config.json: hidden_size {hidden} is not divisible by num_attention_heads {heads}")
    pooler = True if weight_names is None else any(
        n.startswith(("pooler.", "bert.pooler.")) for n in weight_names)
    model = BertModel(vocab=require(config, "vocab_size"), hidden=hidden, layers=require(config, "num_hidden_layers"),
                      heads=heads, intermediate=require(config, "intermediate_size"),
                      max_position=get(config, "max_position_embeddings", 512),
                      type_vocab=get(config, "type_vocab_size", 2), eps=float(get(config, "layer_norm_eps", 1e-12)),
                      activation=BERT_ACTIVATIONS[act], add_pooling_layer=pooler, seed=None)
    model.is_encoder = True
    return model


def rename_weight(name: str, config: dict):
    if name.startswith(("cls.", "classifier.", "qa_outputs.")):
        return None  # task heads: not part of last_hidden_state
    return name[len("bert."):] if name.startswith("bert.") else name
