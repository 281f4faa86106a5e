"""DINO self-distillation loss on CLS prototypes with teacher centring or Sinkhorn-Knopp.

"Emerging Properties in Self-Supervised Vision Transformers" (DINO, Caron et al., 2021) and
"DINOv2: Learning Robust Visual Features without Supervision" (Oquab et al., 2023) for the
Sinkhorn-Knopp teacher normalisation (from SwAV, Caron et al., 2020).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segloop.pretrain import dist


def centered_softmax(teacher_logits: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """Teacher probabilities: softmax((logits - center) / temperature) over the prototypes."""
    return F.softmax((teacher_logits.float() - center) / temperature, dim=-1)


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, temperature: float, iterations: int = 3,
                   num_rows: torch.Tensor | None = None) -> torch.Tensor:
    """Teacher probabilities whose prototype marginals are equalised across the (global) batch."""
    logits = teacher_logits.float() / temperature
    peak = logits.max().detach().clone()
    dist.all_reduce(peak, op="max")
    q = torch.exp(logits - peak).t()  # prototypes x rows
    rows = torch.tensor(float(q.shape[1]), device=q.device) if num_rows is None else num_rows.float().clone()
    if num_rows is None:
        dist.all_reduce(rows)
    prototypes = q.shape[0]
    total = q.sum()
    dist.all_reduce(total)
    q /= total
    for _ in range(iterations):
        row_sums = q.sum(dim=1, keepdim=True)
        dist.all_reduce(row_sums)
        q /= row_sums.clamp_min(1e-30)
        q /= prototypes
        q /= q.sum(dim=0, keepdim=True).clamp_min(1e-30)
        q /= rows
    q *= rows
    return q.t()


class CenteredTeacherLoss(nn.Module):
    """Shared part of the DINO and iBOT losses: teacher targets by centring or Sinkhorn-Knopp, and the centre EMA."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_logits: torch.Tensor, temperature: float, method: str) -> torch.Tensor:
        """Teacher targets (rows of teacher_logits) by centring (DINO) or Sinkhorn-Knopp (DINOv2)."""
        if method == "sinkhorn_knopp":
            return sinkhorn_knopp(teacher_logits, temperature)
        return centered_softmax(teacher_logits, self.center, temperature)

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA of the mean teacher logit over the rows of the global batch (no-op without rows)."""
        batch_sum = teacher_logits.float().sum(dim=0, keepdim=True)
        count = torch.tensor(float(teacher_logits.shape[0]), device=teacher_logits.device)
        dist.all_reduce(batch_sum)
        dist.all_reduce(count)
        if count.item() > 0:
            self.center.mul_(self.center_momentum).add_(batch_sum / count, alpha=1 - self.center_momentum)


class DINOLoss(CenteredTeacherLoss):
    """Cross-entropy of teacher probabilities of each global view vs student log-probabilities of the other views."""

    def forward(self, student_logits: list[torch.Tensor], teacher_probs: list[torch.Tensor],
                skip_same_index: bool = True) -> torch.Tensor:
        """Mean over (student view, teacher view) pairs, skipping a global view against itself."""
        total = student_logits[0].new_zeros((), dtype=torch.float32)
        pairs = 0
        for s_index, student in enumerate(student_logits):
            log_probs = F.log_softmax(student.float() / self.student_temp, dim=-1)
            for t_index, teacher in enumerate(teacher_probs):
                if skip_same_index and s_index == t_index:
                    continue
                total = total - (teacher * log_probs).sum(dim=-1).mean()
                pairs += 1
        return total / max(1, pairs)
