"""The sparsec demo model written in PyTorch (benchmark peer only): same weights (the sparsec
state dict), same math: RMSNorm, RoPE (halves), grouped-query causal attention, a softmax
top-2 MoE with renormalised weights computed the way Hugging Face's Qwen3-MoE block does
(only the routed tokens go through each expert), and the LM head.

    python benchmarks/torch_demo.py cold-compile   # prints seconds of torch.compile's first call
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


class TorchDemoLM(torch.nn.Module):
    def __init__(self, sd: dict, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.w = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}

    def rms(self, x, name, eps=1e-6):
        v = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(v + eps) * self.w[name]

    def rope(self, x, pos):
        d = x.shape[-1]
        inv = 1.0 / (self.cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        ang = pos[:, None].float() * inv[None, :]
        cos, sin = torch.cos(ang), torch.sin(ang)
        cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def attn(self, x, p, pos):
        c = self.cfg
        b, s, _ = x.shape
        hd = c["hidden"] // c["heads"]
        q = F.linear(x, self.w[p + "q_proj.weight"]).view(b, s, c["heads"], hd).transpose(1, 2)
        k = F.linear(x, self.w[p + "k_proj.weight"]).view(b, s, c["kv_heads"], hd).transpose(1, 2)
        v = F.linear(x, self.w[p + "v_proj.weight"]).view(b, s, c["kv_heads"], hd).transpose(1, 2)
        q, k = self.rope(q, pos), self.rope(k, pos)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return F.linear(o.transpose(1, 2).reshape(b, s, -1), self.w[p + "o_proj.weight"])

    def moe(self, x, p):
        c = self.cfg
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = torch.softmax(F.linear(x, self.w[p + "gate.weight"]), -1)
        wts, ids = torch.topk(probs, c["top_k"], -1)
        wts = wts / wts.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e in range(c["num_experts"]):
            tok, slot = torch.where(ids == e)
            if tok.numel() == 0:
                continue
            h = x[tok]
            q = f"{p}experts.{e}."
            y = F.linear(F.silu(F.linear(h, self.w[q + "gate_proj.weight"])) * F.linear(h, self.w[q + "up_proj.weight"]),
                         self.w[q + "down_proj.weight"])
            out.index_add_(0, tok, y * wts[tok, slot, None])
        return out.reshape(shape)

    def forward(self, ids):
        pos = torch.arange(ids.shape[1])
        h = self.w["model.embed_tokens.weight"][ids]
        for i in range(self.cfg["layers"]):
            p = f"model.layers.{i}."
            h = h + self.attn(self.rms(h, p + "input_layernorm.weight"), p + "self_attn.", pos)
            h = h + self.moe(self.rms(h, p + "post_attention_layernorm.weight"), p + "mlp.")
        return F.linear(self.rms(h, "model.norm.weight"), self.w["lm_head.weight"])


def build():
    from sparsec.demo import DEMO_CONFIG, demo_model
    return TorchDemoLM(demo_model().state_dict(), DEMO_CONFIG)


if __name__ == "__main__" and sys.argv[1:] == ["cold-compile"]:
    m = build()
    ids = torch.from_numpy(np.arange(16, dtype=np.int64)[None] % 512)
    t0 = time.perf_counter()
    with torch.inference_mode():
        torch.compile(m)(ids)
    print(f"{time.perf_counter() - t0:.3f}")
