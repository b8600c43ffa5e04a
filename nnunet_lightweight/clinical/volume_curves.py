"""LV area and volume curves of a segmented cine loop: every frame's single-plane Simpson volume, ED (largest) and
ES (smallest) frames, biplane volumes from a 2CH and a 4CH curve, and their plot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_lightweight.clinical.ejection_fraction import ALLOWED_LABELS, UNIT_ML, UNIT_PX, ejection_fraction
from nnunet_lightweight.clinical.volumes import (
    N_DISKS,
    DiskMeasurement,
    biplane_volume_from_disks,
    check_spacing,
    lv_area,
    measure_disks,
    single_plane_volume_from_disks,
)
from nnunet_lightweight.core.errors import InputError

_SEGMENT_HINT = "give a model to segment it"


def check_label_sequence(masks: np.ndarray, what: str) -> np.ndarray:
    """A (T, H, W) integer label-map sequence with values in 0-3; InputError naming `what` otherwise."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise InputError(f"{what}: expected (frames, rows, cols) label maps, got shape {masks.shape}")
    if not np.issubdtype(masks.dtype, np.integer):
        if not np.all(np.isfinite(masks)) or np.any(masks != np.round(masks)):
            raise InputError(f"{what} is not a label-map sequence (non-integer values: an image? {_SEGMENT_HINT})")
        masks = masks.astype(np.uint8)
    unexpected = sorted(set(np.unique(masks).tolist()) - ALLOWED_LABELS)
    if unexpected:
        raise InputError(f"{what} has values {unexpected[:5]} outside the labels 0-3 (an image? {_SEGMENT_HINT})")
    return masks


@dataclass
class VolumeCurve:
    """LV area and single-plane volume of every frame of one view, with its ED and ES frames (0-based)."""

    view: str
    areas: np.ndarray
    volumes: np.ndarray
    disks: list[DiskMeasurement | None]
    volume_unit: str
    ed_index: int
    es_index: int
    problems: list[str] = field(default_factory=list)

    @property
    def area_unit(self) -> str:
        return "mm^2" if self.volume_unit == UNIT_ML else "px^2"

    @property
    def edv(self) -> float:
        return float(self.volumes[self.ed_index])

    @property
    def esv(self) -> float:
        return float(self.volumes[self.es_index])

    @property
    def ef(self) -> float:
        return ejection_fraction(self.edv, self.esv)


def cine_volume_curve(
    masks: np.ndarray, spacing, view: str = "", n_disks: int = N_DISKS, volume_unit: str = UNIT_ML
) -> VolumeCurve:
    """Area and single-plane volume of every frame of a label-map sequence; ED = largest, ES = smallest volume.

    Volumes are in mL for mm spacing (`volume_unit="mL"`) or in px^3 (pass spacing (1, 1) and "px^3"). Frames
    without a measurable LV get NaN and are listed in `problems`; fewer than two measurable frames is an error.
    """
    if volume_unit not in (UNIT_ML, UNIT_PX):
        raise InputError(f"volume_unit must be {UNIT_ML!r} or {UNIT_PX!r}, got {volume_unit!r}")
    masks = check_label_sequence(masks, f"{view or 'sequence'} masks")
    spacing = check_spacing(spacing, f"{view or 'sequence'} spacing")
    scale = 1e-3 if volume_unit == UNIT_ML else 1.0
    areas, volumes, disks, problems = [], [], [], []
    for index, mask in enumerate(masks):
        areas.append(lv_area(mask, spacing, lv_label=1))
        try:
            measurement = measure_disks(mask, spacing, n_disks, lv_label=1, what=f"{view} frame {index + 1}".strip())
        except InputError as error:
            disks.append(None)
            volumes.append(np.nan)
            problems.append(str(error))
            continue
        disks.append(measurement)
        volumes.append(scale * single_plane_volume_from_disks(measurement))
    volumes = np.asarray(volumes)
    if np.isfinite(volumes).sum() < 2:
        raise InputError(
            f"{view or 'sequence'}: fewer than two frames with a measurable LV ({'; '.join(problems[:2])})"
        )
    return VolumeCurve(
        view,
        np.asarray(areas),
        volumes,
        disks,
        volume_unit,
        int(np.nanargmax(volumes)),
        int(np.nanargmin(volumes)),
        problems,
    )


