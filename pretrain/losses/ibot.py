"""iBOT masked-patch self-distillation loss.

"iBOT: Image BERT Pre-Training with Online Tokenizer" (Zhou et al., 2022), in the form used by
DINOv2: the student sees masked global views and predicts the teacher's prototype distribution of
each masked patch; every image weighs 1 regardless of how many of its patches are masked.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from segloop.pretrain.losses.dino import CenteredTeacherLoss


class IBOTPatchLoss(CenteredTeacherLoss):
    """Cross-entropy of teacher vs student prototype distributions on masked patches."""

    def forward(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Loss for masked patches; logits/probs are (M, K) rows of masks (B, ...) True entries, in order."""
        if student_logits.shape[0] == 0:
            return student_logits.new_zeros((), dtype=torch.float32)
        flat = masks.flatten(1)
        per_patch = -(teacher_probs * F.log_softmax(student_logits.float() / self.student_temp, dim=-1)).sum(-1)
        weights = (1.0 / flat.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(flat)[flat]
        return (per_patch * weights).sum() / flat.shape[0]
