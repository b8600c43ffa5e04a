from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerNoDeepSupervision import (
    nnUNetTrainerNoDeepSupervision,
)

from nnunet_lightweight.training.variants.nnunet_default.nnUNetTrainer_100epochs_NoDA import (
    nnUNetTrainer_100epochs_NoDA,
)


class nnUNetTrainer_100epochs_NoDA_NoDeepSupervision(nnUNetTrainerNoDeepSupervision, nnUNetTrainer_100epochs_NoDA):
    """nnU-Net's default trainer for 100 epochs without data augmentation and without deep supervision."""
