"""Test-only trainer, exposed to nnU-Net through nnUNet_extTrainer by the tests (never installed)."""
import os

from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho


class nnUNetTrainerLightEcho_Test(nnUNetTrainerLightEcho):
    """LightEcho with a CPU-sized schedule; the epoch count comes from the environment so --c can extend it."""

    max_epochs = int(os.environ.get("LIGHTECHO_TEST_EPOCHS", "1"))
    batch_size = 8
