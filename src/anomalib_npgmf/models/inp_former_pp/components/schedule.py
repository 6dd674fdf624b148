"""Linear warm-up then cosine decay, stepped once per optimiser step (the official ``WarmCosineScheduler``).

anomalib's ``InpFormer`` steps the same schedule once per *epoch*, so its learning rate is 0 for the whole first
epoch, warm-up lasts 100 epochs and the cosine never starts. Ours is returned to Lightning with
``"interval": "step"``. The state is plain numbers, so checkpoints load with ``weights_only=True``.
"""

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

logger = logging.getLogger(__name__)


def effective_warmup(warmup_steps: int, total_steps: int) -> int:
    """Warm-up length actually used: as asked, unless the run is not longer than it (then half the run).

    The official schedule breaks when ``total_steps <= warmup_steps`` (an empty cosine part); short CPU runs hit
    that, so they warm up over the first half instead and still decay.
    """
    if warmup_steps < total_steps:
        return warmup_steps
    return total_steps // 2


def warm_cosine_lr(step: int, base_lr: float, final_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based).

    Warm-up: ``base_lr * step / (warmup_steps - 1)`` for ``step < warmup_steps`` (``np.linspace(0, base_lr, W)``);
    then ``final_lr + (base_lr - final_lr) * (1 + cos(pi * i / (total_steps - W))) / 2`` with ``i = step - W``;
    ``final_lr`` from ``total_steps`` on.
    """
    warmup = effective_warmup(warmup_steps, total_steps)
    if step >= total_steps:
        return final_lr
    if step < warmup:
        return base_lr * step / (warmup - 1) if warmup > 1 else 0.0
    progress = (step - warmup) / (total_steps - warmup)
    return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + math.cos(math.pi * progress))


class WarmCosineLR(LRScheduler):
    """Per-step warm-up + cosine schedule (same value for every parameter group).

    Args:
        optimizer: Wrapped optimiser.
        base_lr: Learning rate at the end of warm-up.
        final_lr: Learning rate at the end of the run.
        warmup_steps: Warm-up length in optimiser steps (see :func:`effective_warmup`).
        total_steps: Optimiser steps of the whole run.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        base_lr: float,
        final_lr: float,
        warmup_steps: int,
        total_steps: int,
    ) -> None:
        if total_steps < 1 or warmup_steps < 0:
            msg = f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps} and {warmup_steps}"
            raise ValueError(msg)
        if effective_warmup(warmup_steps, total_steps) != warmup_steps:
            logger.warning(
                "InpFormerPlusPlus: the run has %d optimiser steps, not more than warmup_steps=%d; warming up over "
                "the first %d steps instead.",
                total_steps,
                warmup_steps,
                effective_warmup(warmup_steps, total_steps),
            )
        self.base_lr = float(base_lr)
        self.final_lr = float(final_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        """Learning rate of the current step for each parameter group."""
        value = warm_cosine_lr(self.last_epoch, self.base_lr, self.final_lr, self.warmup_steps, self.total_steps)
        return [value for _ in self.optimizer.param_groups]


def check_schedule(learning_rate: float, final_learning_rate: float, weight_decay: float, warmup_steps: int) -> None:
    """Refuse settings the schedule cannot run with, at construction rather than at the first optimiser step."""
    if warmup_steps < 0 or not learning_rate > 0 or final_learning_rate < 0 or weight_decay < 0:
        msg = (
            "need learning_rate > 0, final_learning_rate >= 0, weight_decay >= 0 and warmup_steps >= 0; got "
            f"{learning_rate}, {final_learning_rate}, {weight_decay} and {warmup_steps}"
        )
        raise ValueError(msg)


def paper_optimiser(
    parameters: Iterable[torch.nn.Parameter],
    total_steps: int,
    learning_rate: float,
    final_learning_rate: float,
    weight_decay: float,
    warmup_steps: int,
) -> dict[str, Any]:
    """The official recipe as Lightning's ``configure_optimizers`` answer: StableAdamW (anomalib's port; betas
    (0.9, 0.999), amsgrad, eps 1e-10) and :class:`WarmCosineLR` stepped once per optimiser step."""
    from anomalib.models.image.dinomaly.components import StableAdamW

    optimizer = StableAdamW(
        list(parameters), lr=learning_rate, betas=(0.9, 0.999), weight_decay=weight_decay, amsgrad=True, eps=1e-10
    )
    scheduler = WarmCosineLR(
        optimizer,
        base_lr=learning_rate,
        final_lr=final_learning_rate,
        warmup_steps=warmup_steps,
        total_steps=total_steps,
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
