"""A Llama-style decoder (Touvron et al. 2023; Meta's reference code) as a PyTorch module:
hand-written RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, and a
mixture-of-experts feed-forward for Mixtral-style configs.

The MoE must export with static shapes, so it routes by expert choice (Zhou et al. 2022,
"Mixture-of-Experts with Expert Choice Routing"): each expert takes its C = tokens x top_k /
experts best tokens, exactly the balanced routing the LLM builder assumes. The experts run as
one batched matmul over stacked weights (E, in, out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chipforge.workload.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # rotate_half (RoFormer)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.heads, self.kv_heads, self.d = c.heads, c.n_kv_heads, c.d_head
        self.wq = nn.Linear(c.hidden, c.heads * c.d_head, bias=False)
        self.wk = nn.Linear(c.hidden, c.n_kv_heads * c.d_head, bias=False)
        self.wv = nn.Linear(c.hidden, c.n_kv_heads * c.d_head, bias=False)
        self.wo = nn.Linear(c.heads * c.d_head, c.hidden, bias=False)
        inv = 1.0 / 10000 ** (torch.arange(0, c.d_head, 2).float() / c.d_head)
        angles = torch.outer(torch.arange(c.seq).float(), inv).repeat(1, 2)  # (T, hs)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.heads, self.d).transpose(1, 2)  # (B, nh, T, hs)
        k = self.wk(x).view(b, t, self.kv_heads, self.d).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.wv(x).view(b, t, self.kv_heads, self.d).transpose(1, 2)
        cos, sin = self.cos[:t], self.sin[:t]
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.wo(y.transpose(1, 2).reshape(b, t, self.heads * self.d))


class FeedForward(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(c.hidden, c.ffn, bias=False)  # gate
        self.w3 = nn.Linear(c.hidden, c.ffn, bias=False)  # up
        self.w2 = nn.Linear(c.ffn, c.hidden, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # SwiGLU (Shazeer 2020)


class MoE(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        e, h, f = c.experts, c.hidden, c.expert_ffn
        self.experts, self.top_k = e, c.top_k
        self.gate = nn.Linear(h, e, bias=False)  # the router
        self.w1 = nn.Parameter(torch.randn(e, h, f) * h**-0.5)
        self.w3 = nn.Parameter(torch.randn(e, h, f) * h**-0.5)
        self.w2 = nn.Parameter(torch.randn(e, f, h) * f**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        tokens = x.reshape(b * t, h)  # (N, C)
        scores = F.softmax(self.gate(tokens), dim=-1)  # (N, E)
        capacity = b * t * self.top_k // self.experts
        weight, index = torch.topk(scores.t(), capacity, dim=-1)  # (E, cap): each expert picks
        xe = tokens[index]  # (E, cap, C)
        ye = torch.bmm(F.silu(torch.bmm(xe, self.w1)) * torch.bmm(xe, self.w3), self.w2)
        ye = ye * weight.unsqueeze(-1)
        out = torch.zeros_like(tokens).index_add(0, index.reshape(-1), ye.reshape(-1, h))
        return out.view(b, t, h)


class Block(nn.Module):
    def __init__(self, c: ModelConfig, *, moe: bool):
        super().__init__()
        self.attention_norm, self.attention = RMSNorm(c.hidden), Attention(c)
        self.ffn_norm = RMSNorm(c.hidden)
        self.feed_forward = MoE(c) if moe else FeedForward(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    """Token ids (B, T) -> every position's logits (a prefill step, as `llm.build` costs it by
    default and as transformers' `model(input_ids)` computes)."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(c.vocab, c.hidden)
        moe = [c.is_moe and i >= c.dense_layers for i in range(c.layers)]
        self.layers = nn.ModuleList(Block(c, moe=m) for m in moe)
        self.norm = RMSNorm(c.hidden)
        self.output = nn.Linear(c.hidden, c.vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok_embeddings(idx)
        for layer in self.layers:
            x = layer(x)
        return self.output(self.norm(x))


def build(c: ModelConfig, *, batch: int, seq: int, device: str = "meta"):
    with torch.device(device):
        module = Llama(c).eval()
    return module, (torch.zeros(batch, seq, dtype=torch.long, device=device),)
