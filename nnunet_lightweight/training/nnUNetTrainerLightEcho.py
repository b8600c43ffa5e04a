"""nnUNetTrainerLightEcho: the paper's lightweight U-Net trained by nnU-Net's own machinery.

Everything the ablation study varies is a class attribute, so a variant is a subclass that sets one or two
of them. The network is written into the plans this trainer runs with (and so into the results folder's
plans.json), which lets nnU-Net's predictor rebuild it without knowing anything about this package.
"""

import inspect
import math
import random
from copy import deepcopy

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import distributed as dist
from torch import nn

from nnunet_lightweight.core.presets import load_preset
from nnunet_lightweight.planning.configuration import lightecho_configuration, preset_architecture
from nnunet_lightweight.training.augmentation import AUGMENTATIONS
from nnunet_lightweight.training.cpu_training import FastCPUTraining
from nnunet_lightweight.training.pooled_deep_supervision import PooledDeepSupervision


class PatienceExhausted(Exception):
    """Raised at the end of an epoch once the validation pseudo-Dice has not improved for `patience` epochs."""


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class OnePassEpochs:
    """Trainer mixin: `max_epochs` epochs of one pass over the training cases each (nnU-Net: 1000 x 250 iterations).

    nnU-Net's loader samples cases at random, so a pass is ceil(cases / global batch size) batches.
    """

    max_epochs: int = 100

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.max_epochs

    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        global_batch_size = self.configuration_manager.batch_size
        self.num_iterations_per_epoch = max(1, math.ceil(len(dataset_tr.identifiers) / global_batch_size))
        self.num_val_iterations_per_epoch = max(1, math.ceil(len(dataset_val.identifiers) / global_batch_size))
        return dataset_tr, dataset_val


