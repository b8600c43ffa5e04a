"""Short schedules for quick runs (the demo, smoke tests on CPU): LightEcho and nnU-Net's default trainer
with the same epoch definition, one pass over the training cases, so both see the same number of frames."""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_lightweight.training.nnUNetTrainerLightEcho import OnePassEpochs, nnUNetTrainerLightEcho


class nnUNetTrainerLightEcho_5epochs(nnUNetTrainerLightEcho):
    max_epochs = 5


class nnUNetTrainerLightEcho_20epochs(nnUNetTrainerLightEcho):
    max_epochs = 20


class nnUNetTrainer_OnePassEpochs(OnePassEpochs, nnUNetTrainer):
    """nnU-Net's default recipe (SGD, poly LR, full augmentation, mirroring), `max_epochs` one-pass epochs."""


class nnUNetTrainer_OnePassEpochs_5epochs(nnUNetTrainer_OnePassEpochs):
    max_epochs = 5


class nnUNetTrainer_OnePassEpochs_20epochs(nnUNetTrainer_OnePassEpochs):
    max_epochs = 20
