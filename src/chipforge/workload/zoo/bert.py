"""BERT (Devlin et al. 2019) encoders as PyTorch modules, random weights: word, position and
token-type embeddings, post-norm blocks with bidirectional attention, GELU. chipforge's
`ModelConfig` describes decoders only (causal attention), so BERT goes through the torch path.

Sizes from Devlin et al. 2019 (Sec. 3: BERT-base L=12, H=768, A=12, 110M; BERT-large L=24,
H=1024, A=16, 340M) and the bert-base-uncased / bert-large-uncased config.json (intermediate
size 4H, vocabulary 30522, 512 positions, 2 token types).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BertConfig:
    layers: int
    hidden: int
    heads: int
    ffn: int
    vocab: int = 30522
    positions: int = 512
    token_types: int = 2


CONFIGS = {
    "bert-base": BertConfig(layers=12, hidden=768, heads=12, ffn=3072),
    "bert-large": BertConfig(layers=24, hidden=1024, heads=16, ffn=4096),
}


class Layer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads = c.heads
        self.query, self.key = nn.Linear(c.hidden, c.hidden), nn.Linear(c.hidden, c.hidden)
        self.value, self.attn_out = nn.Linear(c.hidden, c.hidden), nn.Linear(c.hidden, c.hidden)
        self.attn_norm = nn.LayerNorm(c.hidden, eps=1e-12)
        self.intermediate, self.output = nn.Linear(c.hidden, c.ffn), nn.Linear(c.ffn, c.hidden)
        self.out_norm = nn.LayerNorm(c.hidden, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = (
            lin(x).view(b, t, self.heads, h // self.heads).transpose(1, 2)  # (B, nh, T, hs)
            for lin in (self.query, self.key, self.value)
        )
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, h)
        x = self.attn_norm(x + self.attn_out(y))  # post-norm (Vaswani et al. 2017)
        return self.out_norm(x + self.output(F.gelu(self.intermediate(x))))


class Bert(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab, c.hidden)
        self.position_embeddings = nn.Embedding(c.positions, c.hidden)
        self.token_type_embeddings = nn.Embedding(c.token_types, c.hidden)
        self.embed_norm = nn.LayerNorm(c.hidden, eps=1e-12)
        self.layer = nn.ModuleList(Layer(c) for _ in range(c.layers))

    def forward(self, ids: torch.Tensor, token_types: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)
        x = self.embed_norm(x + self.token_type_embeddings(token_types))
        for layer in self.layer:
            x = layer(x)
        return x


def build(name: str, *, batch: int, seq: int, device: str = "meta"):
    with torch.device(device):
        module = Bert(CONFIGS[name]).eval()
    ids = torch.zeros(batch, seq, dtype=torch.long, device=device)
    return module, (ids, torch.zeros_like(ids))
