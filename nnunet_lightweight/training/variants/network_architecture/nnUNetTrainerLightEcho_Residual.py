from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho


class nnUNetTrainerLightEcho_Residual(nnUNetTrainerLightEcho):
    """The final model with residual blocks (two 3x3 convs and a skip connection per stage)."""

    residual = True
