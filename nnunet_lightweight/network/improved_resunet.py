"""ImprovedResUNet: the improved ResUNet for left-ventricle segmentation in echocardiography.

Source: "Improved ResUNet for automatic segmentation of left ventricle in echocardiographic images" (seed
`improved_resunet_lv_paper_ocr.txt`; only the abstract, Table 1 and the equations survive the OCR).

From Table 1: five encoder residual blocks of three 3x3 convolutions with strides 1, 1, s (s = 1 for the
first block, 2 after), 64, 128, 256, 512, 1024 channels (256 -> 16 pixels); four decoder stages of x2
upsampling (channels unchanged) and a residual block of three stride-1 3x3 convolutions (512, 256, 128, 64);
a 1x1 output convolution. From the abstract: an Inception module for multi-scale features, attention, and
LeakyReLU; from Sec. 2.3: CLAHE on the input.

Assumptions where the OCR is unreadable (Fig. 5, the block diagram, is illegible):
- Skip connections are concatenated after upsampling (Table 1 lists only the upsampled input, e.g.
  32x32x1024 into ResBlock 6; with the 512-channel skip that stage sees 1536 channels).
- "Attention" is an additive attention gate (Oktay et al.) on each skip connection, gated by the upsampled
  decoder features.
- The Inception module sits between the last encoder block and the decoder (Table 1 has no row for it; a
  1024 -> 1024 module there leaves every listed shape unchanged): 1x1, 3x3, 5x5 (as two 3x3) and max-pool
  branches of a quarter of the channels each.
- Each convolution is followed by BatchNorm (the paper cites batch normalization) and LeakyReLU
  (slope 0.01, PyTorch's default); a block's shortcut is a strided 1x1 convolution + norm where its shape
  changes; upsampling is nearest-neighbour (Keras' UpSampling2D default; the paper used TensorFlow).
- CLAHE: each image is min-max rescaled to [0, 1] (nnU-Net hands over z-scored data), then equalized with
  kornia's CLAHE (clip limit 2.0 in OpenCV's convention, 8x8 tiles; the paper gives no values). It is the
  network's first, parameter-free step, so training, validation and `nnUNetv2_predict` apply the same one.
- Input and output follow the dataset (1 channel in, one logit map per label out) instead of the paper's
  3-channel input and binary LV output.
"""

from typing import Sequence

import torch
from dynamic_network_architectures.building_blocks.helper import get_matching_pool_op
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from kornia.enhance import equalize_clahe
from torch import nn
from torch.nn.modules.conv import _ConvNd


