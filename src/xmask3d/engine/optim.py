"""AdamW with two learning rates and a per-step cosine schedule with optional linear warm-up.

Follows XMask3D training (method.md §6): AdamW, lr 1e-3 for the 3D networks and 1e-4 for the
rest, cosine decay to 0 over all iterations, stepped every iteration. Warm-up is our addition
(0 steps reproduces the published schedule).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from xmask3d.errors import ConfigError

__all__ = ["WarmupCosine", "build_optimizer", "build_scheduler"]


class WarmupCosine:
    """Learning-rate factor: linear warm-up from 1/warmup to 1, then cosine decay to 0.

    ``factor(s) = (s + 1) / warmup`` for ``s < warmup``, else
    ``0.5 * (1 + cos(pi * (s - warmup) / (total - warmup)))`` (0 from ``total`` on).

    Args:
        total_steps: optimiser steps of the whole schedule.
        warmup_steps: steps of linear warm-up (0 = none, the published schedule).
    """

    def __init__(self, total_steps: int, *, warmup_steps: int = 0) -> None:
        if total_steps < 1 or warmup_steps < 0:
            raise ConfigError(f"schedule needs total_steps >= 1 and warmup_steps >= 0, got "
                              f"{total_steps} and {warmup_steps}")
        self.total_steps = int(total_steps)
        self.warmup_steps = min(int(warmup_steps), self.total_steps - 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = self.total_steps - self.warmup_steps
        progress = min((step - self.warmup_steps) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(param_groups: list[dict], *, betas: tuple[float, float] = (0.9, 0.999),
                    eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over the given parameter groups (each with its own ``lr`` and ``weight_decay``).

    Empty groups are dropped (e.g. no trainable parameter outside the 3D networks).
    """
    groups = [g for g in param_groups if len(list(g["params"])) > 0]
    if not groups:
        raise ConfigError("the model has no trainable parameter")
    return torch.optim.AdamW(groups, betas=betas, eps=eps)


def build_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int,
                    last_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step :class:`WarmupCosine` schedule on every parameter group.

    Args:
        optimizer: its groups' ``lr`` are the base rates (``initial_lr`` once a schedule ran).
        total_steps, warmup_steps: see :class:`WarmupCosine`.
        last_step: optimiser steps already taken (resume): the groups get the rate of the next
            step; requires ``initial_lr`` in every group (restored with the optimiser state).
    """
    fn = WarmupCosine(total_steps, warmup_steps=warmup_steps)
    if last_step <= 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
    missing = [i for i, g in enumerate(optimizer.param_groups) if "initial_lr" not in g]
    if missing:
        raise ValueError(f"parameter groups {missing} have no initial_lr to resume a schedule")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn, last_epoch=last_step - 1)


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
