"""nnUNetTrainerLightEcho_CPU1h: LightEcho trained to convergence within an hour on a 2-core CPU.

The paper's recipe (nnUNetTrainerLightEcho: 100 one-pass epochs at a constant learning rate, early stopping on
the validation pseudo-Dice) takes 10 to 30 hours on such a machine. This schedule keeps the paper's network, loss,
deep supervision, augmentation and optimizer, and changes the length, the batch and the learning rate:
`max_epochs` one-pass epochs of batch 16 with nnU-Net's polynomial decay to zero, no early stopping, and the
weights of the last epoch as the final model, so that no checkpoint is chosen on the validation cases. Seeded,
so that a rerun repeats the initialisation and the batch order.
"""

from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho


class nnUNetTrainerLightEcho_CPU1h(nnUNetTrainerLightEcho):
    max_epochs = 15
    plans_batch_size = 16  # twice the paper's number of optimizer steps for the same frames
    learning_rate = 1e-3
    lr_decay_exponent = 0.9  # nnU-Net's own poly schedule
    patience = None
    final_weights = "last"
    seed = 12345

    def configure_optimizers(self):
        optimizer, _ = super().configure_optimizers()
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, exponent=self.lr_decay_exponent)


class nnUNetTrainerLightEcho_CPU1h_Batch8(nnUNetTrainerLightEcho_CPU1h):
    """The same frames and epochs in batches of 8 (3000 optimizer steps, about the same wall time): the candidate
    compared with batch 16 on an inner patient-level split of the training subgroup (`scripts/camus_inner_split.py`).
    A longer schedule does not fit: at 180 s per epoch on a 2-core AVX512-BF16 EPYC, 20 epochs take an hour."""

    plans_batch_size = 8
