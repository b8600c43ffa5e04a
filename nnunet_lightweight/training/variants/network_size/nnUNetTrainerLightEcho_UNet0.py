from nnunet_lightweight.training.variants.lr_schedule.nnUNetTrainerLightEcho_ReduceLROnPlateau import (
    nnUNetTrainerLightEcho_ReduceLROnPlateau,
)


class nnUNetTrainerLightEcho_UNet0(nnUNetTrainerLightEcho_ReduceLROnPlateau):
    """The final model at the size of U-Net 0 (Table III: plans/unet0.json, its batch size, ReduceLROnPlateau)."""

    network_preset = "unet0"
