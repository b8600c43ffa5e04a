from nnunet_lightweight.training.variants.normalization.nnUNetTrainerLightEcho_UNet1_BN import (
    nnUNetTrainerLightEcho_UNet1_BN,
)


class nnUNetTrainerLightEcho_UNet1_BN_DS(nnUNetTrainerLightEcho_UNet1_BN):
    """U-Net 1 + BatchNorm with deep supervision (lambda = 0.3) but no augmentation (paper Sec. III-C)."""

    deep_supervision = True
