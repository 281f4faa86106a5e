"""Contrastive random walk on patch tokens across a clip, trained by palindrome cycle-consistency.

"Space-Time Correspondence as a Contrastive Random Walk" (Jabri, Owens & Efros, NeurIPS 2020):
patches of consecutive frames are graph nodes, transition probabilities are a softmax of feature
similarities, and a walk t -> t+1 -> ... -> t+k -> ... -> t must return to its starting patch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def transition(affinity: torch.Tensor, temperature: float, edge_dropout: float = 0.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Row-stochastic transition matrix softmax(affinity / temperature), edges dropped at random."""
    logits = affinity / temperature
    if edge_dropout > 0:
        drop = torch.rand(logits.shape, generator=generator, device=logits.device) < edge_dropout
        logits = logits.masked_fill(drop, -1e20)
    return F.softmax(logits, dim=-1)


def random_walk_loss(features: torch.Tensor, temperature: float = 0.07, edge_dropout: float = 0.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean cycle loss over palindromes of every length k = 1..T-1 for (B, T, N, C) patch features."""
    if features.shape[1] < 2:
        raise ValueError(f"random walk needs a clip of at least 2 frames, got {features.shape[1]}")
    x = F.normalize(features.float(), p=2, dim=-1)
    batch, frames, nodes, _ = x.shape
    affinities = [x[:, t] @ x[:, t + 1].transpose(1, 2) for t in range(frames - 1)]
    forward = [transition(a, temperature, edge_dropout, generator) for a in affinities]
    backward = [transition(a.transpose(1, 2), temperature, edge_dropout, generator) for a in affinities]
    target = torch.arange(nodes, device=x.device).repeat(batch)
    losses = []
    walk = None
    for k in range(frames - 1):
        walk = forward[k] if walk is None else walk @ forward[k]
        cycle = walk
        for back in reversed(backward[:k + 1]):
            cycle = cycle @ back
        log_probs = torch.log(cycle.clamp_min(1e-20)).reshape(batch * nodes, nodes)
        losses.append(F.nll_loss(log_probs, target))
    return torch.stack(losses).mean()
