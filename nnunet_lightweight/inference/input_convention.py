"""The input convention a model was trained with, and how a frame of any size is brought to it and back.

The 224x224 CAMUS copy has no physical spacing, so a model trained on it knows only a geometric convention: the
ultrasound sector's bounding box resized to 224x224, apex up. A model folder records it in
`input_convention.json`; the predictor then finds the sector of every frame or cine loop (`core.sector`: clip-wide,
with the reader's coloured pixels, so that an ECG trace or coloured text beside the sector neither widens the box
nor reaches the network), blanks what lies outside it, crops its bounding box, resizes that to the convention's
size, segments it, and pastes the masks back at the input's own size, background outside the sector.
Stock nnU-Net commands resample by header spacing instead, so they need frames already in the convention.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.sector import Sector, find_sector

CONVENTION_FILE = "input_convention.json"
SECTOR_BOUNDING_BOX = "sector_bounding_box"


@dataclass(frozen=True)
class InputConvention:
    """Frames are the sector's bounding box resized to `frame_size` (rows, cols), apex up."""

    frame_size: tuple[int, int]
    kind: str = SECTOR_BOUNDING_BOX

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "frame_size": list(self.frame_size),
            "apex": "up",
            "description": f"the ultrasound sector's bounding box resized to {self.frame_size[0]}x"
            f"{self.frame_size[1]} pixels, apex up; grey levels as in the training files",
        }

    def write(self, model_folder: str | Path) -> Path:
        path = Path(model_folder) / CONVENTION_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def of_model_folder(cls, model_folder: str | Path) -> InputConvention | None:
        """The convention recorded in `model_folder`, or None where it records none (frames are used as given)."""
        path = Path(model_folder) / CONVENTION_FILE
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
            if record["kind"] != SECTOR_BOUNDING_BOX:
                raise ValueError(f"unknown kind {record['kind']!r}")
            rows, cols = (int(s) for s in record["frame_size"])
        except (ValueError, KeyError, TypeError) as error:
            raise InputError(f"{path}: not a valid input convention ({error})") from None
        return cls((rows, cols))

    def place(self, frames: np.ndarray, coloured: np.ndarray | None = None) -> Placement | None:
        """Where frames (..., rows, cols) sit in the convention, or None for frames of the convention's size.

        `coloured`: the (rows, cols) pixels the reader found coloured in any frame (never sector). Frames of
        exactly the convention's size are taken as given: in the training frames themselves a dim sector side
        can make the detected sector narrower than the frame, and re-cropping them would change their scale.
        """
        rows, cols = frames.shape[-2:]
        if (rows, cols) == self.frame_size:
            return None
        return Placement((rows, cols), find_sector(frames.reshape(-1, rows, cols), coloured), self.frame_size)


@dataclass(frozen=True)
class Placement:
    """A clip's sector and the convention's size: `to_model` blanks, crops and resizes, `to_input` maps masks back."""

    input_shape: tuple[int, int]
    sector: Sector
    model_shape: tuple[int, int]

    @property
    def box(self) -> tuple[slice, slice]:
        return self.sector.box

    def to_model(self, frame: np.ndarray) -> np.ndarray:
        """`frame` (..., rows, cols) blank outside the sector, its box linearly resized to the model's size (float32)."""
        crop = self.sector.masked(np.asarray(frame, dtype=np.float32))[(..., *self.box)]
        # torch's bilinear resize (pixel areas aligned, edges clamped) is scipy's zoom(order=1, mode="nearest",
        # grid_mode=True) to float rounding, vectorised and threaded: scipy's spline zoom was the largest cost
        # outside the network in the video benchmark (about 18 ms per frame on a loaded 2-core AVX2 machine).
        stack = torch.from_numpy(np.ascontiguousarray(crop)).reshape(-1, 1, *crop.shape[-2:])
        resized = torch.nn.functional.interpolate(stack, size=self.model_shape, mode="bilinear", align_corners=False)
        return resized.reshape(*crop.shape[:-2], *self.model_shape).numpy()

    def to_input(self, mask: np.ndarray) -> np.ndarray:
        """A label map (..., model rows, model cols) at the input's own size: nearest-neighbour into the box,
        background outside the sector (nothing was shown to the network there)."""
        box_shape = [s.stop - s.start for s in self.box]
        rows, cols = (nearest_source_indices(m, b) for m, b in zip(mask.shape[-2:], box_shape))
        resized = mask[..., rows[:, None], cols[None, :]]
        full = np.zeros((*mask.shape[:-2], *self.input_shape), dtype=mask.dtype)
        full[(..., *self.box)] = resized
        return self.sector.masked(full)


def nearest_source_indices(source: int, target: int) -> np.ndarray:
    """For each target pixel, the source pixel nearest its centre: scipy's zoom(order=0, grid_mode=True), edges
    clamped, as an index array (a fancy-indexing gather instead of a spline evaluation per pixel)."""
    centres = (np.arange(target) + 0.5) * (source / target) - 0.5
    return np.clip(np.floor(centres + 0.5), 0, source - 1).astype(np.int64)
