"""MAST-style self-supervised objective: reconstruct a frame's Lab colour from reference frames of
the same video through the local affinity of the encoder's features (Lai et al., "MAST", 2020).

The encoder sees Lab frames with one channel dropped at random (colour dropout, so that colour
copying alone does not solve the task); the values are the reference frames' full Lab cells and the
loss is the Huber (smooth-L1) error of the reconstructed cells, each frame of a group in turn.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from segloop.pretrain.config import DenseConfig
from segloop.pretrain.dense.colour import lab_cells
from segloop.pretrain.dense.local_attention import local_attention
from segloop.pretrain.losses.random_walk import random_walk_loss


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


def photometric_jitter(lab: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lab frames with, per frame, lightness gain/offset and chroma gain drawn within ±`strength`."""
    if strength <= 0:
        return lab
    batch = lab.shape[0]
    draws = (torch.rand(batch, 3, generator=generator, device=lab.device) * 2 - 1) * strength
    gain, offset, chroma = (1 + draws[:, 0]), 0.5 * draws[:, 1], (1 + draws[:, 2])
    lightness = lab[:, :1] * gain.view(batch, 1, 1, 1) + offset.view(batch, 1, 1, 1)
    return torch.cat([lightness, lab[:, 1:] * chroma.view(batch, 1, 1, 1)], dim=1)


def reconstruct(query: torch.Tensor, key: torch.Tensor, reference_values: torch.Tensor, radius: int,
                temperature: float) -> torch.Tensor:
    """Target-frame values predicted from the reference values via the unit-norm feature affinity."""
    key = F.normalize(key, dim=-3)
    return local_attention(F.normalize(query, dim=1), key, reference_values, radius, temperature)


def reconstruction_loss(target_features: torch.Tensor, reference_features: torch.Tensor, target_values: torch.Tensor,
                        reference_values: torch.Tensor, radius: int, temperature: float) -> torch.Tensor:
    """Huber error of the target's values reconstructed from the reference's through the affinity."""
    predicted = reconstruct(target_features, reference_features, reference_values, radius, temperature)
    return F.smooth_l1_loss(predicted, target_values, beta=0.1)


def frame_group_loss(encoder: torch.nn.Module, group_lab: torch.Tensor, dense: DenseConfig,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Reconstruction loss of (B, T, 3, H, W) Lab frames of one video, each rebuilt from the other T - 1.

    T = 2 is the symmetric pair loss; with T > 2 one softmax spans the windows of every reference frame.
    The encoder's input is jittered by `dense.photometric` and channel-dropped by `dense.channel_dropout`;
    `dense.cycle_weight` > 0 adds that multiple of the contrastive random walk's palindrome loss over the T
    frames' feature cells (Jabri et al., 2020); `dense.shift_weight` > 0 adds that multiple of `shift_loss` on
    every frame (windows up to `shift_cells` cells apart, each view jittered by `shift_photometric`).
    """
    batch, count = group_lab.shape[:2]
    frames = group_lab.flatten(0, 1)
    radius, temperature, dropout = dense.radius, dense.temperature, dense.channel_dropout
    inputs = channel_dropout(photometric_jitter(frames, dense.photometric, generator), dropout, generator)
    features = encoder(inputs).unflatten(0, (batch, count))
    values = lab_cells(frames, encoder.stride, 2).unflatten(0, (batch, count))
    losses = []
    for target in range(count):
        others = [index for index in range(count) if index != target]
        losses.append(reconstruction_loss(features[:, target], features[:, others], values[:, target],
                                          values[:, others], radius, temperature))
    loss = torch.stack(losses).mean()
    if dense.cycle_weight > 0:
        cells = features.flatten(3).transpose(2, 3)
        loss = loss + dense.cycle_weight * random_walk_loss(cells, edge_dropout=0.1, generator=generator)
    if dense.shift_weight > 0:
        loss = loss + dense.shift_weight * shift_loss(encoder, frames, dense.shift_cells, radius, temperature,
                                                      dropout, dense.shift_photometric, generator)
    return loss


def shifted_views(lab: torch.Tensor, stride: int, max_cells: int,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Two windows of the same frames, cut `max_cells` cells smaller and offset by whole cells; (dy, dx) of b in a."""
    height, width = lab.shape[-2:]
    if max_cells < 1 or height // stride <= max_cells or width // stride <= max_cells:
        raise ValueError(f"shifted_views: a shift of {max_cells} cells does not fit frames of {height}x{width} px "
                         f"at stride {stride}")
    starts = torch.randint(0, max_cells + 1, (4,), generator=generator).tolist()
    size_h, size_w = height - max_cells * stride, width - max_cells * stride
    ya, xa, yb, xb = (s * stride for s in starts)
    view_a = lab[..., ya:ya + size_h, xa:xa + size_w]
    view_b = lab[..., yb:yb + size_h, xb:xb + size_w]
    return view_a, view_b, (starts[2] - starts[0], starts[3] - starts[1])


def shift_correspondence_loss(features_a: torch.Tensor, features_b: torch.Tensor, shift: tuple[int, int],
                              radius: int, temperature: float) -> torch.Tensor:
    """Cross-entropy of each b cell's windowed affinity to a against its true cell, b = a shifted by (dy, dx) cells.

    Cells whose true match falls outside a or outside the window do not count; with none left the loss is 0.
    """
    batch, _, height, width = features_a.shape
    dy, dx = shift
    rows = torch.arange(height, device=features_a.device)[:, None] + dy
    cols = torch.arange(width, device=features_a.device)[None, :] + dx
    valid = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    if max(abs(dy), abs(dx)) > radius or not bool(valid.any()):
        return features_a.sum() * 0.0
    cells = height * width
    identity = torch.eye(cells, dtype=features_a.dtype, device=features_a.device)
    identity = identity.view(1, 1, cells, height, width).expand(batch, 1, cells, height, width)
    mass = local_attention(F.normalize(features_b, dim=1), F.normalize(features_a, dim=1)[:, None], identity,
                           radius, temperature)
    target = (rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)).expand(height, width)
    picked = mass.gather(1, target.reshape(1, 1, height, width).expand(batch, 1, height, width))[:, 0]
    return -torch.log(picked.clamp_min(1e-8))[:, valid].mean()


def shift_loss(encoder: torch.nn.Module, frames: torch.Tensor, max_cells: int, radius: int, temperature: float,
               dropout: float, photometric: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Synthetic-correspondence loss on (N, 3, H, W) Lab frames: two independently augmented, cell-shifted windows."""
    view_a, view_b, shift = shifted_views(frames, encoder.stride, max_cells, generator)
    views = torch.cat([view_a, view_b])
    inputs = channel_dropout(photometric_jitter(views, photometric, generator), dropout, generator)
    features_a, features_b = encoder(inputs).chunk(2)
    return shift_correspondence_loss(features_a, features_b, shift, radius, temperature)
