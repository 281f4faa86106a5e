"""One-pass distillation of the dense encoder's dropped-channel views (the last phase of `segloop pretrain`).

Trained with one Lab channel zeroed in every input, the encoder never sees a full-colour frame; the
normalised mean of its three one-channel-dropped views' features propagates labels better than its
full-colour features but costs three passes. A copy of the encoder (the student) learns, on full-colour
crops, to match that mean in one pass: the teacher is frozen and the student's batch-norm statistics stay
those of the teacher. The target is either the teacher's windowed affinity between two frames of one
video (KL per query cell: what propagation reads; the default) or its features (cosine distance per
cell). Pulling the full-colour features towards the dropped views inside the reconstruction objective,
with shared weights, instead made the views alike and the features worse (see `DenseConfig`).
"""
from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from segloop.pretrain.dense.encoder import DenseEncoder
from segloop.pretrain.dense.local_attention import local_affinity_kl


def full_colour_student(teacher: DenseEncoder) -> DenseEncoder:
    """A trainable copy of `teacher` that reads full-colour input in one pass (batch norm frozen in eval mode)."""
    student = copy.deepcopy(teacher)
    student.config = dataclasses.replace(teacher.config, dropout_views=False)
    return student.eval()


def cosine_distance(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over cells of 1 - cos(features, target) on (B, C, H, W) maps; no gradient reaches `target`."""
    target = F.normalize(target.detach(), dim=1)
    return (1.0 - (F.normalize(features, dim=1) * target).sum(dim=1)).mean()


def distil_loss(student: DenseEncoder, teacher: DenseEncoder, lab: torch.Tensor) -> torch.Tensor:
    """Cosine distance of the student's full-colour features to the teacher's three dropped-view mean."""
    with torch.no_grad():
        target = teacher.dropout_view_features(lab)
    return cosine_distance(student(lab), target)


def affinity_distil_loss(student: DenseEncoder, teacher: DenseEncoder, group_lab: torch.Tensor, radius: int,
                         temperature: float) -> torch.Tensor:
    """KL from the teacher's three-view windowed affinity to the student's full-colour one, each frame of a
    (B, T >= 2, 3, H, W) group of one video attending to the next frame of its group."""
    if group_lab.dim() != 5 or group_lab.shape[1] < 2:
        raise ValueError(f"affinity distillation needs (B, T >= 2, 3, H, W) frame groups, got {tuple(group_lab.shape)}")
    batch, count = group_lab.shape[:2]
    frames = group_lab.flatten(0, 1)
    with torch.no_grad():
        target = teacher.dropout_view_features(frames).unflatten(0, (batch, count))
    features = F.normalize(student(frames), dim=1).unflatten(0, (batch, count))
    following_target, following_features = target.roll(-1, dims=1), features.roll(-1, dims=1)
    return local_affinity_kl(target.flatten(0, 1), following_target.flatten(0, 1), features.flatten(0, 1),
                             following_features.flatten(0, 1), radius, temperature)
