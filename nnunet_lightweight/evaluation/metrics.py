"""Per-structure overlap and contour-distance metrics: Dice, Hausdorff distance, HD95 and mean absolute distance.

Definitions (for one structure, prediction P and reference R, both binary masks):

* Dice = 2 |P ∩ R| / (|P| + |R|).
* Contours are the mask pixels with at least one 4-neighbour (face neighbour) outside the mask.
* Surface distances are symmetric: the distance from every contour pixel of P to the nearest contour pixel of R,
  pooled with the distance from every contour pixel of R to the nearest contour pixel of P (Euclidean distance
  transform, `sampling=spacing` for millimetres, so anisotropic spacing is exact).
* HD (Hausdorff) = maximum of the pooled distances; HD95 = 95th percentile of the pooled distances (linear
  interpolation); MAD = mean of the pooled distances (mean absolute distance between the two contours).

Empty masks: both empty gives Dice 1 and distances 0; exactly one empty gives Dice 0 and every distance set to
the image diagonal (in pixels, or in mm from the spacing), the largest distance two pixels of the image can have,
so that means stay finite and such a case counts as the worst possible. `empty_pred` / `empty_ref` flag them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

DISTANCE_METRICS = ("hd", "hd95", "mad")
METRICS = ("dice", *DISTANCE_METRICS)


def dice_score(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient of two binary masks; 1.0 when both are empty."""
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def contour(mask: np.ndarray) -> np.ndarray:
    """Mask pixels that have a face neighbour outside the mask (pixels on the image border count as contour)."""
    eroded = ndimage.binary_erosion(mask, ndimage.generate_binary_structure(mask.ndim, 1), border_value=0)
    return mask & ~eroded


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...] | None = None) -> np.ndarray:
    """Pooled symmetric contour distances between two non-empty binary masks (pixels, or physical with `spacing`)."""
    pred_contour, ref_contour = contour(pred), contour(ref)
    to_ref = ndimage.distance_transform_edt(~ref_contour, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~pred_contour, sampling=spacing)
    return np.concatenate([to_ref[pred_contour], to_pred[ref_contour]])


def image_diagonal(shape: tuple[int, ...], spacing: tuple[float, ...] | None = None) -> float:
    """Distance between opposite corner pixels of an image: the penalty distance for an empty mask."""
    steps = spacing or (1.0,) * len(shape)
    return math.sqrt(sum(((n - 1) * s) ** 2 for n, s in zip(shape, steps)))


def structure_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float | bool]:
    """Dice, HD, HD95 and MAD of one structure, distances in pixels and in mm (`*_mm`), plus empty-mask flags."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    result: dict[str, float | bool] = {
        "dice": dice_score(pred, ref),
        "empty_pred": not pred.any(),
        "empty_ref": not ref.any(),
        "pred_pixels": int(pred.sum()),
        "ref_pixels": int(ref.sum()),
    }
    if result["empty_pred"] or result["empty_ref"]:
        both_empty = result["empty_pred"] and result["empty_ref"]
        penalty_px = 0.0 if both_empty else image_diagonal(pred.shape)
        penalty_mm = 0.0 if both_empty else image_diagonal(pred.shape, spacing)
        result.update({name: penalty_px for name in DISTANCE_METRICS})
        result.update({f"{name}_mm": penalty_mm for name in DISTANCE_METRICS})
        return result
    pixels = surface_distances(pred, ref)
    isotropic = all(math.isclose(s, spacing[0]) for s in spacing)
    # With isotropic spacing the physical distances are the pixel distances scaled; skip the second transform.
    physical = pixels * spacing[0] if isotropic else surface_distances(pred, ref, spacing)
    for suffix, distances in (("", pixels), ("_mm", physical)):
        result[f"hd{suffix}"] = float(distances.max())
        result[f"hd95{suffix}"] = float(np.percentile(distances, 95))
        result[f"mad{suffix}"] = float(distances.mean())
    return result


def segmentation_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], labels: dict[str, int]
) -> list[dict[str, float | bool | str]]:
    """One row of `structure_metrics` per structure of a label map pair."""
    return [
        {"structure": name, **structure_metrics(pred == label, ref == label, spacing)} for name, label in labels.items()
    ]
