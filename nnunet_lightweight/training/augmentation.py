"""Augmentation for LightEcho: the paper's affine-only scheme as a batchgeneratorsv2 transform.

Apical views have a fixed orientation (apex at the top, LV on one side), so nothing here mirrors.
Named schemes live in AUGMENTATIONS so that trainer variants select one by name: 'none', 'affine' (the final
model) and 'config_I' ... 'config_V' (the paper's Table II, see TABLE_II).
"""

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform

from nnunet_lightweight.training.intensity_augmentation import (
    BlackLevelBrightnessTransform,
    BlackoutRectangleTransform,
    GreyLevelNoiseStd,
)


class RandomAffineTransform(BasicTransform):
    """Random shift, isotropic scale and rotation of a 2D sample; image bilinear, segmentation nearest.

    Ranges follow Albumentations' ShiftScaleRotate as used in the paper: shift is a fraction of the image
    size, scale a multiplicative factor, rotation in degrees; `p` is the probability of transforming a sample.
    Regions moved in from outside the frame are filled with the image minimum (the black outside the
    ultrasound sector) and background label 0.
    """

    def __init__(
        self,
        shift_fraction: float = 0.1,
        scale: tuple[float, float] = (0.8, 1.1),
        rotation_degrees: float = 10.0,
        p: float = 0.5,
    ):
        super().__init__()
        self.shift_fraction = shift_fraction
        self.scale = scale
        self.rotation_degrees = rotation_degrees
        self.p = p

    def get_parameters(self, **data_dict) -> dict:
        if torch.rand(1).item() >= self.p:
            return {"theta": None}
        angle = math.radians(float(torch.empty(1).uniform_(-self.rotation_degrees, self.rotation_degrees)))
        scale = float(torch.empty(1).uniform_(*self.scale))
        shift_xy = torch.empty(2).uniform_(-self.shift_fraction, self.shift_fraction)
        height, width = data_dict["image"].shape[-2:]
        return {
            "theta": self.theta(angle, scale, shift_xy, height, width),
            "angle": angle,
            "scale": scale,
            "shift_xy": shift_xy,
        }

    @staticmethod
    def theta(angle: float, scale: float, shift_xy: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Output-to-input map in affine_grid's normalized coordinates for a rotation/scale/shift in pixels."""
        cos, sin = math.cos(angle), math.sin(angle)
        inverse = torch.tensor([[cos, sin], [-sin, cos]], dtype=torch.float32) / scale
        # Normalized coordinates stretch x and y differently on non-square frames: conjugate so that the
        # rotation happens in pixel space and does not shear.
        inverse = inverse * torch.tensor([[1.0, height / width], [width / height, 1.0]])
        # A shift of f frame sizes is 2f in normalized coordinates; sampling applies the inverse map.
        translation = -inverse @ (2 * shift_xy.float())
        return torch.cat((inverse, translation[:, None]), 1)

    @staticmethod
    def _grid(tensor: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return F.affine_grid(theta[None], [1, tensor.shape[0], *tensor.shape[-2:]], align_corners=False)

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        if params["theta"] is None:
            return img
        minimum = img.amin(dim=(1, 2), keepdim=True)
        warped = F.grid_sample(
            (img - minimum)[None].float(),
            self._grid(img, params["theta"]),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )[0]
        return (warped + minimum).to(img.dtype)

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        if params["theta"] is None:
            return segmentation
        warped = F.grid_sample(
            segmentation[None].float(),
            self._grid(segmentation, params["theta"]),
            mode="nearest",
            padding_mode="zeros",
            align_corners=False,
        )[0]
        return warped.round().to(segmentation.dtype)


@dataclass(frozen=True)
class Table2Config:
    """One row of the paper's Table II, in the Albumentations terms it is given in (8-bit frames)."""

    shift_limit: float  # ShiftScaleRotate: shift up to this fraction of the frame size, per axis
    scale_limit: tuple[float, float]  # ShiftScaleRotate: scale factor 1 + U(scale_limit)
    rotate_limit: float  # ShiftScaleRotate: rotation U(-rotate_limit, rotate_limit) degrees
    gamma_limit: tuple[float, float]  # RandomGamma: gamma = U(gamma_limit) / 100
    var_limit: tuple[float, float]  # GaussNoise: noise variance U(var_limit), in squared grey levels
    blackout_p: float  # probability of one black rectangle with sides U(25, 65) px
    jitter: tuple[float, float]  # ColorJitter brightness, contrast (and saturation) factors
    hue: tuple[float, float]  # ColorJitter hue shift; recorded, but a no-op on grey frames


# Table II. Its shift column reads "(-0.05, 5)", "(-0.10, 10)", ...: the upper bounds lost their "0.", as the
# Affine row "(-0.1, 0.1)" and Albumentations' symmetric shift_limit show.
TABLE_II: dict[str, Table2Config] = {
    "I": Table2Config(0.05, (-0.1, 0.05), 5, (90, 110), (5, 10), 0.25, (0.95, 1.05), (-0.05, 0.05)),
    "II": Table2Config(0.10, (-0.2, 0.1), 10, (85, 115), (10, 25), 0.25, (0.90, 1.10), (-0.10, 0.10)),
    "III": Table2Config(0.15, (-0.3, 0.15), 15, (80, 120), (20, 35), 0.25, (0.85, 1.15), (-0.15, 0.15)),
    "IV": Table2Config(0.20, (-0.4, 0.20), 20, (70, 130), (30, 45), 0.25, (0.80, 1.20), (-0.20, 0.20)),
    "V": Table2Config(0.25, (-0.5, 0.25), 30, (60, 140), (40, 50), 0.25, (0.75, 1.25), (-0.25, 0.25)),
}
# Albumentations' default probability of ShiftScaleRotate, RandomGamma, GaussNoise and ColorJitter.
ALBUMENTATIONS_P = 0.5
BLACKOUT_SIDE = (25, 65)


def table2_transforms(config: Table2Config) -> list[BasicTransform]:
    """The transforms of one Table II configuration, mapped onto nnU-Net's z-scored frames.

    Order: geometry, gamma, noise, brightness/contrast, blackout. Gamma works on the min-max normalised frame
    (GammaTransform), i.e. on grey levels / 255 as RandomGamma does; noise and brightness use the frame's grey
    level (intensity_augmentation); contrast scales about the frame mean and clips to its range, as ColorJitter
    does on 8-bit frames. Hue and saturation change nothing on a grey frame (zero saturation, no hue), so they
    are left out.
    """
    scale = (1 + config.scale_limit[0], 1 + config.scale_limit[1])
    gamma = (config.gamma_limit[0] / 100, config.gamma_limit[1] / 100)
    return [
        RandomAffineTransform(config.shift_limit, scale, config.rotate_limit, p=ALBUMENTATIONS_P),
        RandomTransform(
            GammaTransform(gamma, p_invert_image=0, synchronize_channels=True, p_per_channel=1, p_retain_stats=0),
            ALBUMENTATIONS_P,
        ),
        RandomTransform(
            GaussianNoiseTransform(GreyLevelNoiseStd(config.var_limit), p_per_channel=1, synchronize_channels=True),
            ALBUMENTATIONS_P,
        ),
        RandomTransform(
            ComposeTransforms(
                [
                    BlackLevelBrightnessTransform(config.jitter, synchronize_channels=True),
                    ContrastTransform(config.jitter, preserve_range=True, synchronize_channels=True),
                ]
            ),
            ALBUMENTATIONS_P,
        ),
        BlackoutRectangleTransform(BLACKOUT_SIDE, p=config.blackout_p),
    ]


AUGMENTATIONS: dict[str, Callable[[], list[BasicTransform]]] = {
    "none": lambda: [],
    "affine": lambda: [RandomAffineTransform(shift_fraction=0.1, scale=(0.8, 1.1), rotation_degrees=10.0)],
    **{f"config_{name}": partial(table2_transforms, config) for name, config in TABLE_II.items()},
}
