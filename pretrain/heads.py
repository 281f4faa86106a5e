"""DINO projection head: MLP, L2-normalised bottleneck, weight-normalised prototype layer.

"Emerging Properties in Self-Supervised Vision Transformers" (DINO, Caron et al., 2021); the
prototype layer is weight normalisation ("Weight Normalization", Salimans & Kingma, 2016) with the
norm fixed to 1, as DINO's `norm_last_layer=True`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NormalizedLinear(nn.Module):
    """Linear layer without bias whose weight rows are unit vectors (weight norm with g = 1)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.normalize(self.weight, p=2, dim=1))


class DINOHead(nn.Module):
    """(N, in_dim) features -> (N, out_dim) prototype logits."""

    def __init__(self, in_dim: int, out_dim: int = 1024, hidden_dim: int = 512, bottleneck_dim: int = 128,
                 layers: int = 3):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (max(1, layers) - 1) + [bottleneck_dim]
        blocks: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            blocks.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                blocks.append(nn.GELU())
        self.mlp = nn.Sequential(*blocks)
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = NormalizedLinear(bottleneck_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)
        x = F.normalize(x, p=2, dim=-1, eps=1e-6 if x.dtype != torch.float32 else 1e-12)
        return self.last_layer(x)
