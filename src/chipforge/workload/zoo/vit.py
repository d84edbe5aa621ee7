"""ViT-B/16 (Dosovitskiy et al. 2021, Table 1: 12 layers, hidden 768, MLP 3072, 12 heads,
86M parameters) as a PyTorch module, random weights. timm lists vit_base_patch16_224 at
17.6 GMACs per 224x224 image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ViTConfig:
    layers: int = 12
    hidden: int = 768
    heads: int = 12
    mlp: int = 3072
    patch: int = 16
    classes: int = 1000


class EncoderBlock(nn.Module):
    def __init__(self, c: ViTConfig):
        super().__init__()
        self.heads = c.heads
        self.ln_1, self.ln_2 = nn.LayerNorm(c.hidden), nn.LayerNorm(c.hidden)
        self.qkv, self.proj = nn.Linear(c.hidden, 3 * c.hidden), nn.Linear(c.hidden, c.hidden)
        self.fc1, self.fc2 = nn.Linear(c.hidden, c.mlp), nn.Linear(c.mlp, c.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(h, dim=2)
        q, k, v = (z.view(b, t, self.heads, h // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)  # bidirectional, (B, nh, T, hs)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, h))
        return x + self.fc2(F.gelu(self.fc1(self.ln_2(x))))


class ViT(nn.Module):
    def __init__(self, c: ViTConfig, image: int):
        super().__init__()
        tokens = (image // c.patch) ** 2 + 1  # patches and the class token
        self.patch_embed = nn.Conv2d(3, c.hidden, c.patch, stride=c.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, c.hidden))
        self.blocks = nn.ModuleList(EncoderBlock(c) for _ in range(c.layers))
        self.norm, self.head = nn.LayerNorm(c.hidden), nn.Linear(c.hidden, c.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, C)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def build(*, batch: int, image: int = 224, device: str = "meta", config: ViTConfig | None = None):
    with torch.device(device):
        module = ViT(config or ViTConfig(), image).eval()
    return module, (torch.zeros(batch, 3, image, image, device=device),)
