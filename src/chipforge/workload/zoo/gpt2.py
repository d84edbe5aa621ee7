"""GPT-2 (Radford et al. 2019) as a PyTorch module, for the torch.export path.

nanoGPT's layout (Karpathy) with HuggingFace's module names (wte, wpe, h.N.attn.c_attn, ...),
so imported op names match the checkpoints people know. Shapes come from a `ModelConfig`
(the gpt2* presets in models.toml); weights are random (or absent on the meta device).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chipforge.workload.config import ModelConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.heads = c.heads
        self.c_attn = nn.Linear(c.hidden, 3 * c.hidden)  # q, k, v in one matmul
        self.c_proj = nn.Linear(c.hidden, c.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.c_attn(x).split(h, dim=2)
        q, k, v = (z.view(b, t, self.heads, h // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, h))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.hidden, c.ffn)
        self.c_proj = nn.Linear(c.ffn, c.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))  # GPT-2's gelu_new


class Block(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(c.hidden), CausalSelfAttention(c)
        self.ln_2, self.mlp = nn.LayerNorm(c.hidden), MLP(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # pre-norm residual (GPT-2, Sec. 2.3)
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """Token ids (B, T) -> logits of every position (as `llm.build` costs a prefill by
    default); `last_only`: the last position's only (`logits=last`, what a serving engine
    samples)."""

    def __init__(self, c: ModelConfig, *, last_only: bool = False):
        super().__init__()
        self.last_only = last_only
        self.wte, self.wpe = nn.Embedding(c.vocab, c.hidden), nn.Embedding(c.seq, c.hidden)
        self.h = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(c.hidden)
        self.lm_head = nn.Linear(c.hidden, c.vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied embeddings

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(positions)  # (B, T, C)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x[:, -1:] if self.last_only else x))


def build(c: ModelConfig, *, batch: int, seq: int, device: str = "meta"):
    """The module and its example input: `batch` sequences of `seq` token ids."""
    with torch.device(device):
        module = GPT2(c).eval()
    return module, (torch.zeros(batch, seq, dtype=torch.long, device=device),)
