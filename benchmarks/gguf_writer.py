"""Write an ``sc.nn.CausalLM`` (dense SwiGLU or Mixtral-style MoE layers) as a GGUF file that
llama.cpp loads, so sparsec and llama.cpp can be compared on the same weights.

Benchmark/test helper only (needs the ``gguf`` package: ``pip install gguf``); sparsec itself
never imports it.

    from gguf_writer import write_gguf
    info = write_gguf("m.q8_0.gguf", lm, None, "q8_0")   # config read from the model

What is written (as llama.cpp's ``convert_hf_to_gguf.py`` writes a Hugging Face Mixtral):

- architecture ``llama`` (Mixtral is ``llama`` with expert tensors); metadata
  ``llama.{context_length, embedding_length, block_count, feed_forward_length,
  attention.head_count, attention.head_count_kv, attention.key_length, attention.value_length,
  attention.layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count, expert_count,
  expert_used_count, vocab_size}``, ``general.file_type``.
- tensors (sparsec / Hugging Face name -> GGUF name):

  ====================================================  =================================
  ``model.embed_tokens.weight``                         ``token_embd.weight``
  ``model.layers.N.input_layernorm.weight``             ``blk.N.attn_norm.weight``
  ``model.layers.N.self_attn.{q,k,v,o}_proj.weight``    ``blk.N.attn_{q,k,v,output}.weight``
  ``model.layers.N.post_attention_layernorm.weight``    ``blk.N.ffn_norm.weight``
  ``model.layers.N.mlp.gate.weight`` (router)           ``blk.N.ffn_gate_inp.weight``
  ``model.layers.N.mlp.experts.E.{w1,w3,w2}.weight``    ``blk.N.ffn_{gate,up,down}_exps.weight``
                                                        (stacked ``[E, ...]``)
  ``model.layers.N.mlp.{gate,up,down}_proj.weight``     ``blk.N.ffn_{gate,up,down}.weight`` (dense)
  ``model.norm.weight``                                 ``output_norm.weight``
  ``lm_head.weight``                                    ``output.weight`` (absent when tied)
  ====================================================  =================================

- RoPE: sparsec (and Hugging Face Llama) rotate the halves ``(x[i], x[i + d/2])`` of each head
  (``sc.rope(interleaved=False)``, ``rotate_half``); llama.cpp's ``llama`` architecture rotates
  adjacent pairs ``(x[2i], x[2i+1])``. As ``convert_hf_to_gguf.py``'s ``LlamaModel.permute``
  does, the rows of ``attn_q`` (per query head) and ``attn_k`` (per kv head) are reordered so
  row ``2i + j`` of a head is Hugging Face's row ``i + j * d/2``: both sides then compute the
  same attention scores (``v`` and the outputs are untouched).
- A tokenizer: llama.cpp refuses a GGUF without ``tokenizer.ggml.model``. A SentencePiece-style
  (``llama``) vocabulary of ``vocab`` dummy tokens is written: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2,
  the 256 byte tokens ``<0x00>``..``<0xFF>`` (so the loader finds the newline token), then
  ``tok<i>``. Only token ids are ever fed; no text is tokenized.

Tensor types per ``fmt`` (``"f32"``, ``"f16"``, ``"q8_0"``, ``"q4_0"``): 1-D tensors (the RMSNorm
weights) and the router ``ffn_gate_inp`` stay F32, as ``convert_hf_to_gguf.py`` and
``llama-quantize`` keep them; every other matrix (``token_embd``, attention, experts,
``output``) is ``fmt``. That is ``convert_hf_to_gguf.py --outtype q8_0`` for q8_0 and
``llama-quantize --pure`` for q4_0. (Plain ``llama-quantize ... Q4_0`` would instead make
``output`` Q6_K and, for an 8-expert model, ``attn_k``/``attn_v`` Q8_0: sparsec has no Q6_K, so
the comparison uses the pure recipe; ``types=`` overrides any tensor.) A matrix whose rows are
not a multiple of the 32-element block stays F32. Quantization uses ``gguf.quants`` (bit-exact
with ggml's reference quantizers) or, with ``quantizer="sparsec"``, ``sparsec.quant`` (same
block layout, so llama.cpp then reads exactly the weights sparsec's q8_0/q4_0 hold).

The file is streamed tensor by tensor (an F32 Mixtral-style model of a few GB never sits in
memory twice).
"""
from __future__ import annotations

import os
import re

import numpy as np

