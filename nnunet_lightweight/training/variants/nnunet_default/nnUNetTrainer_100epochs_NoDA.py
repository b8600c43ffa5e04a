from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoDA import nnUNetTrainerNoDA
from nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs import nnUNetTrainer_100epochs


class nnUNetTrainer_100epochs_NoDA(nnUNetTrainerNoDA, nnUNetTrainer_100epochs):
    """nnU-Net's default trainer for 100 epochs (the paper's nnU-Net baseline) without data augmentation.

    nnUNetTrainerNoDA also disables mirroring at inference.
    """
