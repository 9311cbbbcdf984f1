"""Learning-rate schedules for stages that set their optimiser's rate per step themselves.

A schedule is a pure function of the global step, so a run resumed mid-stage (``StagedTrainer``)
continues on the same curve without any scheduler state in the checkpoint."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float = 0.0) -> float:
    """Linear warmup from 0 over ``warmup_steps``, then a half cosine from ``base_lr`` to ``min_lr``
    at ``total_steps`` (HeLLM's and LLaMA-Adapter's per-step schedule)."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
