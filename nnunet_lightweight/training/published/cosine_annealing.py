"""Cosine annealing driven by nnU-Net's per-epoch `lr_scheduler.step(current_epoch)` calls."""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class CosineAnnealingEpochLR(LRScheduler):
    """Anneals every param group from its initial learning rate to `min_lr` over `max_epochs` (cosine).

    Same curve as torch's CosineAnnealingLR (without restarts), but set in closed form from the epoch that
    nnU-Net passes to `step` at the start of every epoch; torch's scheduler warns about that call, and nnU-Net
    does not checkpoint scheduler state, so a resumed run must recompute the rate from the epoch alone.
    """

    def __init__(self, optimizer: Optimizer, max_epochs: int, min_lr: float = 0.0):
        self.max_epochs = max_epochs
        self.min_lr = min_lr
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        progress = min(max(self.last_epoch, 0), self.max_epochs) / self.max_epochs
        return [self.min_lr + (base - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2 for base in self.base_lrs]

    def step(self, epoch: int | None = None) -> None:
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
