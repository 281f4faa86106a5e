"""Per-step schedules: cosine learning rate with linear warm-up, cosine weight decay, cosine teacher
momentum (0.992 -> 1 in DINO), linear teacher-temperature warm-up.

From "SGDR: Stochastic Gradient Descent with Warm Restarts" (Loshchilov & Hutter, 2017) for the
cosine shape and DINO (Caron et al., 2021) for the momentum / temperature schedules.
"""
from __future__ import annotations

from dataclasses import dataclass

from segloop.platform.core.schedules import cosine
from segloop.pretrain.config import PretrainConfig


def linear_warmup(step: int, warmup: int, start: float, end: float) -> float:
    """Linear start -> end over `warmup` steps, then constant end."""
    if warmup <= 0 or step >= warmup:
        return end
    return start + (end - start) * step / warmup


PROGRESS_STEPS = 10_000  # resolution of the schedules when they follow the fraction of a time budget


@dataclass(frozen=True)
class StepValues:
    """Every scheduled value at one step."""

    lr: float
    weight_decay: float
    momentum: float
    teacher_temp: float
    last_layer_lr_scale: float


@dataclass(frozen=True)
class Schedules:
    """The schedules of a run, a pure function of the config (so resume needs only the step)."""

    config: PretrainConfig

    def at(self, step: int, progress: float | None = None) -> StepValues:
        """Scheduled values at a step, or at a fraction `progress` in [0, 1] of a time-budgeted run."""
        optim, loss, total = self.config.optim, self.config.loss, self.config.run.steps
        if progress is not None:
            total, step = PROGRESS_STEPS, int(round(min(max(progress, 0.0), 1.0) * PROGRESS_STEPS))
        warmup = int(round(optim.warmup_fraction * total))
        temp_warmup = int(round(loss.warmup_teacher_temp_fraction * total))
        return StepValues(
            lr=cosine(step, total, optim.lr, optim.min_lr, warmup),
            weight_decay=cosine(step, total, optim.weight_decay, optim.weight_decay_end),
            momentum=cosine(step, total, optim.momentum_teacher, optim.momentum_teacher_end),
            teacher_temp=linear_warmup(step, temp_warmup, loss.warmup_teacher_temp, loss.teacher_temp),
            last_layer_lr_scale=0.0 if step < optim.freeze_last_layer_steps else 1.0,
        )
