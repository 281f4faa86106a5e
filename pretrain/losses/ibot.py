"""iBOT masked-patch self-distillation loss.

"iBOT: Image BERT Pre-Training with Online Tokenizer" (Zhou et al., 2022), in the form used by
DINOv2: the student sees masked global views and predicts the teacher's prototype distribution of
each masked patch; every image weighs 1 regardless of how many of its patches are masked.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segloop.pretrain import dist
from segloop.pretrain.losses.dino import centered_softmax, sinkhorn_knopp


class IBOTPatchLoss(nn.Module):
    """Cross-entropy of teacher vs student prototype distributions on masked patches."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_logits: torch.Tensor, temperature: float, method: str) -> torch.Tensor:
        """Teacher targets for the masked patches (rows of teacher_logits)."""
        if method == "sinkhorn_knopp":
            return sinkhorn_knopp(teacher_logits, temperature)
        return centered_softmax(teacher_logits, self.center, temperature)

    def forward(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Loss for masked patches; logits/probs are (M, K) rows of masks (B, ...) True entries, in order."""
        if student_logits.shape[0] == 0:
            return student_logits.new_zeros((), dtype=torch.float32)
        flat = masks.flatten(1)
        per_patch = -(teacher_probs * F.log_softmax(student_logits.float() / self.student_temp, dim=-1)).sum(-1)
        weights = (1.0 / flat.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(flat)[flat]
        return (per_patch * weights).sum() / flat.shape[0]

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA of the mean teacher logit over masked patches of the global batch."""
        batch_sum = teacher_logits.float().sum(dim=0, keepdim=True)
        count = torch.tensor(float(teacher_logits.shape[0]), device=teacher_logits.device)
        dist.all_reduce(batch_sum)
        dist.all_reduce(count)
        if count.item() > 0:
            self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)