class CLAHE(nn.Module):
    """Fixed input step: per-image, per-channel min-max rescaling to [0, 1], then CLAHE (kornia)."""

    def __init__(self, clip_limit: float = 2.0, grid_size: Sequence[int] = (8, 8)):
        super().__init__()
        self.clip_limit = float(clip_limit)
        self.grid_size = tuple(int(g) for g in grid_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Histograms in float32 whatever autocast is active; nothing here is trained.
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            x = x.float()
            low = x.amin(dim=(-2, -1), keepdim=True)
            high = x.amax(dim=(-2, -1), keepdim=True)
            x = (x - low) / (high - low).clamp_min(1e-8)
            return equalize_clahe(x, clip_limit=self.clip_limit, grid_size=self.grid_size)

    def extra_repr(self) -> str:
        return f"clip_limit={self.clip_limit}, grid_size={self.grid_size}"


class ResidualConvBlock(nn.Module):
    """`n_convs` conv-norm-nonlin layers, the last one strided, added to a projection shortcut (Table 1)."""

    def __init__(
        self,
        conv_op: type[_ConvNd],
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride,
        n_convs: int,
        conv_kwargs: dict,
    ):
        super().__init__()
        layers = []
        for i in range(n_convs):
            last = i == n_convs - 1
            layer_kwargs = {**conv_kwargs, "nonlin": None} if last else conv_kwargs
            layers.append(
                ConvDropoutNormReLU(
                    conv_op,
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    kernel_size,
                    stride if last else 1,
                    **layer_kwargs,
                )
            )
        self.convs = nn.Sequential(*layers)
        if in_channels == out_channels and all(s == 1 for s in _pair(stride)):
            self.shortcut = nn.Identity()
        else:
            self.shortcut = ConvDropoutNormReLU(
                conv_op, in_channels, out_channels, 1, stride, **{**conv_kwargs, "nonlin": None}
            )
        self.nonlin = conv_kwargs["nonlin"](**(conv_kwargs["nonlin_kwargs"] or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.convs(x) + self.shortcut(x))


class InceptionModule(nn.Module):
    """GoogLeNet-style multi-scale block: 1x1, 3x3, 5x5 (two 3x3) and max-pool branches, concatenated."""

    def __init__(self, conv_op: type[_ConvNd], channels: int, conv_kwargs: dict):
        super().__init__()
        width = channels // 4
        pool_width = channels - 3 * width
        pool_op = get_matching_pool_op(conv_op=conv_op, pool_type="max")

        def conv(cin: int, cout: int, k: int) -> ConvDropoutNormReLU:
            return ConvDropoutNormReLU(conv_op, cin, cout, k, 1, **conv_kwargs)

        self.branch_1x1 = conv(channels, width, 1)
        self.branch_3x3 = nn.Sequential(conv(channels, width, 1), conv(width, width, 3))
        self.branch_5x5 = nn.Sequential(conv(channels, width, 1), conv(width, width, 3), conv(width, width, 3))
        self.branch_pool = nn.Sequential(pool_op(3, stride=1, padding=1), conv(channels, pool_width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_1x1(x), self.branch_3x3(x), self.branch_5x5(x), self.branch_pool(x)], 1)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al., 2018): weights a skip connection by the decoder's features."""

    def __init__(self, conv_op: type[_ConvNd], skip_channels: int, gating_channels: int, conv_kwargs: dict):
        super().__init__()
        inter = max(1, skip_channels // 2)
        linear = {**conv_kwargs, "nonlin": None}
        self.skip_projection = ConvDropoutNormReLU(conv_op, skip_channels, inter, 1, 1, **linear)
        self.gating_projection = ConvDropoutNormReLU(conv_op, gating_channels, inter, 1, 1, **linear)
        self.nonlin = conv_kwargs["nonlin"](**(conv_kwargs["nonlin_kwargs"] or {}))
        self.coefficients = nn.Sequential(ConvDropoutNormReLU(conv_op, inter, 1, 1, 1, **linear), nn.Sigmoid())

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        return skip * self.coefficients(self.nonlin(self.skip_projection(skip) + self.gating_projection(gating)))


class ImprovedResUNetEncoder(nn.Module):
    """Residual blocks (stride on each block's last conv), then the Inception module on the deepest features."""

    def __init__(
        self,
        input_channels: int,
        features_per_stage: Sequence[int],
        strides: Sequence,
        kernel_sizes: Sequence,
        n_conv_per_stage: Sequence[int],
        conv_op: type[_ConvNd],
        conv_kwargs: dict,
        inception: bool,
    ):
        super().__init__()
        stages, channels = [], input_channels
        for width, stride, kernel_size, n_convs in zip(features_per_stage, strides, kernel_sizes, n_conv_per_stage):
            stages.append(ResidualConvBlock(conv_op, channels, width, kernel_size, stride, n_convs, conv_kwargs))
            channels = width
        self.stages = nn.ModuleList(stages)
        self.inception = InceptionModule(conv_op, channels, conv_kwargs) if inception else nn.Identity()
        self.output_channels = list(features_per_stage)
        self.strides = [_pair(s) for s in strides]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        skips[-1] = self.inception(skips[-1])
        return skips


class ImprovedResUNetDecoder(nn.Module):
    """x2 nearest upsampling, attention-gated skip concatenation and a residual block per stage; 1x1 head.

    The paper's network has no auxiliary outputs. nnU-Net toggles `deep_supervision` (its final validation
    switches it back on), so the switch exists: on, the final logits come as a one-element list, nnU-Net's
    deep-supervision convention.
    """

    def __init__(
        self,
        encoder: ImprovedResUNetEncoder,
        features_per_stage: Sequence[int],
        kernel_sizes: Sequence,
        n_conv_per_stage: Sequence[int],
        num_classes: int,
        conv_op: type[_ConvNd],
        conv_kwargs: dict,
        attention_gates: bool,
        deep_supervision: bool = False,
    ):
        super().__init__()
        n_stages = len(encoder.output_channels) - 1
        if len(features_per_stage) != n_stages:
            raise ValueError(f"features_per_stage_decoder needs {n_stages} entries, got {features_per_stage}")
        below = encoder.output_channels[-1]
        upsamplers, gates, stages = [], [], []
        for s in range(n_stages):
            skip = encoder.output_channels[-(s + 2)]
            scale = tuple(float(f) for f in encoder.strides[-(s + 1)])
            upsamplers.append(nn.Upsample(scale_factor=scale, mode="nearest"))
            if attention_gates:
                gates.append(AttentionGate(conv_op, skip, below, conv_kwargs))
            stages.append(
                ResidualConvBlock(
                    conv_op,
                    below + skip,
                    features_per_stage[s],
                    kernel_sizes[-(s + 2)],
                    1,
                    n_conv_per_stage[s],
                    conv_kwargs,
                )
            )
            below = features_per_stage[s]
        self.upsamplers = nn.ModuleList(upsamplers)
        self.gates = nn.ModuleList(gates) if attention_gates else None
        self.stages = nn.ModuleList(stages)
        self.seg_layer = conv_op(below, num_classes, 1, 1, 0, bias=True)
        self.deep_supervision = deep_supervision

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = skips[-1]
        for s, (upsample, stage) in enumerate(zip(self.upsamplers, self.stages)):
            x = upsample(x)
            skip = skips[-(s + 2)]
            if self.gates is not None:
                skip = self.gates[s](skip, x)
            x = stage(torch.cat((x, skip), 1))
        logits = self.seg_layer(x)
        return [logits] if self.deep_supervision else logits


class ImprovedResUNet(nn.Module):
    """CLAHE -> residual encoder + Inception -> attention-gated residual decoder; returns logits."""

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        n_stages: int,
        features_per_stage: Sequence[int],
        features_per_stage_decoder: Sequence[int],
        conv_op: type[_ConvNd],
        kernel_sizes: Sequence,
        strides: Sequence,
        n_conv_per_stage: int | Sequence[int] = 3,
        n_conv_per_stage_decoder: int | Sequence[int] = 3,
        conv_bias: bool = True,
        norm_op: type[nn.Module] | None = None,
        norm_op_kwargs: dict | None = None,
        nonlin: type[nn.Module] = nn.LeakyReLU,
        nonlin_kwargs: dict | None = None,
        deep_supervision: bool = False,
        inception: bool = True,
        attention_gates: bool = True,
        clahe_clip_limit: float | None = 2.0,
        clahe_grid_size: Sequence[int] = (8, 8),
    ):
        super().__init__()
        for name, value in (
            ("features_per_stage", features_per_stage),
            ("kernel_sizes", kernel_sizes),
            ("strides", strides),
        ):
            if len(value) != n_stages:
                raise ValueError(f"{name} needs {n_stages} entries, got {value}")
        conv_kwargs = dict(
            conv_bias=conv_bias,
            norm_op=norm_op,
            norm_op_kwargs=norm_op_kwargs,
            dropout_op=None,
            dropout_op_kwargs=None,
            nonlin=nonlin,
            nonlin_kwargs=nonlin_kwargs,
        )
        # clahe_clip_limit None: no CLAHE (the ablation "without preprocessing").
        self.clahe = CLAHE(clahe_clip_limit, clahe_grid_size) if clahe_clip_limit is not None else nn.Identity()
        self.encoder = ImprovedResUNetEncoder(
            input_channels,
            features_per_stage,
            strides,
            kernel_sizes,
            _per_stage(n_conv_per_stage, n_stages),
            conv_op,
            conv_kwargs,
            inception,
        )
        self.decoder = ImprovedResUNetDecoder(
            self.encoder,
            features_per_stage_decoder,
            kernel_sizes,
            _per_stage(n_conv_per_stage_decoder, n_stages - 1),
            num_classes,
            conv_op,
            conv_kwargs,
            attention_gates,
            deep_supervision,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.encoder(self.clahe(x)))

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He initialisation, as nnU-Net applies to its own networks."""
        InitWeights_He(1e-2)(module)


def _pair(value) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _per_stage(value: int | Sequence[int], n_stages: int) -> list[int]:
    return [value] * n_stages if isinstance(value, int) else list(value)
