"""Augmentation for LightEcho: the paper's affine-only scheme as a batchgeneratorsv2 transform.

Apical views have a fixed orientation (apex at the top, LV on one side), so nothing here mirrors.
Named schemes live in AUGMENTATIONS so that trainer variants select one by name.
"""
import math
from typing import Callable

import torch
import torch.nn.functional as F
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform


class RandomAffineTransform(BasicTransform):
    """Random shift, isotropic scale and rotation of a 2D sample; image bilinear, segmentation nearest.

    Ranges follow Albumentations' ShiftScaleRotate as used in the paper: shift is a fraction of the image
    size, scale a multiplicative factor, rotation in degrees; `p` is the probability of transforming a sample.
    Regions moved in from outside the frame are filled with the image minimum (the black outside the
    ultrasound sector) and background label 0.
    """

    def __init__(self, shift_fraction: float = 0.1, scale: tuple[float, float] = (0.8, 1.1),
                 rotation_degrees: float = 10.0, p: float = 0.5):
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
        return {"theta": self.theta(angle, scale, shift_xy, height, width),
                "angle": angle, "scale": scale, "shift_xy": shift_xy}

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
        warped = F.grid_sample((img - minimum)[None].float(), self._grid(img, params["theta"]), mode="bilinear",
                               padding_mode="zeros", align_corners=False)[0]
        return (warped + minimum).to(img.dtype)

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        if params["theta"] is None:
            return segmentation
        warped = F.grid_sample(segmentation[None].float(), self._grid(segmentation, params["theta"]),
                               mode="nearest", padding_mode="zeros", align_corners=False)[0]
        return warped.round().to(segmentation.dtype)


AUGMENTATIONS: dict[str, Callable[[], list[BasicTransform]]] = {
    "none": lambda: [],
    "affine": lambda: [RandomAffineTransform(shift_fraction=0.1, scale=(0.8, 1.1), rotation_degrees=10.0)],
}
