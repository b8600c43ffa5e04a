from nnunet_lightweight.training.variants.activation.nnUNetTrainerLightEcho_UNet1_BN_Mish import (
    nnUNetTrainerLightEcho_UNet1_BN_Mish,
)


class nnUNetTrainerLightEcho_UNet1_BN_Mish_AugIII(nnUNetTrainerLightEcho_UNet1_BN_Mish):
    """U-Net 1 + BatchNorm + Mish, trained with augmentation configuration III of Table II."""

    augmentation = "config_III"
