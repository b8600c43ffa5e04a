"""The LightEcho network family and a builder for the paper's default model."""

from torch import nn

from nnunet_lightweight.core.presets import load_preset
from nnunet_lightweight.network.lightecho_unet import LightEchoDecoder, LightEchoUNet


def build_network_from_preset(
    preset: dict, num_input_channels: int, num_classes: int, deep_supervision: bool = False
) -> nn.Module:
    """Instantiate the network an architecture preset (or plans `architecture` block) describes."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(
        preset["network_class_name"],
        preset["arch_kwargs"],
        preset["_kw_requires_import"],
        num_input_channels,
        num_classes,
        allow_init=True,
        deep_supervision=deep_supervision,
    )


def count_parameters(network: nn.Module) -> int:
    """Number of trainable parameters of `network`."""
    return sum(p.numel() for p in network.parameters() if p.requires_grad)


def build_lightecho_network(
    num_input_channels: int = 1, num_classes: int = 4, deep_supervision: bool = False, preset: str = "lightecho"
) -> nn.Module:
    """The paper's LightEcho model (about 1.99M parameters with 4 classes), returning logits."""
    return build_network_from_preset(load_preset(preset), num_input_channels, num_classes, deep_supervision)


__all__ = [
    "LightEchoUNet",
    "LightEchoDecoder",
    "build_lightecho_network",
    "build_network_from_preset",
    "count_parameters",
]
