"""network/upsampled_convolution.py: a 3x3 convolution of a 2x nearest-upsampled map as one transposed convolution,
against torch's own upsample-then-convolve, in float64 (values and gradients), and inside LightEchoUNet."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnunet_lightweight.inference.engines import fold_batch_norm
from nnunet_lightweight.network import build_lightecho_network
from nnunet_lightweight.network.upsampled_convolution import (
    convolve_upsampled_and_skip,
    fits_upsampled_convolution,
    transposed_kernel,
)

CONVOLUTIONS = {2: (nn.Conv2d, F.conv2d, F.conv_transpose2d), 3: (nn.Conv3d, F.conv3d, F.conv_transpose3d)}


@pytest.mark.parametrize("axes, size", [(2, (5, 7)), (2, (1, 1)), (3, (3, 4, 2))])
def test_transposed_kernel_equals_convolving_the_upsampled_map(axes, size):
    """Values and the gradients of the input and the 3x3 weight, odd and one-pixel maps included (the borders are
    where the zero padding has to agree)."""
    _, convolve, transposed = CONVOLUTIONS[axes]
    torch.manual_seed(0)
    below = torch.randn(2, 5, *size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 5, *(3,) * axes, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, *(2 * s for s in size), dtype=torch.float64)

    def run(function) -> tuple[torch.Tensor, ...]:
        output = function()
        gradients = torch.autograd.grad((output * target).sum(), (below, weight))
        return output, *gradients

    expected = run(lambda: convolve(F.interpolate(below, scale_factor=2, mode="nearest"), weight, padding=1))
    actual = run(lambda: transposed(below, transposed_kernel(weight), stride=2, padding=1))
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_convolve_upsampled_and_skip_equals_the_concatenation():
    torch.manual_seed(1)
    conv = nn.Conv2d(6 + 4, 3, 3, padding=1, dtype=torch.float64)
    below, skip = torch.randn(2, 6, 4, 5, dtype=torch.float64), torch.randn(2, 4, 8, 10, dtype=torch.float64)
    expected = conv(torch.cat((F.interpolate(below, scale_factor=2, mode="nearest"), skip), 1))
    torch.testing.assert_close(convolve_upsampled_and_skip(conv, below, skip), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "conv, stride, fits",
    [
        (nn.Conv2d(4, 4, 3, padding=1), (2, 2), True),
        (nn.Conv3d(4, 4, 3, padding=1), 2, True),
        (nn.Conv2d(4, 4, 3, padding=1), (1, 2), False),  # anisotropic upsampling
        (nn.Conv2d(4, 4, 3, padding=1), (4, 4), False),
        (nn.Conv2d(4, 4, 5, padding=2), (2, 2), False),
        (nn.Conv2d(4, 4, 3, padding=0), (2, 2), False),
        (nn.Conv2d(4, 4, 3, padding=1, dilation=2), (2, 2), False),
        (nn.Conv2d(4, 4, 3, padding=1, groups=2), (2, 2), False),
        (nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), (2, 2), False),
        (nn.Conv2d(4, 4, 3, padding=1, stride=2), (2, 2), False),
        (nn.Conv1d(4, 4, 3, padding=1), 2, False),
    ],
)
def test_fits_upsampled_convolution(conv, stride, fits):
    assert fits_upsampled_convolution(conv, stride) is fits


def _lightecho(deep_supervision: bool) -> nn.Module:
    """The paper's U-Net 1 (2D, BatchNorm, Mish, nearest upsampling, five decoder stages), in float64."""
    torch.manual_seed(2)
    return build_lightecho_network(deep_supervision=deep_supervision).double()


def test_lightecho_training_step_equals_the_concatenating_decoder():
    """Deep-supervision outputs and every parameter's gradient of a training-mode forward (BatchNorm on batch
    statistics), with the transposed convolutions and with upsample-and-concatenate."""
    network = _lightecho(deep_supervision=True).train()
    assert network.decoder.upsampled_convolution == [True] * 5
    concatenating = copy.deepcopy(network)
    concatenating.decoder.upsampled_convolution = [False] * 5
    image = torch.randn(2, 1, 64, 64, dtype=torch.float64)
    results = []
    for model in (network, concatenating):
        outputs = model(image)
        sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outputs).backward()
        results.append((outputs, {name: p.grad for name, p in model.named_parameters()}))
    (outputs, gradients), (expected_outputs, expected_gradients) = results
    for output, expected in zip(outputs, expected_outputs, strict=True):
        torch.testing.assert_close(output, expected, rtol=1e-9, atol=1e-9)
    assert gradients.keys() == expected_gradients.keys()
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected_gradients[name], rtol=1e-9, atol=1e-9, msg=name)


def test_lightecho_with_batch_norm_folded_for_inference():
    """inference/engines.fold_batch_norm folds BatchNorm into the convolution that each ConvDropoutNormReLU runs
    first, which the decoder's transposed convolutions use: the folded network gives the unfolded one's logits."""
    network = _lightecho(deep_supervision=False)
    network.train()
    with torch.no_grad():  # running statistics other than the initial ones, so that folding changes the weights
        for _ in range(3):
            network(torch.randn(4, 1, 64, 64, dtype=torch.float64) * 3 + 1)
    network.eval()
    image = torch.randn(2, 1, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = network(image)
        folded = fold_batch_norm(network)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())  # all folded
        torch.testing.assert_close(folded(image), expected, rtol=1e-9, atol=1e-9)
