"""LightEchoUNet: the CAMUS "U-Net 1" family, configurable like dynamic_network_architectures.

Unlike nnU-Net's PlainConvUNet, the decoder widths are independent of the encoder widths (U-Net 1 decodes
128, 128, 64, 32, 16 from a 32...128 encoder), upsampling is parameter-free nearest-neighbour by default, and
the deep-supervision heads can be upscaled to full resolution as in the paper.
"""

from typing import Sequence

import torch
import torch.nn.functional as F
from dynamic_network_architectures.building_blocks.helper import get_matching_convtransp
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.residual import StackedResidualBlocks
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.building_blocks.simple_conv_blocks import StackedConvBlocks
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn
from torch.nn.modules.conv import _ConvNd

from nnunet_lightweight.network.upsampled_convolution import convolve_upsampled_and_skip, fits_upsampled_convolution

UPSAMPLING_MODES = ("nearest", "transpconv")


def _stage_blocks(
    residual: bool,
    n_conv: int,
    conv_op: type[_ConvNd],
    in_channels: int,
    out_channels: int,
    kernel_size,
    conv_kwargs: dict,
) -> nn.Module:
    """Two-conv stage, or residual blocks of two convs each when `residual` (n_conv // 2 blocks)."""
    if residual:
        return StackedResidualBlocks(
            max(1, n_conv // 2), conv_op, in_channels, out_channels, kernel_size, 1, **conv_kwargs
        )
    return StackedConvBlocks(n_conv, conv_op, in_channels, out_channels, kernel_size, 1, **conv_kwargs)


class LightEchoDecoder(nn.Module):
    """U-Net decoder with its own widths, nearest or transposed-conv upsampling, and a head per stage."""

    def __init__(
        self,
        encoder: PlainConvEncoder | ResidualEncoder,
        features_per_stage: Sequence[int],
        num_classes: int,
        n_conv_per_stage: int | Sequence[int],
        deep_supervision: bool,
        upsampling: str = "nearest",
        residual: bool = False,
        deep_supervision_full_resolution: bool = True,
    ):
        super().__init__()
        n_decoder_stages = len(encoder.output_channels) - 1
        if len(features_per_stage) != n_decoder_stages:
            raise ValueError(f"features_per_stage_decoder needs {n_decoder_stages} entries, got {features_per_stage}")
        if upsampling not in UPSAMPLING_MODES:
            raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}")
        if isinstance(n_conv_per_stage, int):
            n_conv_per_stage = [n_conv_per_stage] * n_decoder_stages
        self.deep_supervision = deep_supervision
        self.deep_supervision_full_resolution = deep_supervision_full_resolution
        conv_kwargs = dict(
            conv_bias=encoder.conv_bias,
            norm_op=encoder.norm_op,
            norm_op_kwargs=encoder.norm_op_kwargs,
            dropout_op=encoder.dropout_op,
            dropout_op_kwargs=encoder.dropout_op_kwargs,
            nonlin=encoder.nonlin,
            nonlin_kwargs=encoder.nonlin_kwargs,
        )
        transpconv_op = get_matching_convtransp(conv_op=encoder.conv_op)

        below = encoder.output_channels[-1]
        upsamplers, stages, heads = [], [], []
        for s in range(n_decoder_stages):
            skip = encoder.output_channels[-(s + 2)]
            stride = encoder.strides[-(s + 1)]
            if upsampling == "nearest":
                upsamplers.append(nn.Upsample(scale_factor=tuple(float(i) for i in stride), mode="nearest"))
            else:
                upsamplers.append(transpconv_op(below, below, stride, stride, bias=encoder.conv_bias))
            stages.append(
                _stage_blocks(
                    residual,
                    n_conv_per_stage[s],
                    encoder.conv_op,
                    below + skip,
                    features_per_stage[s],
                    encoder.kernel_sizes[-(s + 2)],
                    conv_kwargs,
                )
            )
            heads.append(encoder.conv_op(features_per_stage[s], num_classes, 1, 1, 0, bias=True))
            below = features_per_stage[s]
        self.upsamplers = nn.ModuleList(upsamplers)
        self.stages = nn.ModuleList(stages)
        # Stages whose first convolution takes the nearest-upsampled map as a transposed convolution of the map
        # itself (network/upsampled_convolution.py): same values, 15 % less arithmetic for U-Net 1.
        self.upsampled_convolution = [
            upsampling == "nearest"
            and not residual
            and fits_upsampled_convolution(stage.convs[0].all_modules[0], encoder.strides[-(s + 1)])
            for s, stage in enumerate(self.stages)
        ]
        # A head per stage is always built, so weights load whether deep supervision is on or off.
        self.seg_layers = nn.ModuleList(heads)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = skips[-1]
        outputs = []
        last = len(self.stages) - 1
        for s, (upsample, stage) in enumerate(zip(self.upsamplers, self.stages)):
            skip = skips[-(s + 2)]
            if self.upsampled_convolution[s]:
                # The first ConvDropoutNormReLU's layers as it runs them (conv first), which is where BatchNorm
                # folding (inference/engines.py) puts a folded convolution.
                layers = stage.convs[0].all_modules
                x = stage.convs[1:](layers[1:](convolve_upsampled_and_skip(layers[0], x, skip)))
            else:
                x = stage(torch.cat((upsample(x), skip), 1))
            if self.deep_supervision or s == last:
                outputs.append(self.seg_layers[s](x))
        if not self.deep_supervision:
            return outputs[-1]
        outputs = outputs[::-1]  # nnU-Net convention: highest resolution first
        if self.deep_supervision_full_resolution:
            size = outputs[0].shape[2:]
            outputs = [outputs[0]] + [F.interpolate(o, size=size, mode="nearest") for o in outputs[1:]]
        return outputs


