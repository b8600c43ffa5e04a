"""Short schedules for quick runs (the demo, smoke runs on a CPU): LightEcho and nnU-Net's default trainer with
the same epoch definition, one pass over the training cases, so both see the same frames per epoch."""

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_lightweight.training.nnUNetTrainerLightEcho import OnePassEpochs, nnUNetTrainerLightEcho


class nnUNetTrainerLightEcho_Batch8_5epochs(nnUNetTrainerLightEcho):
    """Batch 8 instead of 32: a small dataset still gets enough optimizer steps in a few epochs."""

    plans_batch_size = 8
    max_epochs = 5


class nnUNetTrainerLightEcho_Batch8_20epochs(nnUNetTrainerLightEcho_Batch8_5epochs):
    max_epochs = 20


class nnUNetTrainer_OnePassEpochs(OnePassEpochs, nnUNetTrainer):
    """nnU-Net's default recipe (SGD, poly LR, full augmentation, mirroring), `max_epochs` one-pass epochs."""


class nnUNetTrainer_OnePassEpochs_5epochs(nnUNetTrainer_OnePassEpochs):
    max_epochs = 5


class nnUNetTrainer_OnePassEpochs_20epochs(nnUNetTrainer_OnePassEpochs):
    max_epochs = 20
