"""The deep-supervision loss at the outputs' own resolutions equals the paper's full-resolution loss."""

import pytest
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from nnunet_lightweight.training.benchmark import TrainingPath, build_benchmark_trainer, random_batch
from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho
from nnunet_lightweight.training.pooled_deep_supervision import PooledDeepSupervisionLoss, pooled_one_hot

CLASSES, SIZE = 4, 32


def _nnunet_loss(batch_dice: bool, weights=(1.0, 0.3, 0.3, 0.3), smooth: float = 1e-5) -> DeepSupervisionWrapper:
    dice = {"batch_dice": batch_dice, "smooth": smooth, "do_bg": False, "ddp": False}
    loss = DC_and_CE_loss(dice, {}, weight_ce=0.5, weight_dice=0.5, dice_class=MemoryEfficientSoftDiceLoss)
    return DeepSupervisionWrapper(loss, list(weights))


@pytest.mark.parametrize("batch_dice", [True, False])
@pytest.mark.parametrize("smooth", [1e-5, 1.0])  # LightEcho's, and nnU-Net's default (where scaling it shows)
def test_pooled_loss_and_gradients_equal_the_full_resolution_ones(batch_dice, smooth):
    generator = torch.Generator().manual_seed(0)
    # Blocky targets with a missing class in one image: the Dice smoothing term matters there.
    target = torch.randint(0, CLASSES, (2, 1, SIZE // 4, SIZE // 4), generator=generator).float()
    target = F.interpolate(target, size=(SIZE, SIZE), mode="nearest")
    target[1][target[1] == 3] = 0
    target[0, 0, :5, :7] = 2  # and edges that cut through the coarse blocks
    outputs = [
        torch.randn(2, CLASSES, SIZE // f, SIZE // f, generator=generator, requires_grad=True) for f in (1, 2, 4, 8)
    ]
    upsampled = [outputs[0]] + [F.interpolate(o, size=(SIZE, SIZE), mode="nearest") for o in outputs[1:]]
    expected = _nnunet_loss(batch_dice, smooth=smooth)(upsampled, [target] * 4)
    expected_gradients = torch.autograd.grad(expected, outputs)
    pooled = PooledDeepSupervisionLoss(_nnunet_loss(batch_dice, smooth=smooth))(outputs, [target] * 4)
    gradients = torch.autograd.grad(pooled, outputs)
    assert pooled.item() == pytest.approx(expected.item(), rel=1e-6)
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        torch.testing.assert_close(gradient, expected_gradient, rtol=1e-5, atol=1e-8)


def test_pooled_one_hot_holds_each_blocks_class_fractions():
    target = torch.tensor([[[[0, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]]]]).float()
    fractions = pooled_one_hot(target, CLASSES, 2)
    assert fractions.shape == (1, CLASSES, 2, 2)
    torch.testing.assert_close(fractions[0, :, 0, 0], torch.tensor([0.25, 0.75, 0.0, 0.0]))
    torch.testing.assert_close(fractions[0, :, 1, 1], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(fractions.sum(1), torch.ones(1, 2, 2))


def test_other_losses_and_shapes_are_refused():
    with pytest.raises(ValueError, match="pools"):
        PooledDeepSupervisionLoss(DeepSupervisionWrapper(torch.nn.CrossEntropyLoss(), [1.0, 0.3]))
    loss = PooledDeepSupervisionLoss(_nnunet_loss(True, (1.0, 0.3)))
    with pytest.raises(ValueError, match="integer"):
        loss([torch.zeros(1, CLASSES, 30, 30), torch.zeros(1, CLASSES, 7, 7)], [torch.zeros(1, 1, 30, 30)] * 2)


def test_lightecho_trains_on_native_resolution_outputs_with_the_same_loss(tmp_path):
    torch.manual_seed(0)
    trainer = build_benchmark_trainer(nnUNetTrainerLightEcho, 64, 2, TrainingPath("fp32", False), str(tmp_path))
    assert isinstance(trainer.loss, PooledDeepSupervisionLoss)
    decoder = trainer.network.decoder
    batch = random_batch(trainer, 2, 64)
    outputs = trainer.network(batch["data"])
    assert [o.shape[-1] for o in outputs] == [64, 32, 16, 8, 4]
    pooled = trainer.loss(outputs, batch["target"])
    pooled_gradients = torch.autograd.grad(pooled, list(trainer.network.parameters()))
    # The paper's form: every auxiliary output upsampled to the frame, nnU-Net's loss on all of them.
    decoder.deep_supervision_full_resolution = True
    full = trainer._build_loss()(trainer.network(batch["data"]), batch["target"])
    full_gradients = torch.autograd.grad(full, list(trainer.network.parameters()))
    assert pooled.item() == pytest.approx(full.item(), rel=1e-5)
    for gradient, expected in zip(pooled_gradients, full_gradients):
        torch.testing.assert_close(gradient, expected, rtol=1e-3, atol=1e-6)
