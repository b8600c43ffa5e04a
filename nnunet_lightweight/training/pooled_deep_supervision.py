"""The paper's full-resolution deep-supervision loss, computed at each auxiliary output's own resolution.

LightEcho's decoder upsamples every auxiliary output to the frame's size (nearest, by an integer factor k) before
the loss, as the paper does, so the Dice + CE of each auxiliary head is evaluated on all 224x224 pixels although a
head at 1/k resolution has only one logit per k x k block. The same loss follows from the head's own pixels:

- cross-entropy: the mean over a block of -log p[label] is the cross-entropy of the block's logit against the
  block's label fractions (the one-hot target average-pooled by k), and the mean over the frame is the mean over
  the blocks;
- soft Dice: the intersection, prediction and target sums over the frame are k^2 times the same sums over the
  blocks with pooled targets, so Dice is unchanged once its smoothing term is divided by k^2.

So the trainer keeps the auxiliary outputs at their own resolution and scores them against pooled one-hot targets
with nnU-Net's own soft Dice (which takes a soft target of the output's shape) and torch's cross-entropy with
class-probability targets. Loss and gradients equal the full-resolution ones to float rounding (tested); the
upsampling, and four of the five full-resolution softmax, cross-entropy and Dice passes of every step, are gone.
Measured on a 2-core Intel Xeon with AMX (batch 32, 224x224, bf16 channels_last, alternating in one process):
17.8-18.7 -> 19.9-21.0 frames/s.
"""

import copy

import torch
import torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from torch import nn


def pooled_one_hot(target: torch.Tensor, num_classes: int, factor: int) -> torch.Tensor:
    """Class fractions (B, num_classes, H / factor, W / factor) of every factor x factor block of a (B, 1, H, W)
    label map."""
    one_hot = torch.zeros((target.shape[0], num_classes, *target.shape[2:]), device=target.device)
    one_hot.scatter_(1, target.long(), 1)
    return F.avg_pool2d(one_hot, factor) if factor > 1 else one_hot


def poolable(loss: nn.Module) -> bool:
    """Whether `loss` is nnU-Net's deep-supervision Dice + CE in the form this module reproduces exactly: no ignore
    label, nnU-Net's memory-efficient soft Dice, and a plain mean cross-entropy."""
    if not isinstance(loss, DeepSupervisionWrapper) or not isinstance(loss.loss, DC_and_CE_loss):
        return False
    main = loss.loss
    return (
        main.ignore_label is None
        and type(main.dc) is MemoryEfficientSoftDiceLoss
        and main.ce.weight is None
        and main.ce.label_smoothing == 0.0
        and main.ce.reduction == "mean"
    )


class PooledDeepSupervisionLoss(nn.Module):
    """`DeepSupervisionWrapper(DC_and_CE_loss)` for outputs at their own resolutions and full-resolution targets,
    equal to that loss on the outputs upsampled (nearest) to the targets' size (see the module docstring)."""

    def __init__(self, loss: DeepSupervisionWrapper):
        super().__init__()
        if not poolable(loss):
            raise ValueError("only nnU-Net's DeepSupervisionWrapper(DC_and_CE_loss) without an ignore label pools")
        self.main = loss.loss
        self.weights = loss.weight_factors

    def forward(self, outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        target = targets[0]
        total = self.weights[0] * self.main(outputs[0], target)
        for weight, output in zip(self.weights[1:], outputs[1:]):
            if weight == 0:
                continue
            factor = target.shape[2] // output.shape[2]
            if any(t != o * factor for t, o in zip(target.shape[2:], output.shape[2:])):
                raise ValueError(f"output {tuple(output.shape)} is not the target {tuple(target.shape)} / an integer")
            soft = pooled_one_hot(target, output.shape[1], factor)
            dice = copy.copy(self.main.dc)
            dice.smooth = self.main.dc.smooth / factor**2
            part = self.main.weight_dice * dice(output, soft) + self.main.weight_ce * F.cross_entropy(output, soft)
            total = total + weight * part
        return total


class PooledDeepSupervision:
    """nnUNetTrainer mixin: where the network upsamples its auxiliary outputs to full resolution
    (`decoder.deep_supervision_full_resolution`) and the loss is nnU-Net's deep-supervision Dice + CE, train on the
    outputs at their own resolutions with `PooledDeepSupervisionLoss`: the same loss, less work. The flag is a
    runtime attribute, so checkpoints, plans and inference are as before."""

    def initialize(self):
        was_initialized = self.was_initialized
        super().initialize()
        network = self.network.module if self.is_ddp else self.network
        decoder = getattr(getattr(network, "_orig_mod", network), "decoder", None)
        if was_initialized or not getattr(decoder, "deep_supervision_full_resolution", False):
            return
        if poolable(self.loss):
            decoder.deep_supervision_full_resolution = False
            self.loss = PooledDeepSupervisionLoss(self.loss)
            self.print_to_log_file("Deep supervision: auxiliary losses at the outputs' own resolutions (same loss).")
