"""Mish as one fused elementwise kernel for CPU training (torch.compile of a one-exponential formula).

aten's Mish evaluates softplus, tanh and, in its backward, a sigmoid: several transcendental passes over every
full-resolution activation. On a 2-core Intel Xeon with AMX, Mish and its backward were 35 % of a bf16 LightEcho
training step once the convolutions ran on AMX. The same function, x * tanh(softplus(x)) = x * n / (n + 2) with
n = e^x (e^x + 2), needs one exponential; compiled, forward and backward are each one fused loop. Measured there
(batch 32, 224x224, bf16 channels_last, 4 steps after 2 warm-up steps, alternating): 11.1-11.9 -> 15.3-15.6
frames/s. Mish has no parameters, so swapping the modules leaves the state dict, and nnU-Net's checkpoints, as
they are.
"""

import functools

import torch
from torch import nn

_EXP_LIMIT = 20.0  # above it n / (n + 2) is 1 in fp32 and e^x would overflow in bf16/fp16 intermediates


def mish_one_exp(x: torch.Tensor) -> torch.Tensor:
    """Mish(x) = x * tanh(softplus(x)), computed in fp32 with one exponential, returned in x's dtype."""
    x32 = x.float()
    e = torch.exp(x32.clamp(max=_EXP_LIMIT))
    n = e * (e + 2)
    return (x32 * n / (n + 2)).to(x.dtype)


@functools.cache
def compiled_mish():
    """`mish_one_exp` compiled once for all shapes, or None where torch.compile cannot build it (no C++ compiler,
    an unsupported platform): the caller then keeps aten's Mish."""
    compiled = torch.compile(mish_one_exp, dynamic=True)
    try:
        probe = torch.linspace(-30, 30, 64, requires_grad=True)
        compiled(probe).sum().backward()
    except Exception:  # inductor raises many kinds where it cannot compile; aten's Mish is always correct
        return None
    return compiled


class FusedMish(nn.Module):
    """Drop-in for nn.Mish that runs the compiled one-exponential kernel."""

    def __init__(self, kernel):
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel(x)


def fuse_mish(network: nn.Module) -> int:
    """Replace every nn.Mish of `network` (in place) by a FusedMish; returns how many (0 where compiling failed)."""
    kernel = compiled_mish()
    if kernel is None:
        return 0
    replaced = 0
    for module in list(network.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Mish):
                setattr(module, name, FusedMish(kernel))
                replaced += 1
    return replaced
