from torch import nn

from nnunet_lightweight.training.variants.normalization.nnUNetTrainerLightEcho_UNet1_BN import (
    nnUNetTrainerLightEcho_UNet1_BN,
)


class nnUNetTrainerLightEcho_UNet1_BN_GELU(nnUNetTrainerLightEcho_UNet1_BN):
    """U-Net 1 + BatchNorm with GELU instead of ReLU."""

    nonlin = nn.GELU