#: sparsec quantize modes / GGUF type names -> gguf.GGMLQuantizationType member names
_TYPE_NAMES = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0"}
#: llama.cpp general.file_type (enum llama_ftype) for each fmt
_FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7}

FORMATS = tuple(_TYPE_NAMES)


def _gguf():
    try:
        import gguf
    except ImportError as e:  # pragma: no cover - benchmark-only dependency
        raise ImportError("benchmarks/gguf_writer.py needs the gguf package: pip install gguf") from e
    return gguf


# -- configuration -------------------------------------------------------------------------------

def model_config(lm) -> dict:
    """The settings ``write_gguf`` needs, from an ``sc.nn.CausalLM`` (its ``config`` plus the MoE
    block of layer 0, if any)."""
    cfg = dict(lm.config)
    mlp = lm.model.layers[0].mlp
    if hasattr(mlp, "num_experts"):
        if getattr(mlp, "router", "softmax") != "softmax" or not getattr(mlp, "norm_topk_prob", True):
            raise ValueError("write_gguf: llama.cpp's llama/Mixtral MoE is a softmax router with the top-k weights "
                             "renormalised (norm_topk_prob=True)")
        if getattr(mlp, "shared_ffn", 0) or getattr(mlp, "routed_scaling_factor", 1.0) != 1.0 \
                or getattr(mlp, "activation", "silu") != "silu":
            raise ValueError("write_gguf: shared experts, routed scaling and non-SiLU experts are not in llama.cpp's "
                             "llama architecture")
        cfg.update(num_experts=mlp.num_experts, top_k=mlp.top_k, expert_ffn=mlp.ffn,
                   expert_names=tuple(mlp.expert_names))
    return cfg


