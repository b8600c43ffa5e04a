"""Deep-supervision variants; the ladder step that adds deep supervision is nnUNetTrainerLightEcho itself."""
