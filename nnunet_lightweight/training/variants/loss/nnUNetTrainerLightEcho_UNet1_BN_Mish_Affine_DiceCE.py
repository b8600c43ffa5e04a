from nnunet_lightweight.training.variants.augmentation.nnUNetTrainerLightEcho_UNet1_BN_Mish_Affine import (
    nnUNetTrainerLightEcho_UNet1_BN_Mish_Affine,
)


class nnUNetTrainerLightEcho_UNet1_BN_Mish_Affine_DiceCE(nnUNetTrainerLightEcho_UNet1_BN_Mish_Affine):
    """U-Net 1 + BatchNorm + Mish + affine augmentation, loss mean(Dice, CE); adding deep supervision gives
    nnUNetTrainerLightEcho."""

    dice_weight = 0.5
    ce_weight = 0.5
