"""Equal wall-clock training budgets: two models compared after the same training time, not the same epochs.

A model that is cheaper per step gets more epochs in the same time; that is what being small buys. The
`WallClockBudget` mixin stops training at the end of the epoch after which the next one would overrun
`budget_seconds` (the summed epoch times nnU-Net logs, so a run resumed with --c counts the epochs it kept), and
decays the learning rate with nnU-Net's polynomial schedule over the fraction of the budget used instead of over
the epochs, so that each model ends at a small learning rate whatever its epoch count. The final model is the
last epoch's weights (no checkpoint chosen on the validation cases), as in nnU-Net.

The demo trainers below compose it with LightEcho and with nnU-Net's default recipe, both with the CPU fast path
(bf16 autocast where native, channels_last, one augmentation process), so that the two get the same treatment.
"""

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunet_lightweight.training.cpu_training import FastCPUTraining
from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho
from nnunet_lightweight.training.training_length import nnUNetTrainer_OnePassEpochs


class BudgetExhausted(Exception):
    """Raised at the end of an epoch once the next epoch would overrun the training budget."""


class BudgetPolyLR(PolyLRScheduler):
    """nnU-Net's polynomial decay over the fraction of the time budget used (`trainer.budget_fraction_used()`)."""

    def __init__(self, optimizer, initial_lr: float, trainer: "WallClockBudget", exponent: float):
        self.trainer = trainer
        super().__init__(optimizer, initial_lr, max_steps=1, exponent=exponent)

    def step(self, current_step=None):
        # nnU-Net passes the epoch; the schedule follows the clock instead.
        super().step(min(self.trainer.budget_fraction_used(), 1.0))


class WallClockBudget:
    """nnUNetTrainer mixin: train for `budget_seconds` of summed epoch time (at most `budget_max_epochs` epochs)."""

    budget_seconds: float = 60.0
    budget_max_epochs: int = 1000
    budget_lr_exponent: float = 0.9
    final_weights = "last"  # read by nnUNetTrainerLightEcho; nnU-Net's own trainer always keeps the last weights
    patience = None  # nnUNetTrainerLightEcho's early stopping would end one model before its budget

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        # nnU-Net records its constructor's arguments by name (for checkpoints): the signature must be its own.
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.budget_max_epochs

    def epoch_seconds(self) -> list[float]:
        """Wall time of every finished epoch (training, validation, checkpointing), from nnU-Net's logger."""
        starts = self.logger.get_value("epoch_start_timestamps", step=None)
        ends = self.logger.get_value("epoch_end_timestamps", step=None)
        return [end - start for start, end in zip(starts, ends)]

    def budget_fraction_used(self) -> float:
        return sum(self.epoch_seconds()) / self.budget_seconds

    def budget_exhausted(self) -> bool:
        """Whether another epoch as long as the last one would end past the budget."""
        seconds = self.epoch_seconds()
        return bool(seconds) and sum(seconds) + seconds[-1] > self.budget_seconds

    def configure_optimizers(self):
        optimizer, _ = super().configure_optimizers()
        return optimizer, BudgetPolyLR(optimizer, self.initial_lr, self, self.budget_lr_exponent)

    def on_train_epoch_start(self):
        # A run resumed with --c after its budget was spent must not train on.
        if self.budget_exhausted():
            raise BudgetExhausted
        super().on_train_epoch_start()

    def on_epoch_end(self):
        super().on_epoch_end()
        if self.budget_exhausted():
            self.print_to_log_file(
                f"Training budget of {self.budget_seconds:.0f} s spent after "
                f"{len(self.epoch_seconds())} epochs ({sum(self.epoch_seconds()):.1f} s)."
            )
            raise BudgetExhausted

    def run_training(self):
        try:
            super().run_training()
        except BudgetExhausted:
            self.on_train_end()


class nnUNetTrainerLightEcho_Budget(WallClockBudget, nnUNetTrainerLightEcho):
    """LightEcho (already on the CPU fast path) for `budget_seconds`, batch 4: many steps on a small dataset."""

    plans_batch_size = 4


class nnUNetTrainer_Budget(WallClockBudget, FastCPUTraining, nnUNetTrainer_OnePassEpochs):
    """nnU-Net's default recipe (SGD, poly LR, its own batch size, augmentation, mirroring) on the CPU fast path,
    for `budget_seconds`."""


class nnUNetTrainerLightEcho_Budget30s(nnUNetTrainerLightEcho_Budget):
    budget_seconds = 30.0


class nnUNetTrainer_Budget30s(nnUNetTrainer_Budget):
    budget_seconds = 30.0


class nnUNetTrainerLightEcho_Budget240s(nnUNetTrainerLightEcho_Budget):
    budget_seconds = 240.0


class nnUNetTrainer_Budget240s(nnUNetTrainer_Budget):
    budget_seconds = 240.0
