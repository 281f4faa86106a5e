"""MAST-style self-supervised objective: reconstruct a frame's Lab colour from a reference frame of
the same video through the local affinity of the encoder's features (Lai et al., "MAST", 2020).

The encoder sees Lab frames with one channel dropped at random (colour dropout, so that colour
copying alone does not solve the task); the values are the reference frame's full Lab cells and the
loss is the Huber (smooth-L1) error of the reconstructed target cells, both directions of the pair.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from segloop.pretrain.dense.colour import lab_cells
from segloop.pretrain.dense.local_attention import local_attention


def channel_dropout(lab: torch.Tensor, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lab frames with, per frame and with `probability`, one random channel set to 0."""
    if probability <= 0:
        return lab
    batch = lab.shape[0]
    drop = torch.rand(batch, generator=generator, device=lab.device) < probability
    channel = torch.randint(0, 3, (batch,), generator=generator, device=lab.device)
    keep = torch.ones(batch, 3, device=lab.device, dtype=lab.dtype)
    keep[drop, channel[drop]] = 0.0
    return lab * keep.view(batch, 3, 1, 1)


def reconstruct(query: torch.Tensor, key: torch.Tensor, reference_values: torch.Tensor, radius: int,
                temperature: float) -> torch.Tensor:
    """Target-frame values predicted from the reference values via the unit-norm feature affinity."""
    return local_attention(F.normalize(query, dim=1), F.normalize(key, dim=1), reference_values, radius, temperature)


def reconstruction_loss(target_features: torch.Tensor, reference_features: torch.Tensor, target_values: torch.Tensor,
                        reference_values: torch.Tensor, radius: int, temperature: float) -> torch.Tensor:
    """Huber error of the target's values reconstructed from the reference's through the affinity."""
    predicted = reconstruct(target_features, reference_features, reference_values, radius, temperature)
    return F.smooth_l1_loss(predicted, target_values, beta=0.1)


def pair_loss(encoder: torch.nn.Module, pair_lab: torch.Tensor, radius: int, temperature: float,
              dropout: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Symmetric reconstruction loss of (B, 2, 3, H, W) Lab frame pairs under colour dropout."""
    batch = pair_lab.shape[0]
    frames = pair_lab.flatten(0, 1)
    features = encoder(channel_dropout(frames, dropout, generator)).unflatten(0, (batch, 2))
    values = lab_cells(frames, encoder.stride, 2).unflatten(0, (batch, 2))
    forward = reconstruction_loss(features[:, 1], features[:, 0], values[:, 1], values[:, 0], radius, temperature)
    backward = reconstruction_loss(features[:, 0], features[:, 1], values[:, 0], values[:, 1], radius, temperature)
    return 0.5 * (forward + backward)
