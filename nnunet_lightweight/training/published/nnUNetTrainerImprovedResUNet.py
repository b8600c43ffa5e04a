"""nnUNetTrainerImprovedResUNet: the improved ResUNet for left-ventricle segmentation (seed OCR).

Readable in the paper: Adam with learning rate 0.0001 for 100 epochs (Sec. 2.6), loss
alpha * Dice + beta * CE (Eq. 5). The sentence after Eq. 5 that sets alpha and beta is garbled in the OCR
except for its closing "1"; it is read as alpha = beta = 1. No deep supervision is described. CLAHE is
inside the network (see nnunet_lightweight/network/improved_resunet.py), so training and `nnUNetv2_predict`
apply it identically. Batch size and augmentation are not legible: the preset's batch 16 and LightEcho's
affine augmentation (shared by all compared models) are used, with LightEcho's early stopping (patience 50).
"""

from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho


class nnUNetTrainerImprovedResUNet(nnUNetTrainerLightEcho):
    network_preset = "improved_resunet"
    learning_rate = 1e-4  # Adam, constant (the base trainer's optimizer)
    max_epochs = 100
    deep_supervision = False
    dice_weight = 1.0
    ce_weight = 1.0
