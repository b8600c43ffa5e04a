"""Anatomical plausibility of an apical 2CH/4CH segmentation (the paper's "anatomical outliers").

A frame is an anatomical outlier when at least one criterion fails. Criteria (connected components use
8-connectivity, like nnU-Net's connected-component post-processing; holes are background regions, 4-connected,
that do not reach the image border):

* `missing_LV`, `missing_MYO`, `missing_LA`: the structure has no pixel.
* `LV_fragmented`, `MYO_fragmented`, `LA_fragmented`: the structure has more than one connected component.
* `LV_hole`, `LA_hole`: pixels of another label or background enclosed by the LV (the LA).
* `LV_MYO_hole`: background enclosed by LV ∪ MYO (e.g. a gap between cavity and wall).
* `heart_hole`: a background region enclosed by LV ∪ MYO ∪ LA larger than `heart_hole_tolerance_px`; the expert
  masks of the 224×224 CAMUS copy have pinholes of up to 5 pixels where the three structures meet.
* `LV_not_enclosed`: more than `lv_background_tolerance_px` LV pixels touch outside background (background
  connected to the image border, or the border itself) farther than `base_margin_px` from the LA, i.e. the
  myocardium does not enclose the cavity except at the base (without an LA every contact counts). Enclosed
  background is left to the hole criteria.
* `LA_not_touching_LV`: LV and LA are both present but share no edge (no mitral plane).

Criteria that need a structure the label mapping does not name are skipped. Calibration: on all 1800 expert
masks of the 224×224 CAMUS copy every criterion passes with the default tolerances (see tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_FACE = ndimage.generate_binary_structure(2, 1)
_FULL = ndimage.generate_binary_structure(2, 2)


@dataclass(frozen=True)
class PlausibilityTolerances:
    """Pixel tolerances of the criteria; the defaults pass every expert mask of the 224×224 CAMUS copy."""

    heart_hole_tolerance_px: int = 10
    base_margin_px: float = 5.0
    lv_background_tolerance_px: int = 0


def criteria_names(labels: dict[str, int]) -> list[str]:
    """The criteria that apply to a label mapping, in report order."""
    present = [name for name in ("LV", "MYO", "LA") if name in labels]
    names = [f"missing_{name}" for name in present] + [f"{name}_fragmented" for name in present]
    names += [f"{name}_hole" for name in ("LV", "LA") if name in labels]
    if {"LV", "MYO"} <= labels.keys():
        names.append("LV_MYO_hole")
    if {"LV", "MYO", "LA"} <= labels.keys():
        names.append("heart_hole")
    if {"LV", "MYO"} <= labels.keys():
        names.append("LV_not_enclosed")
    if {"LV", "LA"} <= labels.keys():
        names.append("LA_not_touching_LV")
    return names


def check_plausibility(
    segmentation: np.ndarray, labels: dict[str, int], tolerances: PlausibilityTolerances = PlausibilityTolerances()
) -> dict[str, bool]:
    """{criterion: failed} for one 2D label map; see the module docstring for the criteria."""
    if segmentation.ndim != 2:
        raise ValueError(f"anatomical plausibility is defined for 2D frames, got shape {segmentation.shape}")
    masks = {name: segmentation == label for name, label in labels.items() if name in ("LV", "MYO", "LA")}
    failed: dict[str, bool] = {}
    for name, mask in masks.items():
        failed[f"missing_{name}"] = not mask.any()
    for name, mask in masks.items():
        failed[f"{name}_fragmented"] = ndimage.label(mask, _FULL)[1] > 1
    for name in ("LV", "LA"):
        if name in masks:
            failed[f"{name}_hole"] = _largest_hole(masks[name]) > 0
    lv, myo, la = masks.get("LV"), masks.get("MYO"), masks.get("LA")
    if lv is not None and myo is not None:
        failed["LV_MYO_hole"] = _largest_hole(lv | myo) > 0
    if lv is not None and myo is not None and la is not None:
        failed["heart_hole"] = _largest_hole(lv | myo | la) > tolerances.heart_hole_tolerance_px
    if lv is not None and myo is not None:
        failed["LV_not_enclosed"] = _lv_background_contact(segmentation, lv, la, tolerances) > (
            tolerances.lv_background_tolerance_px
        )
    if lv is not None and la is not None:
        failed["LA_not_touching_LV"] = bool(
            lv.any() and la.any() and not (lv & ndimage.binary_dilation(la, _FACE)).any()
        )
    return {name: bool(failed[name]) for name in criteria_names(labels)}


def _largest_hole(mask: np.ndarray) -> int:
    """Pixel count of the largest region enclosed by `mask` that is not part of it."""
    holes = ndimage.binary_fill_holes(mask) & ~mask
    if not holes.any():
        return 0
    labelled, count = ndimage.label(holes, _FACE)
    return int(np.bincount(labelled.ravel())[1:].max())


def _lv_background_contact(
    segmentation: np.ndarray, lv: np.ndarray, la: np.ndarray | None, tolerances: PlausibilityTolerances
) -> int:
    """LV pixels face-adjacent to outside background (or the image border), farther than the base margin from the LA.

    Background enclosed by the heart is left to the hole criteria, so that one defect fails one criterion.
    """
    outside = np.pad(~ndimage.binary_fill_holes(segmentation != 0), 1, constant_values=True)
    touching = lv & ndimage.binary_dilation(outside, _FACE)[1:-1, 1:-1]
    if la is not None and la.any():
        touching &= ndimage.distance_transform_edt(~la) > tolerances.base_margin_px
    return int(touching.sum())
