"""Per-step schedules shared by every training loop: cosine with linear warm-up (SGDR, Loshchilov & Hutter 2017)."""
from __future__ import annotations

import math


def cosine(step: int, total: int, start: float, end: float, warmup: int = 0, warmup_start: float = 0.0) -> float:
    """Value at `step`: linear warmup_start -> start over `warmup` steps, then cosine start -> end at `total`."""
    if step < warmup:
        return warmup_start + (start - warmup_start) * step / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))