class LightEchoUNet(nn.Module):
    """Encoder (max-pool or strided conv, plain or residual) + LightEchoDecoder; returns logits."""

    def __init__(
        self,
        input_channels: int,
        n_stages: int,
        features_per_stage: Sequence[int],
        features_per_stage_decoder: Sequence[int],
        conv_op: type[_ConvNd],
        kernel_sizes: int | Sequence,
        strides: int | Sequence,
        n_conv_per_stage: int | Sequence[int],
        n_conv_per_stage_decoder: int | Sequence[int],
        num_classes: int,
        conv_bias: bool = True,
        norm_op: type[nn.Module] | None = None,
        norm_op_kwargs: dict | None = None,
        dropout_op: type[nn.Module] | None = None,
        dropout_op_kwargs: dict | None = None,
        nonlin: type[nn.Module] | None = None,
        nonlin_kwargs: dict | None = None,
        deep_supervision: bool = False,
        pool: str = "max",
        upsampling: str = "nearest",
        residual: bool = False,
        deep_supervision_full_resolution: bool = False,
    ):
        super().__init__()
        common = dict(
            conv_bias=conv_bias,
            norm_op=norm_op,
            norm_op_kwargs=norm_op_kwargs,
            dropout_op=dropout_op,
            dropout_op_kwargs=dropout_op_kwargs,
            nonlin=nonlin,
            nonlin_kwargs=nonlin_kwargs,
            return_skips=True,
        )
        if residual:
            n_blocks = [max(1, n // 2) for n in _per_stage(n_conv_per_stage, n_stages)]
            self.encoder = ResidualEncoder(
                input_channels,
                n_stages,
                features_per_stage,
                conv_op,
                kernel_sizes,
                strides,
                n_blocks,
                pool_type=pool,
                **common,
            )
        else:
            self.encoder = PlainConvEncoder(
                input_channels,
                n_stages,
                features_per_stage,
                conv_op,
                kernel_sizes,
                strides,
                n_conv_per_stage,
                pool=pool,
                **common,
            )
        self.decoder = LightEchoDecoder(
            self.encoder,
            features_per_stage_decoder,
            num_classes,
            n_conv_per_stage_decoder,
            deep_supervision,
            upsampling,
            residual,
            deep_supervision_full_resolution,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        logits = self.decoder(self.encoder(x))
        if self.training or isinstance(logits, list):
            return logits
        # nnU-Net's sliding-window predictor sums logits x Gaussian (up to 10) in fp16, which an unnormalized
        # network (the U-Net 1 baseline) can overflow. Shifting by the per-pixel maximum and bounding from below
        # leaves argmax and softmax unchanged.
        return (logits - logits.amax(1, keepdim=True)).clamp_min(-1000.0)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He initialisation, as nnU-Net applies to its own networks."""
        InitWeights_He(1e-2)(module)


def _per_stage(value: int | Sequence[int], n_stages: int) -> list[int]:
    return [value] * n_stages if isinstance(value, int) else list(value)
