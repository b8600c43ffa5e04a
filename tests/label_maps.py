"""Label maps for the evaluation tests: a synthetic apical heart, written as nnU-Net writes predictions."""

from pathlib import Path

import numpy as np


def write_seg(path: Path, seg: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> Path:
    """Write a 2D label map the way nnU-Net writes predictions (SimpleITKIO.write_seg); spacing in (row, col)."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    properties = {"sitk_stuff": {"spacing": spacing[::-1], "origin": (0.0, 0.0), "direction": (1.0, 0.0, 0.0, 1.0)}}
    SimpleITKIO().write_seg(seg[None].astype(np.uint8), str(path), properties)
    return path


def synthetic_heart(size: int = 64) -> np.ndarray:
    """An apical-view-like frame: LV ellipse cut at the base, MYO shell open at the base, LA below touching the LV."""
    rows, cols = np.ogrid[:size, :size]
    above_base = rows <= 38
    lv = (((rows - 26) / 16) ** 2 + ((cols - 32) / 9) ** 2 <= 1) & above_base
    myo = (((rows - 26) / 20) ** 2 + ((cols - 32) / 13) ** 2 <= 1) & above_base & ~lv
    la = (((rows - 44) / 9) ** 2 + ((cols - 32) / 9) ** 2 <= 1) & ~above_base
    seg = np.zeros((size, size), np.uint8)
    seg[lv], seg[myo], seg[la] = 1, 2, 3
    return seg
