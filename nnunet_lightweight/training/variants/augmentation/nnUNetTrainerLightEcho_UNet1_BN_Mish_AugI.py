from nnunet_lightweight.training.variants.activation.nnUNetTrainerLightEcho_UNet1_BN_Mish import (
    nnUNetTrainerLightEcho_UNet1_BN_Mish,
)


class nnUNetTrainerLightEcho_UNet1_BN_Mish_AugI(nnUNetTrainerLightEcho_UNet1_BN_Mish):
    """U-Net 1 + BatchNorm + Mish, trained with augmentation configuration I of Table II."""

    augmentation = "config_I"