class nnUNetTrainerLightEcho(PooledDeepSupervision, FastCPUTraining, OnePassEpochs, nnUNetTrainer):
    # Network: a preset from plans/, then the component overrides below (None keeps the preset's choice).
    network_preset: str = "lightecho"
    norm_op: type[nn.Module] | None = None  # nn.Identity means no normalization
    nonlin: type[nn.Module] | None = None
    upsampling: str | None = None  # "nearest" or "transpconv"
    residual: bool | None = None
    # Training recipe (paper, Table VII and Sec. II-B).
    plans_batch_size: int | None = None  # global batch size written into the plans; None: the preset's
    learning_rate: float = 1e-3
    patience: int | None = 50  # epochs without a better EMA pseudo-Dice before stopping; None: no early stopping
    final_weights: str = "best"  # "best": checkpoint_best's weights become the final model; "last": the last epoch's
    deep_supervision: bool = True
    deep_supervision_weight: float = 0.3
    dice_weight: float = 0.5  # loss = dice_weight * Dice + ce_weight * CE; the paper averages the two
    ce_weight: float = 0.5
    augmentation: str = "affine"  # key of training.augmentation.AUGMENTATIONS
    seed: int | None = None  # seeds initialisation and (one DA process) batch order; None: unseeded, as nnU-Net

    def __init__(
        self,
        plans: dict,
        configuration: str,
        fold: int,
        dataset_json: dict,
        device: torch.device = torch.device("cuda"),
    ):
        super().__init__(self.lightecho_plans(plans, configuration), configuration, fold, dataset_json, device)
        self.initial_lr = self.learning_rate
        self.weight_decay = 0.0
        # The patch is the whole frame: foreground oversampling would re-centre (shift) frames at random.
        self.oversample_foreground_percent = 0.0
        self.enable_deep_supervision = self.deep_supervision
        self.save_every = 5  # epochs are short; resume with --c loses little
        if self.seed is not None:
            # Before the network is built and before the augmentation processes fork (they inherit these states).
            random.seed(self.seed)
            np.random.seed(self.seed)
            torch.manual_seed(self.seed)

    @classmethod
    def architecture(cls) -> dict:
        """The plans `architecture` block of this trainer's network: its preset plus its overrides."""
        architecture = preset_architecture(load_preset(cls.network_preset))
        kwargs = architecture["arch_kwargs"]
        if cls.norm_op is not None:
            kwargs["norm_op"] = _dotted(cls.norm_op)
            kwargs["norm_op_kwargs"] = {} if cls.norm_op is nn.Identity else {"eps": 1e-5, "affine": True}
        if cls.nonlin is not None:
            kwargs["nonlin"] = _dotted(cls.nonlin)
            kwargs["nonlin_kwargs"] = {"inplace": True} if "inplace" in inspect.signature(cls.nonlin).parameters else {}
        if cls.upsampling is not None:
            kwargs["upsampling"] = cls.upsampling
        if cls.residual is not None:
            kwargs["residual"] = cls.residual
        return architecture

    @classmethod
    def lightecho_plans(cls, plans: dict, configuration: str) -> dict:
        """`plans` with this trainer's network, batch size and whole-frame patch in `configuration`."""
        plans = deepcopy(plans)
        batch_size = cls.plans_batch_size or load_preset(cls.network_preset)["batch_size"]
        plans["configurations"][configuration] = lightecho_configuration(
            plans["configurations"][configuration], cls.architecture(), batch_size
        )
        return plans

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        # Constant learning rate: nnU-Net's poly schedule with exponent 0.
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, exponent=0.0)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, _, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        # The affine transform works on the full frame, so the loader needs no enlarged patch; no mirroring
        # in training nor as test-time augmentation (None is stored in the checkpoint for the predictor).
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, self.configuration_manager.patch_size, None

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        # The network upscales every auxiliary output to full resolution, so every target is full size.
        n_outputs = len(self.configuration_manager.network_arch_init_kwargs["features_per_stage_decoder"])
        return [[1.0] * len(self.configuration_manager.patch_size)] * n_outputs

    def _build_loss(self):
        loss = DC_and_CE_loss(
            {"batch_dice": self.configuration_manager.batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": self.is_ddp},
            {},
            weight_ce=self.ce_weight,
            weight_dice=self.dice_weight,
            ignore_label=self.label_manager.ignore_label,
            dice_class=MemoryEfficientSoftDiceLoss,
        )
        if not self.enable_deep_supervision:
            return loss
        # L = L_final + sum_i lambda * L_aux_i (paper, Sec. II-C.6), not nnU-Net's normalized 1/2^i weights.
        n_aux = len(self._get_deep_supervision_scales()) - 1
        return DeepSupervisionWrapper(loss, [1.0] + [self.deep_supervision_weight] * n_aux)

    @classmethod
    def get_training_transforms(
        cls,
        patch_size,
        rotation_for_DA,
        deep_supervision_scales,
        mirror_axes,
        do_dummy_2d_data_aug,
        use_mask_for_norm=None,
        is_cascaded=False,
        foreground_labels=None,
        regions=None,
        ignore_label=None,
    ) -> BasicTransform:
        if is_cascaded or regions is not None:
            raise NotImplementedError(f"{cls.__name__} supports plain label maps only (no cascade, no regions)")
        transforms = AUGMENTATIONS[cls.augmentation]()
        transforms.append(RemoveLabelTansform(-1, 0))
        if deep_supervision_scales is not None:
            transforms.append(DownsampleSegForDSTransform(ds_scales=deep_supervision_scales))
        return ComposeTransforms(transforms)

    def patience_exhausted(self) -> bool:
        """Whether early stopping is on and the EMA pseudo-Dice has not improved for `patience` epochs."""
        return self.patience is not None and self.epochs_since_best() >= self.patience

    def epochs_since_best(self) -> int:
        """Epochs since the best EMA pseudo-Dice, nnU-Net's own checkpoint_best criterion (restored from logs)."""
        history = self.logger.get_value("ema_fg_dice", step=None)
        return len(history) - 1 - int(np.argmax(history)) if len(history) else 0

    def on_train_epoch_start(self):
        # A run resumed with --c after early stopping must not train on.
        if self.patience_exhausted():
            raise PatienceExhausted
        super().on_train_epoch_start()

    def on_epoch_end(self):
        super().on_epoch_end()
        if self.patience_exhausted():
            self.print_to_log_file(f"Early stopping: no better EMA pseudo-Dice for {self.patience} epochs.")
            raise PatienceExhausted

    def run_training(self):
        try:
            super().run_training()
        except PatienceExhausted:
            self.on_train_end()

    def on_train_end(self):
        # Final checkpoint and final validation use the best weights (early stopping keeps the best model).
        best = join(self.output_folder, "checkpoint_best.pth")
        if self.is_ddp:
            dist.barrier()
        if self.final_weights == "best" and not self.disable_checkpointing and isfile(best):
            weights = torch.load(best, map_location=self.device, weights_only=False)["network_weights"]
            network = self.network.module if self.is_ddp else self.network
            getattr(network, "_orig_mod", network).load_state_dict(weights)
            self.print_to_log_file("Restored the weights of checkpoint_best.pth for the final checkpoint.")
        super().on_train_end()
