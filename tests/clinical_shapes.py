"""Synthetic apical LV masks for the clinical tests: central sections of truncated prolate ellipsoids.

An ellipsoid with long semi-axis `a` (vertical, apex at the top) and short semi-axes `b`, `c`, cut by a plane at
`t` mm below its centre (t = 0: a half-ellipsoid), has the analytic volume
pi b c [(a + t) - (a^3 + t^3) / (3 a^2)]; its two orthogonal central sections are the 2CH and 4CH masks.
"""

import numpy as np
import SimpleITK as sitk

LV, MYO, LA = 1, 2, 3


def truncated_ellipsoid_volume_ml(a: float, b: float, c: float, t: float = 0.0) -> float:
    """Volume in mL of the ellipsoid (semi-axes in mm) between its apex and the plane t mm below its centre."""
    return np.pi * b * c * ((a + t) - (a**3 + t**3) / (3 * a**2)) / 1000.0


def section_mask(
    a: float, b: float, t: float = 0.0, spacing=(0.3, 0.3), labels: bool = False, margin_mm: float = 12.0
) -> np.ndarray:
    """Central section (half-width b) as a mask, apex towards row 0; with `labels` a MYO rim and an LA below."""
    row_step, col_step = spacing
    rows = int(np.ceil((a + t + margin_mm + max(margin_mm, b)) / row_step))
    cols = int(np.ceil((2 * b + 2 * margin_mm) / col_step))
    depth = (np.arange(rows) + 0.5) * row_step - margin_mm  # mm below the apex
    across = (np.arange(cols) + 0.5) * col_step - cols * col_step / 2
    depth, across = np.meshgrid(depth, across, indexing="ij")
    height = a - depth  # mm above the ellipsoid centre
    lv = (height / a) ** 2 + (across / b) ** 2 <= 1
    above_base = height >= -t
    mask = np.zeros((rows, cols), dtype=np.uint8)
    if labels:
        wall = 0.3 * b
        outer = (height / (a + wall)) ** 2 + (across / (b + wall)) ** 2 <= 1
        mask[outer & above_base] = MYO
        base_half_width = b * np.sqrt(max(1 - (t / a) ** 2, 0.0))
        atrium = ((height + t) / (0.8 * base_half_width)) ** 2 + (across / base_half_width) ** 2 <= 1
        mask[atrium & ~above_base] = LA
    mask[lv & above_base] = LV
    return mask


def write_mask(path, mask: np.ndarray, spacing=(0.3, 0.3)) -> None:
    """Save a 2D mask as NIfTI with (row, col) spacing (SimpleITK stores (col, row))."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing((float(spacing[1]), float(spacing[0])))
    sitk.WriteImage(image, str(path), True)


def sequence_axes(n_frames: int, ed_frame: int, ed_axes, es_axes, period: int | None = None) -> list[tuple]:
    """Ellipsoid axes (a, b, c) per frame, moving from ED (largest) to ES (smallest) along a cosine cycle.

    Frame `ed_frame` (0-based) is ED and frame `ed_frame + period // 2` is ES; the other frames lie strictly
    between them, so the volume curve has its unique maximum at ED and minimum at ES.
    """
    period = period or n_frames
    fractions = (1 - np.cos(2 * np.pi * (np.arange(n_frames) - ed_frame) / period)) / 2
    ed_axes, es_axes = np.asarray(ed_axes, float), np.asarray(es_axes, float)
    return [tuple(ed_axes + f * (es_axes - ed_axes)) for f in fractions]


def sequence_masks(axes_per_frame, view: str, spacing=(0.5, 0.5), labels: bool = True) -> np.ndarray:
    """(T, H, W) label maps of one view of the ellipsoids (2CH shows b, 4CH shows c), padded to a common shape."""
    frames = [section_mask(a, b if view == "2CH" else c, 0.0, spacing, labels) for a, b, c in axes_per_frame]
    rows, cols = max(f.shape[0] for f in frames), max(f.shape[1] for f in frames)
    padded = np.zeros((len(frames), rows, cols), dtype=np.uint8)
    for index, frame in enumerate(frames):
        # anchor every frame at the same apex row and centre column
        left = (cols - frame.shape[1]) // 2
        padded[index, : frame.shape[0], left : left + frame.shape[1]] = frame
    return padded


def write_sequence(path, masks: np.ndarray, spacing=(0.5, 0.5)) -> None:
    """Save a (T, H, W) sequence as a 3D NIfTI with SimpleITK spacing (col, row, 1)."""
    image = sitk.GetImageFromArray(masks)
    image.SetSpacing((float(spacing[1]), float(spacing[0]), 1.0))
    sitk.WriteImage(image, str(path), True)
