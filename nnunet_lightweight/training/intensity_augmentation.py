"""Intensity and occlusion transforms for the paper's Table II configurations, on nnU-Net's z-scored frames.

Table II gives Albumentations inputs, which act on 8-bit frames (0 = black, 255 = white). The trainer sees
nnU-Net's z-scored intensities instead, so these transforms take each frame's minimum as black and its maximum
as white: one grey level of a frame is (max - min) / 255 of its z-scored units. Every frame of the CAMUS
release spans exactly 0..255, so on CAMUS this mapping reproduces the 8-bit operation exactly (up to rounding).
"""

import math

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import ImageOnlyTransform
from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform

GREY_LEVELS = 255


def grey_level(image: torch.Tensor) -> float:
    """One 8-bit grey level of `image` in its own units: its intensity range divided by 255."""
    return float(image.max() - image.min()) / GREY_LEVELS


class GreyLevelNoiseStd:
    """Noise std for batchgeneratorsv2's GaussianNoiseTransform, as Albumentations' GaussNoise(var_limit) samples it.

    GaussNoise draws a variance uniformly from `var_limit` in squared grey levels and adds noise of that
    variance; here the resulting std (sqrt of the variance, in grey levels) is converted to the frame's units.
    """

    def __init__(self, var_limit: tuple[float, float]):
        self.var_limit = var_limit

    def __call__(self, image: torch.Tensor, *args, **kwargs) -> float:
        return math.sqrt(np.random.uniform(*self.var_limit)) * grey_level(image)


class BlackLevelBrightnessTransform(MultiplicativeBrightnessTransform):
    """Brightness as on an 8-bit frame: intensities scale about black (the minimum) and saturate at white.

    batchgeneratorsv2's MultiplicativeBrightnessTransform scales about zero, which on z-scored data is the frame
    mean, i.e. a contrast change; Albumentations' ColorJitter brightness multiplies grey levels (black stays
    black) and clips at 255.
    """

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        for channel, multiplier in zip(params["apply_to_channel"], params["multipliers"]):
            x = img[channel]
            black, white = torch.aminmax(x)
            x.sub_(black).mul_(multiplier).add_(black).clamp_(max=white)
        return img


class BlackoutRectangleTransform(ImageOnlyTransform):
    """With probability `p`, paint one axis-aligned rectangle black (the frame minimum); labels are unchanged.

    Each side is drawn uniformly from the integers in `side` (inclusive, pixels; clipped to the frame) and the
    position uniformly among those that keep the rectangle inside the frame, as Albumentations' CoarseDropout
    with one hole does. The segmentation keeps the occluded structures, so the network learns to fill them in.
    """

    def __init__(self, side: tuple[int, int] = (25, 65), p: float = 0.25):
        super().__init__()
        self.side = side
        self.p = p

    def get_parameters(self, **data_dict) -> dict:
        if torch.rand(1).item() >= self.p:
            return {"rectangle": None}
        height, width = data_dict["image"].shape[-2:]
        rect_height = min(height, int(torch.randint(self.side[0], self.side[1] + 1, (1,))))
        rect_width = min(width, int(torch.randint(self.side[0], self.side[1] + 1, (1,))))
        top = int(torch.randint(0, height - rect_height + 1, (1,)))
        left = int(torch.randint(0, width - rect_width + 1, (1,)))
        return {"rectangle": (top, left, rect_height, rect_width)}

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        if params["rectangle"] is None:
            return img
        top, left, height, width = params["rectangle"]
        black = img.flatten(1).amin(1)
        img[..., top : top + height, left : left + width] = black.view(-1, *[1] * (img.ndim - 1)).to(img.dtype)
        return img
