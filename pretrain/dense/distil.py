"""One-pass distillation of the dense encoder's dropped-channel views (the last phase of `segloop pretrain`).

Trained with one Lab channel zeroed in every input, the encoder never sees a full-colour frame; the
normalised mean of its three one-channel-dropped views' features propagates labels better than its
full-colour features but costs three passes. A copy of the encoder (the student) learns, on full-colour
crops, to output that mean in one pass: the teacher is frozen, the student's batch-norm statistics stay
those of the teacher, and the loss is the mean cosine distance per feature cell. Pulling the full-colour
features towards the dropped views inside the reconstruction objective, with shared weights, instead made
the views alike and the features worse (see `DenseConfig`).
"""
from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from segloop.pretrain.dense.encoder import DenseEncoder


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
