from nnunet_lightweight.training.variants.lr_schedule.nnUNetTrainerLightEcho_ReduceLROnPlateau import (
    nnUNetTrainerLightEcho_ReduceLROnPlateau,
)


class nnUNetTrainerLightEcho_UNet2(nnUNetTrainerLightEcho_ReduceLROnPlateau):
    """The final model at the size of U-Net 2 (Table III: plans/unet2.json, its batch size, ReduceLROnPlateau)."""

    network_preset = "unet2"
