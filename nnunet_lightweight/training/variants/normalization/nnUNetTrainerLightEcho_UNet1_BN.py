from torch import nn

from nnunet_lightweight.training.variants.baseline.nnUNetTrainerLightEcho_UNet1Baseline import (
    nnUNetTrainerLightEcho_UNet1Baseline,
)


class nnUNetTrainerLightEcho_UNet1_BN(nnUNetTrainerLightEcho_UNet1Baseline):
    """U-Net 1 baseline + BatchNorm."""

    norm_op = nn.BatchNorm2d
