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
from nnunet_lightweight.training.small_frame_phases import SmallFramePhases


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
    compared with batch 16 on an inner patient-level split of the training subgroup (`scripts/camus_inner_split.py`)."""

    plans_batch_size = 8


class nnUNetTrainerLightEcho_CPU1h_Batch8_22Epochs(nnUNetTrainerLightEcho_CPU1h_Batch8):
    """Batch8 with 22 epochs instead of 15 (4400 optimizer steps): since Batch8 was chosen, its epochs went from
    about 180 s to 83-110 s on 2-core CPUs with native bf16 (AVX512-BF16 EPYC, AMX Xeon), leaving half the hour
    unused there. Measured on the inner split and not chosen: no better than Batch8 (README)."""

    max_epochs = 22


class nnUNetTrainerLightEcho_CPU1h_Batch4(nnUNetTrainerLightEcho_CPU1h):
    """The same frames and epochs in batches of 4 (6000 optimizer steps): halving the batch from 16 to 8 raised the
    inner mean Dice by 0.005 at the same wall time, and on CPUs with native bf16 half the hour is unused, so the
    next halving was the candidate for it. Measured on the inner split and not chosen: no better than Batch8
    (README: "How the schedule was chosen")."""

    plans_batch_size = 4


class nnUNetTrainerLightEcho_CPU1h_LowRes(SmallFramePhases, nnUNetTrainerLightEcho_CPU1h_Batch8):
    """Batch 8 in 8 epochs, the first 7 on frames resized down (training/small_frame_phases.py), for CPUs without
    bf16: on a 2-core AVX2 EPYC in fp32 a 224x224 epoch takes about 13 min and a 96x96 one 3, so Batch8's 15
    whole-frame epochs would take over 3 hours there. Measured on the inner split and not chosen (README)."""

    max_epochs = 8
    small_frame_phases = ((4, 96), (3, 128))
    small_frame_mode = "resize"


class nnUNetTrainerLightEcho_CPU1h_Crops(SmallFramePhases, nnUNetTrainerLightEcho_CPU1h_Batch8):
    """Batch 8 in 6 epochs, the first 5 on random full-resolution crops (3 of 128x128, 2 of 160x160), the last on
    whole frames: the same saving as LowRes without changing the size at which structures appear. Measured on the
    inner split and not chosen (README)."""

    max_epochs = 6
    small_frame_phases = ((3, 128), (2, 160))
    small_frame_mode = "crop"


class nnUNetTrainerLightEcho_CPU1h_LongCrops(nnUNetTrainerLightEcho_CPU1h_Crops):
    """Crops with one more pass and more of it at 160x160 (2 epochs of 128x128 crops, 4 of 160x160, 1 whole-frame):
    Crops' validation pseudo-Dice rose most in its 160x160 epochs, and about 8 minutes of the hour were left.
    Measured on the inner split and not chosen (README)."""

    max_epochs = 7
    small_frame_phases = ((2, 128), (4, 160))
