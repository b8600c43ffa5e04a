from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerNoDeepSupervision import (
    nnUNetTrainerNoDeepSupervision,
)
from nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs import nnUNetTrainer_100epochs


class nnUNetTrainer_100epochs_NoDeepSupervision(nnUNetTrainerNoDeepSupervision, nnUNetTrainer_100epochs):
    """nnU-Net's default trainer for 100 epochs without deep supervision (augmentation kept)."""
