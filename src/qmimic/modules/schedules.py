"""Learning-rate schedules that need the run length, built from torch's own schedulers."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def warmup_cosine(
    optimizer: Optimizer,
    *,
    total_steps: int,
    warmup_steps: int = 200,
    warmup_factor: float = 0.01,
    min_factor: float = 0.01,
) -> LRScheduler:
    """Linear warm-up from ``warmup_factor * lr`` over ``warmup_steps``, then cosine decay to
    ``min_factor * lr`` at ``total_steps``. Stepped once per optimizer step."""
    warmup_steps = max(1, min(warmup_steps, total_steps // 2))
    base_lr = optimizer.param_groups[0]["lr"]
    return SequentialLR(
        optimizer,
        [
            LinearLR(optimizer, start_factor=warmup_factor, total_iters=warmup_steps),
            CosineAnnealingLR(
                optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=base_lr * min_factor
            ),
        ],
        milestones=[warmup_steps],
    )
