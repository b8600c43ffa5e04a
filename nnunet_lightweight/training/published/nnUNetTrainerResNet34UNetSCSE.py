"""nnUNetTrainerResNet34UNetSCSE: the published ResNet34 U-Net + SCSE + deep-supervision CAMUS model.

Recipe of Slyche/cardiac-wall-segmentation (seed README and its src/ model, loss and Lightning module):
DiceCE loss with CE 0.3 / Dice 0.7, auxiliary losses weighted 0.1 each, AdamW (weight decay 1e-4) with
learning rates 3e-5 for the encoder and 3e-4 for the decoder and heads, cosine annealing to 1e-6 over 1000
epochs, early stopping after 100 epochs without improvement, batch 4.

Deliberate differences, so that every model is compared under the same nnU-Net machinery:
- An epoch is one pass over the training cases (the original: 250 batches of 4 = 1000 frames).
- The loss is nnU-Net's Dice + CE, whose Dice term leaves out the background class.
- Augmentation is LightEcho's affine transform. The original also flipped frames horizontally in training
  and used flip test-time augmentation; apical views have a fixed orientation (apex up, LV on one side), a
  mirrored frame is not a plausible view, so neither is used here.
- The encoder starts from random weights (no download). Set `encoder_weights_path` in a subclass, or the
  environment variable LIGHTECHO_ENCODER_WEIGHTS, to a local state dict (e.g. torchvision's ImageNet
  ResNet34 weights) to start from pretrained weights as the original did.
"""

import os

import torch

from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho
from nnunet_lightweight.training.published.cosine_annealing import CosineAnnealingEpochLR

ENCODER_WEIGHTS_ENV = "LIGHTECHO_ENCODER_WEIGHTS"


class nnUNetTrainerResNet34UNetSCSE(nnUNetTrainerLightEcho):
    network_preset = "resnet34_unet_scse"
    learning_rate = 3e-4  # decoder, SCSE modules and heads
    encoder_learning_rate = 3e-5
    min_learning_rate = 1e-6
    adamw_weight_decay = 1e-4
    max_epochs = 1000
    patience = 100
    deep_supervision_weight = 0.1
    dice_weight = 0.7
    ce_weight = 0.3
    encoder_weights_path: str | None = None  # None: $LIGHTECHO_ENCODER_WEIGHTS if set, else random init

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.weight_decay = self.adamw_weight_decay  # also what nnU-Net logs as the run's weight decay

    def initialize(self):
        first_time = not self.was_initialized
        super().initialize()
        path = self.encoder_weights_path or os.environ.get(ENCODER_WEIGHTS_ENV)
        if first_time and path:
            # Before any checkpoint is loaded: a resumed run or --val still ends with the checkpoint's weights.
            network = self.network.module if self.is_ddp else self.network
            getattr(network, "_orig_mod", network).load_encoder_weights(path)
            self.print_to_log_file(f"Encoder weights loaded from {path}")

    def configure_optimizers(self):
        network = getattr(self.network, "_orig_mod", self.network)  # nnU-Net compiles before this call
        encoder = list(network.encoder.parameters())
        encoder_ids = {id(p) for p in encoder}
        decoder = [p for p in network.parameters() if id(p) not in encoder_ids]
        # Decoder group first: nnU-Net logs and plots param_groups[0]'s learning rate.
        optimizer = torch.optim.AdamW(
            [{"params": decoder, "lr": self.learning_rate}, {"params": encoder, "lr": self.encoder_learning_rate}],
            weight_decay=self.weight_decay,
        )
        return optimizer, CosineAnnealingEpochLR(optimizer, self.num_epochs, self.min_learning_rate)
