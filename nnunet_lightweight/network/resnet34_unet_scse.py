"""ResNet34UNetSCSE: U-Net with a ResNet34 encoder, SCSE decoder attention and deep supervision.

The published CAMUS model of Slyche/cardiac-wall-segmentation ("DeepSupSMPUNet", 24.5M parameters), built
from segmentation-models-pytorch parts so that the encoder, decoder blocks and SCSE modules are the library's
own: smp's `Unet(encoder_name, decoder_channels=(256, 128, 64, 32, 16), decoder_attention_type="scse")` plus
a 1x1 head on each inner decoder block whose logits are upsampled (bilinear) to full resolution.

The encoder starts from random weights: nothing is downloaded. `load_encoder_weights` copies a local
state dict (e.g. torchvision's ImageNet ResNet34) into the encoder, adapting an RGB first convolution to the
input channels the way smp does for its own pretrained weights.
"""

from pathlib import Path
from typing import Sequence

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from nnunet_lightweight.core.errors import InputError


def _encoder_depth(strides: Sequence[Sequence[int]]) -> int:
    """Number of 2x downsamplings of a ResNet encoder described nnU-Net-style (first stage stride 1)."""
    strides = [tuple(s) if isinstance(s, (list, tuple)) else (s, s) for s in strides]
    if strides[0] != (1, 1) or any(s != (2, 2) for s in strides[1:]) or not 2 <= len(strides) <= 6:
        raise ValueError(f"a ResNet encoder has stride 1 then 1 to 5 stride-2 stages, got strides {strides}")
    return len(strides) - 1


class DeepSupervisedUnetDecoder(nn.Module):
    """smp's U-Net decoder and segmentation head, with a deep-supervision head on every inner decoder block.

    With `deep_supervision` on, returns [final, aux from the finest to the coarsest block], all at the
    resolution of the final logits; otherwise the final logits only.
    """

    def __init__(self, unet: smp.Unet, decoder_channels: Sequence[int], num_classes: int, deep_supervision: bool):
        super().__init__()
        self.unet_decoder = unet.decoder
        self.segmentation_head = unet.segmentation_head
        self.deep_supervision = deep_supervision
        self.aux_heads = nn.ModuleList(nn.Conv2d(c, num_classes, kernel_size=1) for c in decoder_channels[:-1])
        for head in self.aux_heads:
            nn.init.kaiming_normal_(head.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(head.bias)
        # smp's decoder returns only its last block's output; hooks collect the inner blocks' outputs.
        self._inner_outputs: list[torch.Tensor] = []
        for block in self.unet_decoder.blocks[:-1]:
            block.register_forward_hook(self._keep_inner_output)

    def _keep_inner_output(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self.deep_supervision:
            self._inner_outputs.append(output)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        self._inner_outputs = []
        logits = self.segmentation_head(self.unet_decoder(features))
        inner, self._inner_outputs = self._inner_outputs, []
        if not self.deep_supervision:
            return logits
        size = logits.shape[2:]
        aux = [
            F.interpolate(head(x), size=size, mode="bilinear", align_corners=False)
            for head, x in zip(self.aux_heads, inner)
        ]
        return [logits] + aux[::-1]  # nnU-Net convention: highest resolution first


class ResNet34UNetSCSE(nn.Module):
    """ResNet encoder (smp) + U-Net decoder with SCSE attention + deep supervision; returns logits."""

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        strides: Sequence[Sequence[int]],
        features_per_stage_decoder: Sequence[int] = (256, 128, 64, 32, 16),
        encoder_name: str = "resnet34",
        decoder_attention_type: str | None = "scse",
        decoder_interpolation: str = "nearest",
        deep_supervision: bool = False,
    ):
        super().__init__()
        depth = _encoder_depth(strides)
        unet = smp.Unet(
            encoder_name=encoder_name,
            encoder_depth=depth,
            encoder_weights=None,
            in_channels=input_channels,
            classes=num_classes,
            decoder_channels=tuple(features_per_stage_decoder),
            decoder_attention_type=decoder_attention_type,
            decoder_interpolation=decoder_interpolation,
        )
        self.encoder = unet.encoder
        self.decoder = DeepSupervisedUnetDecoder(unet, features_per_stage_decoder, num_classes, deep_supervision)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.encoder(x))

    def load_encoder_weights(self, path: str | Path) -> None:
        """Copy a local encoder state dict (torchvision ResNet keys, or an smp model's `encoder.*` keys).

        The classifier (`fc.*`) is ignored; an RGB first convolution is adapted to the input channels as smp
        adapts its own pretrained weights (summed over RGB for one channel).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"encoder weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise InputError(f"{path}: not a readable PyTorch state dict ({error})") from error
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict):
            raise InputError(f"{path}: expected a state dict, got {type(state).__name__}")
        if any(k.startswith("encoder.") for k in state):
            state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        in_channels = self.encoder.conv1.in_channels  # smp's ResNet encoders are torchvision ResNets
        if "conv1.weight" in state and state["conv1.weight"].shape[1] != in_channels:
            state["conv1.weight"] = _adapt_first_conv(state["conv1.weight"], in_channels)
        try:
            self.encoder.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise InputError(f"{path}: does not match the {type(self.encoder).__name__} encoder: {error}") from error


def _adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """smp's rule for pretrained first convolutions: sum for one channel, else cycle RGB and rescale."""
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    cycled = torch.stack([weight[:, i % weight.shape[1]] for i in range(in_channels)], 1)
    return cycled * (weight.shape[1] / in_channels)
