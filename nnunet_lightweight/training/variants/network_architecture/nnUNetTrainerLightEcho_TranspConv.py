from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho


class nnUNetTrainerLightEcho_TranspConv(nnUNetTrainerLightEcho):
    """The final model with transposed-convolution upsampling instead of nearest-neighbour interpolation."""

    upsampling = "transpconv"
