from torch import nn

from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho


class nnUNetTrainerLightEcho_UNet1Baseline(nnUNetTrainerLightEcho):
    """CAMUS U-Net 1 as published: no normalization, ReLU, no augmentation, Dice loss, no deep supervision."""

    norm_op = nn.Identity
    nonlin = nn.ReLU
    augmentation = "none"
    dice_weight = 1.0
    ce_weight = 0.0
    deep_supervision = False