def _check_config(cfg: dict) -> dict:
    need = ("vocab", "hidden", "layers", "heads")
    missing = [k for k in need if k not in cfg]
    if missing:
        raise ValueError(f"write_gguf: config lacks {', '.join(missing)}")
    c = dict(cfg)
    c.setdefault("kv_heads", c["heads"])
    c.setdefault("head_dim", c["hidden"] // c["heads"])
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("norm_eps", 1e-6)
    c.setdefault("tie_word_embeddings", False)
    c.setdefault("num_experts", 0)
    c.setdefault("top_k", 0)
    c.setdefault("expert_ffn", c.get("ffn"))
    c.setdefault("expert_names", ("w1", "w3", "w2"))
    if c.get("attention_bias") or c.get("qk_norm"):
        raise ValueError("write_gguf: attention biases / QK-norm are not written (not in llama.cpp's llama arch)")
    if c.get("activation", "silu") != "silu":
        raise ValueError("write_gguf: llama.cpp's llama architecture is SwiGLU (activation 'silu')")
    if c["num_experts"] and not c["top_k"]:
        raise ValueError("write_gguf: a MoE config needs top_k")
    return c


# -- tensor plan ---------------------------------------------------------------------------------

def _permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of each head from rotate-half order to llama.cpp's adjacent pairs (the reorder
    ``convert_hf_to_gguf.py`` applies to Hugging Face Llama q/k projections)."""
    out = w.shape[0]
    return np.ascontiguousarray(w.reshape(n_head, 2, out // n_head // 2, *w.shape[1:]).swapaxes(1, 2)
                                .reshape(w.shape))


def _plan(sd: dict, c: dict) -> list[tuple[str, tuple, object]]:
    """``[(gguf_name, shape, make)]`` in file order; ``make()`` returns the f32 array."""
    g = _gguf()
    T, M = g.TENSOR_NAMES, g.MODEL_TENSOR

    def name(t, bid=None):
        return (T[t].format(bid=bid) if bid is not None else T[t]) + ".weight"

    def get(key):
        if key not in sd:
            raise KeyError(f"write_gguf: state dict has no {key!r}")
        return sd[key]

    def direct(key, fn=None):
        def make():
            a = np.asarray(get(key), dtype=np.float32)
            return fn(a) if fn else a
        return make

    plan = [(name(M.TOKEN_EMBD), np.shape(get("model.embed_tokens.weight")), direct("model.embed_tokens.weight"))]
    h, d = c["heads"], c["head_dim"]
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        plan.append((name(M.ATTN_NORM, i), np.shape(get(p + "input_layernorm.weight")),
                     direct(p + "input_layernorm.weight")))
        for t, proj, heads in ((M.ATTN_Q, "q_proj", h), (M.ATTN_K, "k_proj", c["kv_heads"]), (M.ATTN_V, "v_proj", 0),
                               (M.ATTN_OUT, "o_proj", 0)):
            key = p + f"self_attn.{proj}.weight"
            fn = (lambda a, n=heads: _permute_rope(a, n)) if heads else None
            if heads and np.shape(get(key))[0] != heads * d:
                raise ValueError(f"write_gguf: {key} has {np.shape(get(key))[0]} rows, expected {heads} x {d}")
            plan.append((name(t, i), np.shape(get(key)), direct(key, fn)))
        plan.append((name(M.FFN_NORM, i), np.shape(get(p + "post_attention_layernorm.weight")),
                     direct(p + "post_attention_layernorm.weight")))
        if c["num_experts"]:
            E = c["num_experts"]
            plan.append((name(M.FFN_GATE_INP, i), np.shape(get(p + "mlp.gate.weight")), direct(p + "mlp.gate.weight")))
            for t, proj in zip((M.FFN_GATE_EXP, M.FFN_UP_EXP, M.FFN_DOWN_EXP), c["expert_names"]):
                keys = [p + f"mlp.experts.{e}.{proj}.weight" for e in range(E)]
                shape = (E,) + tuple(np.shape(get(keys[0])))

                def make(keys=keys):
                    return np.stack([np.asarray(get(k), dtype=np.float32) for k in keys])
                plan.append((name(t, i), shape, make))
            extra = [k for k in sd if k.startswith(p + "mlp.") and ".experts." not in k and k != p + "mlp.gate.weight"]
            if extra:
                raise ValueError(f"write_gguf: MoE tensors llama.cpp's llama architecture has no place for: {extra[:4]}")
        else:
            for t, proj in ((M.FFN_GATE, "gate_proj"), (M.FFN_UP, "up_proj"), (M.FFN_DOWN, "down_proj")):
                key = p + f"mlp.{proj}.weight"
                plan.append((name(t, i), np.shape(get(key)), direct(key)))
    plan.append((name(M.OUTPUT_NORM), np.shape(get("model.norm.weight")), direct("model.norm.weight")))
    if "lm_head.weight" in sd and not c["tie_word_embeddings"]:
        plan.append((name(M.OUTPUT), np.shape(get("lm_head.weight")), direct("lm_head.weight")))
    return plan


def tensor_type(gguf_name: str, shape: tuple, fmt: str, types: dict | None = None) -> str:
    """The GGUF type (``"f32"``, ``"q8_0"``, ...) a tensor gets for ``fmt`` (see the module docstring)."""
    for pattern, t in (types or {}).items():
        if re.search(pattern, gguf_name):
            return t
    if len(shape) <= 1 or gguf_name.endswith("_norm.weight") or ".ffn_gate_inp." in gguf_name:
        return "f32"
    if fmt in ("q8_0", "q4_0") and shape[-1] % 32:
        return "f32"
    return fmt


def _encode(a: np.ndarray, t: str, quantizer: str) -> np.ndarray:
    """The bytes (uint8, ``[..., row bytes]``) or float array llama.cpp reads for type ``t``."""
    if t == "f32":
        return np.ascontiguousarray(a, dtype=np.float32)
    if t == "f16":
        return np.ascontiguousarray(a, dtype=np.float16)
    if quantizer == "sparsec":
        from sparsec.quant import formats
        qt = formats.quantize(a, t)
        d = qt.parts["d"].view(np.uint8).reshape(qt.parts["d"].shape + (2,))      # [..., N, nb, 2]
        qs = qt.parts["qs"].view(np.uint8)                                           # [..., N, nb, 32 or 16]
        blocks = np.concatenate([d, qs], axis=-1)                                   # block_q8_0 / block_q4_0
        return np.ascontiguousarray(blocks.reshape(blocks.shape[:-2] + (-1,)))
    g = _gguf()
    return g.quants.quantize(np.ascontiguousarray(a, dtype=np.float32), getattr(g.GGMLQuantizationType, _TYPE_NAMES[t]))


def _byte_shape(shape: tuple, t: str) -> tuple:
    g = _gguf()
    if t in ("f32", "f16"):
        return tuple(shape)
    return tuple(g.quant_shape_to_byte_shape(tuple(shape), getattr(g.GGMLQuantizationType, _TYPE_NAMES[t])))


# -- writer --------------------------------------------------------------------------------------

def _write_vocab(w, vocab: int) -> None:
    g = _gguf()
    if vocab < 3 + 256:
        raise ValueError(f"write_gguf: vocab {vocab} is too small for the dummy SentencePiece vocabulary "
                         f"(3 special + 256 byte tokens)")
    T = g.TokenType
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [T.UNKNOWN, T.CONTROL, T.CONTROL] + [T.BYTE] * 256
    tokens += [f"tok{i}" for i in range(len(tokens), vocab)]
    types += [T.NORMAL] * (vocab - len(types))
    scores = [0.0] * 259 + [-float(i) for i in range(vocab - 259)]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)


def write_gguf(path, model_or_state_dict, config: dict | None = None, fmt: str = "f32", *,
               quantizer: str = "gguf", types: dict | None = None, context_length: int = 4096,
               name: str = "sparsec random model") -> dict:
    """Write ``model_or_state_dict`` (an ``sc.nn.CausalLM`` or its ``state_dict()``) to ``path``
    as a GGUF llama.cpp loads, tensors in ``fmt`` (``"f32"``, ``"f16"``, ``"q8_0"``, ``"q4_0"``;
    norms and router F32). ``config``: the model's settings (``CausalLM.config`` keys plus, for
    MoE, ``num_experts``, ``top_k``, ``expert_ffn``, ``expert_names``); None reads them from the
    model. ``types``: ``{regex over GGUF names: type}`` overrides. ``quantizer``: ``"gguf"``
    (``gguf.quants``) or ``"sparsec"`` (``sparsec.quant``).

    Returns ``{"path", "fmt", "nbytes" (tensor data), "tensors": [(gguf name, type, shape, nbytes)]}``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"write_gguf: fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if quantizer not in ("gguf", "sparsec"):
        raise ValueError(f"write_gguf: quantizer must be 'gguf' or 'sparsec', got {quantizer!r}")
    g = _gguf()
    if hasattr(model_or_state_dict, "state_dict"):
        sd = model_or_state_dict.state_dict()
        cfg = dict(model_config(model_or_state_dict), **(config or {}))
    else:
        sd = dict(model_or_state_dict)
        if config is None:
            raise ValueError("write_gguf: give config with a state dict (or pass the model)")
        cfg = config
    c = _check_config(cfg)
    plan = _plan(sd, c)

    w = g.GGUFWriter(os.fspath(path), "llama")
    w.add_name(name)
    w.add_context_length(int(context_length))
    w.add_embedding_length(int(c["hidden"]))
    w.add_block_count(int(c["layers"]))
    w.add_feed_forward_length(int(c["expert_ffn"] if c["num_experts"] else c["ffn"]))
    w.add_head_count(int(c["heads"]))
    w.add_head_count_kv(int(c["kv_heads"]))
    w.add_key_length(int(c["head_dim"]))
    w.add_value_length(int(c["head_dim"]))
    w.add_rope_dimension_count(int(c["head_dim"]))
    w.add_rope_freq_base(float(c["rope_theta"]))
    w.add_layer_norm_rms_eps(float(c["norm_eps"]))
    if c["num_experts"]:
        w.add_expert_count(int(c["num_experts"]))
        w.add_expert_used_count(int(c["top_k"]))
    w.add_vocab_size(int(c["vocab"]))
    w.add_file_type(_FILE_TYPES[fmt])
    _write_vocab(w, int(c["vocab"]))

    tensors = []
    for gname, shape, _ in plan:
        t = tensor_type(gname, shape, fmt, types)
        bshape = _byte_shape(shape, t)
        itemsize = {"f32": 4, "f16": 2}.get(t, 1)
        nbytes = int(np.prod(bshape)) * itemsize
        dtype = {"f32": np.float32, "f16": np.float16}.get(t, np.uint8)
        raw = None if t in ("f32", "f16") else getattr(g.GGMLQuantizationType, _TYPE_NAMES[t])
        w.add_tensor_info(gname, bshape, np.dtype(dtype), nbytes, raw_dtype=raw)
        tensors.append((gname, t, tuple(int(s) for s in shape), nbytes))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for (gname, shape, make), (_, t, _, nbytes) in zip(plan, tensors):
        data = _encode(make(), t, quantizer)
        if data.nbytes != nbytes:
            raise AssertionError(f"write_gguf: {gname}: {data.nbytes} bytes encoded, {nbytes} announced")
        w.write_tensor_data(data)
        del data
    w.close()
    return {"path": os.fspath(path), "fmt": fmt, "nbytes": sum(t[3] for t in tensors), "tensors": tensors}
