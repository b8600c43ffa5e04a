from torch import nn

from nnunet_lightweight.training.variants.baseline.nnUNetTrainerLightEcho_UNet1Baseline import (
    nnUNetTrainerLightEcho_UNet1Baseline,
)


class nnUNetTrainerLightEcho_UNet1_IN(nnUNetTrainerLightEcho_UNet1Baseline):
    """U-Net 1 baseline + InstanceNorm (nnU-Net's choice)."""

    norm_op = nn.InstanceNorm2d