def biplane_volume_curve(curve_2ch: VolumeCurve, curve_4ch: VolumeCurve) -> np.ndarray:
    """Biplane volume of every frame of two synchronised loops (same frame count); NaN where a view failed."""
    if len(curve_2ch.volumes) != len(curve_4ch.volumes):
        raise InputError(
            f"the 2CH and 4CH loops have {len(curve_2ch.volumes)} and {len(curve_4ch.volumes)} frames; "
            "a biplane curve needs synchronised loops"
        )
    scale = 1e-3 if curve_2ch.volume_unit == UNIT_ML else 1.0
    return np.array(
        [
            scale * biplane_volume_from_disks(d2, d4) if d2 is not None and d4 is not None else np.nan
            for d2, d4 in zip(curve_2ch.disks, curve_4ch.disks)
        ]
    )


def biplane_from_curves(curve_2ch: VolumeCurve, curve_4ch: VolumeCurve) -> dict:
    """Biplane EDV, ESV and EF from each view's own ED and ES frames."""
    if curve_2ch.volume_unit != curve_4ch.volume_unit:
        raise InputError(
            f"the 2CH loop is measured in {curve_2ch.volume_unit} and the 4CH loop in "
            f"{curve_4ch.volume_unit}; give both views physical spacing or both pixel units"
        )
    scale = 1e-3 if curve_2ch.volume_unit == UNIT_ML else 1.0
    edv = scale * biplane_volume_from_disks(curve_2ch.disks[curve_2ch.ed_index], curve_4ch.disks[curve_4ch.ed_index])
    esv = scale * biplane_volume_from_disks(curve_2ch.disks[curve_2ch.es_index], curve_4ch.disks[curve_4ch.es_index])
    return {"edv": edv, "esv": esv, "ef": ejection_fraction(edv, esv), "volume_unit": curve_2ch.volume_unit}


def plot_volume_curves(
    curves: list[VolumeCurve],
    path: Path,
    biplane: np.ndarray | None = None,
    frame_rates: dict[str, float | None] | None = None,
    title: str = "",
) -> None:
    """PNG of each view's volume (and area) curve with the ED and ES frames marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = len(curves) + (biplane is not None)
    figure, axes_list = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False)
    for axes, curve in zip(axes_list[0], curves):
        rate = (frame_rates or {}).get(curve.view)
        time = np.arange(len(curve.volumes)) / rate if rate else np.arange(1, len(curve.volumes) + 1)
        axes.plot(time, curve.volumes, "o-", color="tab:blue", markersize=3, label="single-plane volume")
        for index, name, colour in ((curve.ed_index, "ED", "tab:red"), (curve.es_index, "ES", "tab:green")):
            axes.axvline(time[index], color=colour, linestyle="--", linewidth=1)
            axes.plot(
                time[index],
                curve.volumes[index],
                "s",
                color=colour,
                markersize=8,
                label=f"{name}: frame {index + 1}, {curve.volumes[index]:.4g} {curve.volume_unit}",
            )
        axes.set_xlabel("time (s)" if rate else "frame")
        if not rate:
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(f"LV volume ({curve.volume_unit})")
        area_axes = axes.twinx()
        area_axes.plot(time, curve.areas, color="tab:grey", linestyle=":", linewidth=1)
        area_axes.set_ylabel(f"LV area ({curve.area_unit}, dotted)", color="tab:grey")
        axes.set_title(f"{curve.view}: single-plane EF {curve.ef:.1f} %")
        axes.legend(loc="best", fontsize=8)
    if biplane is not None:
        axes = axes_list[0][-1]
        frames = np.arange(1, len(biplane) + 1)
        axes.plot(frames, biplane, "o-", color="tab:purple", markersize=3, label="biplane volume")
        ed, es = int(np.nanargmax(biplane)), int(np.nanargmin(biplane))
        for index, name, colour in ((ed, "ED", "tab:red"), (es, "ES", "tab:green")):
            axes.axvline(frames[index], color=colour, linestyle="--", linewidth=1)
            axes.plot(
                frames[index], biplane[index], "s", color=colour, markersize=8, label=f"{name}: frame {index + 1}"
            )
        axes.set_xlabel("frame")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(f"LV volume ({curves[0].volume_unit})")
        axes.set_title(f"biplane (synchronised loops): EF {ejection_fraction(biplane[ed], biplane[es]):.1f} %")
        axes.legend(loc="best", fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
