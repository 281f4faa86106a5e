"""KoLeo regulariser: spreads features uniformly by penalising small nearest-neighbour distances.

"Spreading vectors for similarity search" (Sablayrolles et al., 2019), the Kozachenko-Leonenko
differential entropy estimator, as used on CLS features by DINOv2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    """-mean log(distance to the nearest other sample) of L2-normalised features."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Loss for (N, C) features, N >= 2."""
        if features.shape[0] < 2:
            return features.new_zeros((), dtype=torch.float32)
        x = F.normalize(features.float(), p=2, dim=-1, eps=self.eps)
        with torch.no_grad():
            dots = x @ x.t()
            dots.fill_diagonal_(-2.0)
            nearest = dots.argmax(dim=1)
        distances = (x - x[nearest]).norm(dim=-1)
        return -torch.log(distances + self.eps).mean()
