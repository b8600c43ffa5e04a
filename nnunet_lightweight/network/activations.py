"""Mish with one exponential, as a drop-in module for nn.Mish where a compiler fuses the arithmetic.

aten's Mish evaluates softplus, tanh and, in its backward, a sigmoid. The same function, x * tanh(softplus(x)) =
x * n / (n + 2) with n = e^x (e^x + 2), needs one exponential: a third of the transcendental work, worth it where
torch.compile fuses it into one pass (the compiled inference engine, the CPU training path), not in eager mode.
Mish has no parameters, so swapping the modules leaves a network's state dict as it is.
"""

from collections.abc import Callable

import torch
from torch import nn

_EXP_LIMIT = 20.0  # above it n / (n + 2) is 1 in fp32, and e^x would overflow in bf16/fp16


def mish_one_exp(x: torch.Tensor) -> torch.Tensor:
    """Mish(x) = x * tanh(softplus(x)), computed in fp32 with one exponential, returned in x's dtype."""
    x32 = x.float()
    e = torch.exp(x32.clamp(max=_EXP_LIMIT))
    n = e * (e + 2)
    return (x32 * n / (n + 2)).to(x.dtype)


class ExpMish(nn.Module):
    """nn.Mish through `kernel`: `mish_one_exp`, or a compiled version of it."""

    def __init__(self, kernel: Callable[[torch.Tensor], torch.Tensor] = mish_one_exp):
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel(x)


def replace_mish(network: nn.Module, kernel: Callable[[torch.Tensor], torch.Tensor] = mish_one_exp) -> nn.Module:
    """Swap every nn.Mish of `network` (in place, each place it sits) for an ExpMish running `kernel`."""
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Mish):
                setattr(module, name, ExpMish(kernel))
    return network
