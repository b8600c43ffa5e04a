"""Fast nnU-Net training on CPU: bf16 autocast where the CPU has bf16 instructions, channels_last, few DA workers.

nnU-Net autocasts only on CUDA, so on a CPU it trains in fp32 with NCHW tensors and starts up to 12
augmentation processes. Measured on 2 cores (AMD EPYC with AVX512-BF16, LightEcho, batch 16, 224x224, forward +
deep-supervision loss + backward + Adam): fp32 NCHW 2.8 frames/s, fp32 channels_last 3.9, bf16 NCHW 6.7,
bf16 channels_last 7.9; torch.compile of the network did not pay for its compile time (batch 16: fp32 4.1,
bf16 2.0 frames/s after 75-90 s of compiling; batch 32: bf16 6.97 against 6.77 frames/s eager after 106 s), so it
stays off as in nnU-Net. `lightecho benchmark --train` measures this on any machine.

Every large buffer comes from glibc's heap and stays there when freed (core.allocator.retain_freed_memory): glibc
would otherwise map and unmap each activation afresh, which made 40 % of a step's CPU time system time.

The mixin changes the network in place (memory layout, a bf16 forward wrapper on the instance), so the module
tree and its state-dict keys stay those of the plain network: checkpoints load in stock nnU-Net and `--c`
resumes.
"""

import functools
import os
from collections.abc import Callable

import torch
from torch import nn

from nnunet_lightweight.core.allocator import retain_freed_memory
from nnunet_lightweight.core.cpu_features import cpu_has_bf16, describe_cpu
from nnunet_lightweight.core.nnunet_paths import environment_variable
from nnunet_lightweight.training.fused_mish import fuse_mish
from nnunet_lightweight.training.skip_gradients import keep_skip_gradients_channels_last

CPU_PRECISIONS = ("auto", "fp32", "bf16")


def resolve_cpu_precision(precision: str) -> str:
    """`auto`: bf16 where it is native on this CPU (see cpu_features.cpu_has_bf16), else fp32."""
    if precision not in CPU_PRECISIONS:
        raise ValueError(f"CPU training precision must be one of {CPU_PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return precision


def bf16_autocast_forward(forward: Callable) -> Callable:
    """`forward` run under CPU bf16 autocast, its output(s) cast back to fp32 so that the loss is computed in fp32."""

    @functools.wraps(forward)
    def run(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = forward(*args, **kwargs)
        if isinstance(output, (list, tuple)):
            return type(output)(o.float() for o in output)
        return output.float()

    return run


def optimise_for_cpu_training(network: nn.Module, precision: str, channels_last: bool) -> nn.Module:
    """`network` in channels_last memory layout and, for bf16, with a bf16 autocast forward (both in place)."""
    if channels_last:
        network.to(memory_format=torch.channels_last)
    if precision == "bf16":
        network.forward = bf16_autocast_forward(network.forward)
    return network


class FastCPUTraining:
    """nnUNetTrainer mixin: on a CPU device, train with the fastest measured settings; elsewhere change nothing.

    Knobs (class attributes, or instance attributes set before `initialize`): `cpu_precision` ("auto", "fp32",
    "bf16"), `cpu_channels_last` (with channels_last gradients at the skip connections, training/skip_gradients.py),
    `cpu_compile` (torch.compile of the network, off as in nnU-Net: it was slower when measured), `cpu_fused_mish`
    (Mish as one compiled elementwise kernel, training/fused_mish.py: faster where measured, and without effect on
    networks without Mish), and `cpu_augmentation_workers`, the data-augmentation processes used when
    nnUNet_n_proc_DA is not set (nnU-Net's default of up to 12 starves the training process on a 2-core machine).
    """

    cpu_precision: str = "auto"
    cpu_channels_last: bool = True
    cpu_compile: bool = False
    cpu_fused_mish: bool = True
    cpu_augmentation_workers: int = 1

    def initialize(self):
        was_initialized = self.was_initialized
        super().initialize()
        if self.device.type != "cpu" or was_initialized:
            return
        self.training_precision = resolve_cpu_precision(self.cpu_precision)
        self.cpu_retains_freed_memory = retain_freed_memory()
        optimise_for_cpu_training(self.network, self.training_precision, self.cpu_channels_last)
        self.cpu_fused_mish_modules = fuse_mish(self.network) if self.cpu_fused_mish and not self.cpu_compile else 0
        # Eager channels_last only: the hooks return channels_last gradients (training/skip_gradients.py).
        eager_channels_last = self.cpu_channels_last and not self.cpu_compile
        self.cpu_skip_gradient_hooks = keep_skip_gradients_channels_last(self.network) if eager_channels_last else 0
        if self.cpu_compile:
            # nnU-Net's checkpointing unwraps the compiled module (_orig_mod): state-dict keys stay the same.
            self.network = torch.compile(self.network)
        self.print_to_log_file(
            f"CPU training: {describe_cpu()}; precision {self.training_precision}, "
            f"channels_last {self.cpu_channels_last}, torch.compile {self.cpu_compile}, "
            f"fused Mish {self.cpu_fused_mish_modules} module(s), "
            f"channels_last skip gradients {self.cpu_skip_gradient_hooks} module(s), "
            f"{os.environ.get('nnUNet_n_proc_DA', self.cpu_augmentation_workers)} DA process(es), "
            f"freed memory kept for reuse {self.cpu_retains_freed_memory}"
        )

    def get_dataloaders(self):
        if self.device.type != "cpu" or "nnUNet_n_proc_DA" in os.environ:
            return super().get_dataloaders()
        # nnU-Net reads its worker count from this variable only; set it for the duration of the call.
        with environment_variable("nnUNet_n_proc_DA", str(self.cpu_augmentation_workers)):
            return super().get_dataloaders()
