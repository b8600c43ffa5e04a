"""Cine loops: segment every frame, LV area and volume curves, automatic ED (largest) and ES (smallest) frames.

A sequence is a (frames, rows, cols) array: a CAMUS half-sequence NIfTI (`patientNNNN_4CH_half_sequence.nii.gz`,
read with SimpleITK, whose array order is (T, H, W) with the apex at row 0), any other 2D+t image SimpleITK reads,
a glob of 2D frame files, an AVI/MP4 video or a multi-frame DICOM (`core.video_readers.read_loop`: the luma of
colour frames, the pixel size of DICOM's SequenceOfUltrasoundRegions).
Frames are segmented by any callable `frames -> label maps`, e.g. `FastPredictor` (the one predictor of
`lightecho predict`, so a loop gives the same masks from both commands);
label-map sequences (e.g. CAMUS `_half_sequence_gt.nii.gz`) are measured directly.

Per view, every frame's LV area and single-plane Simpson volume form the curves (`clinical.volume_curves`:
`cine_volume_curve` takes ED as the frame of largest and ES as the frame of smallest volume); `cine` then finds the
beats over the whole loop (`clinical.beats.detect_beats`: ED peak to next ES trough), reports each beat's EF with
their mean and median, and takes the ED and ES of the representative beat (EF nearest the median), keeping the
largest and smallest volume where the loop holds no full beat (a CAMUS half-sequence runs from ED to ES only). With
both views, the biplane EDV and ESV combine each view's own ED and ES frames (the two views are separate
acquisitions); where both have the same number of frames, a biplane curve is also drawn, assuming the two loops are
synchronised (CAMUS half-sequences both run from ED to ES).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nnunet_lightweight.clinical.beats import detect_beats
from nnunet_lightweight.clinical.ejection_fraction import UNIT_ML, UNIT_PX
from nnunet_lightweight.clinical.volume_curves import (
    biplane_from_curves,
    biplane_volume_curve,
    check_label_sequence,
    cine_volume_curve,
    plot_volume_curves,
)
from nnunet_lightweight.clinical.volumes import (
    N_DISKS,
    check_spacing,
)
from nnunet_lightweight.conversion.camus import parse_info_file
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.output import OutputLayout, check_output_dir, staged_output
from nnunet_lightweight.core.video_readers import NO_SPACING, clip_kind, read_loop

Segmenter = Callable[[np.ndarray], np.ndarray]
# What `cine` writes: how an output folder of a version before the marker file is recognised.
CINE_LAYOUT = OutputLayout("cine.json", ("curves.csv", "volume_curve.png", "*_masks.nii.gz"))


def is_label_sequence(path: str | Path) -> bool:
    """Whether a sequence file holds label maps (integers 0-3) rather than grey-level frames to segment."""
    # read outside label_maps_of: a truncated or NaN file is that error, not "frames"
    return label_maps_of(read_loop(path).frames, path) is not None


def label_maps_of(frames: np.ndarray, path: str | Path) -> np.ndarray | None:
    """The frames of the sequence file `path` as label maps where they are label maps (integers 0-3 in an image
    file, e.g. a CAMUS `_half_sequence_gt.nii.gz` or a `<view>_masks.nii.gz` that `cine` wrote), else None.

    Such a file is measured as it is, never segmented (a network would see its labels as a nearly black clip).
    Videos and DICOM are always images: a dark decoded frame may hold nothing but values 0-3."""
    if clip_kind(path) in ("video", "dicom"):
        return None
    try:
        return check_label_sequence(frames, str(path))
    except InputError:
        return None


def segment_sequence(
    frames: np.ndarray, segmenter: Segmenter, spacing=None, coloured: np.ndarray | None = None
) -> np.ndarray:
    """Label maps (T, H, W) of every frame, from any callable mapping (T, H, W) frames to (T, H, W) label maps.

    A segmenter with a `spacing` or `coloured` keyword (like `FastPredictor`, which finds the ultrasound sector
    and keeps the reader's coloured overlay pixels out of it) also receives the frames' (row, col) spacing and the
    (H, W) pixels coloured in any frame.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise InputError(f"expected (frames, rows, cols), got shape {frames.shape}")
    parameters = inspect.signature(segmenter).parameters
    given = {"spacing": spacing, "coloured": coloured}
    masks = np.asarray(segmenter(frames, **{k: v for k, v in given.items() if k in parameters and v is not None}))
    if masks.shape != frames.shape:
        raise InputError(f"the segmenter returned shape {masks.shape} for frames of shape {frames.shape}")
    return check_label_sequence(masks, "segmenter output")


def _camus_info_beside(path: Path, view: str) -> dict:
    """The CAMUS Info_<view>.cfg next to a sequence file, if any (reference ED/ES frames and EF)."""

    if any(character in str(path) for character in "*?["):
        return {}
    info_path = Path(path).parent / f"Info_{view}.cfg"
    return parse_info_file(info_path) if info_path.is_file() else {}


def cine(
    output_dir: str | Path,
    sequence_2ch: str | Path | None = None,
    sequence_4ch: str | Path | None = None,
    segmenter: Segmenter | None = None,
    spacing: tuple[float, float] | None = None,
    units: str = "auto",
    n_disks: int = N_DISKS,
    overwrite: bool = False,
    save_masks: bool = True,
) -> dict:
    """Measure one or two cine loops and write `cine.json`, `curves.csv`, `volume_curve.png` (+ masks) to a folder.

    Without a `segmenter` the sequences must be label maps; a segmenter sees the frames with the file's own pixel
    size. `spacing` (row, col) in mm replaces the files' spacing for measuring. `units`: "auto" (mm where the
    spacing is given, where Info files sit beside the sequence, or where the file's spacing is not 1 x 1; pixels
    otherwise and for files without a pixel size, such as videos), "mm" or "px".
    """
    import pandas as pd

    if sequence_2ch is None and sequence_4ch is None:
        raise InputError("give a 2CH sequence, a 4CH sequence, or both")
    if units not in ("auto", "mm", "px"):
        raise InputError(f"units must be auto, mm or px, got {units!r}")
    output_dir = Path(output_dir)
    target = check_output_dir(
        output_dir,
        overwrite,
        layout=CINE_LAYOUT,
        inputs=[sequence_2ch, sequence_4ch, getattr(segmenter, "model_folder", None)],
    )  # a FastPredictor's model
    curves, sequences, masks_by_view, report_views = [], {}, {}, {}
    segmented = {"2CH", "4CH"} if segmenter is not None else set()
    for view, path in (("2CH", sequence_2ch), ("4CH", sequence_4ch)):
        if path is None:
            continue
        sequence = read_loop(path)
        info = _camus_info_beside(Path(str(path)), view)
        if sequence.frame_rate is None and isinstance(info.get("FrameRate"), (int, float)):
            sequence.frame_rate = float(info["FrameRate"])
        # The model sees the file's own pixel size (its training convention); `spacing` only changes the measuring.
        masks = label_maps_of(sequence.frames, path)
        if masks is None:
            masks = (
                segment_sequence(sequence.frames, segmenter, sequence.spacing, sequence.coloured)
                if segmenter is not None
                else check_label_sequence(sequence.frames, str(path))
            )
        else:
            segmented.discard(view)
        if spacing is not None:
            sequence.spacing, sequence.spacing_source = tuple(check_spacing(spacing, "spacing")), "given"
        # As for `lightecho ef`: CAMUS Info files beside the sequence mean a native release with spacing in mm.
        physical = units == "mm" or (
            units == "auto"
            and sequence.spacing_source != NO_SPACING
            and (sequence.spacing_source == "given" or bool(info) or not np.allclose(sequence.spacing, 1.0))
        )
        measure_spacing, unit = (sequence.spacing, UNIT_ML) if physical else ((1.0, 1.0), UNIT_PX)
        curve = cine_volume_curve(masks, measure_spacing, view, n_disks, unit)
        beats = detect_beats(curve.volumes, sequence.frame_rate)
        if not beats.measurable:  # e.g. a still clip: its max/min volumes would give an EF near 0 % as a number
            raise InputError(f"{path}: {view} EF not measurable: {beats.reason}")
        if beats.beats:  # the representative beat's frames; without a full beat the largest and smallest volume
            curve.ed_index, curve.es_index = beats.ed_frame, beats.es_frame
        curves.append(curve)
        sequences[view], masks_by_view[view] = sequence, masks
        report_views[view] = {
            "source": str(path),
            "n_frames": len(curve.volumes),
            "spacing": list(sequence.spacing),
            "spacing_source": sequence.spacing_source,
            "frame_rate": sequence.frame_rate,
            "volume_unit": unit,
            "ed_frame": curve.ed_index + 1,
            "es_frame": curve.es_index + 1,
            "edv": curve.edv,
            "esv": curve.esv,
            "ef_single_plane": curve.ef,
            "n_beats": len(beats.beats),
            "ef_beat_mean": beats.ef_mean if beats.beats else None,
            "ef_beat_median": beats.ef_median if beats.beats else None,
            "beats": [
                {"ed_frame": b.ed_frame + 1, "es_frame": b.es_frame + 1, "edv": b.edv, "esv": b.esv, "ef": b.ef}
                for b in beats.beats
            ],
            "beat_flags": beats.flags,
            "reference_ed_frame": info.get("ED"),
            "reference_es_frame": info.get("ES"),
            "reference_ef": info.get("EF"),
            "warnings": curve.problems,
        }
    segmented &= set(report_views)
    report = {"views": report_views, "frames_are_1_based": True, "n_disks": n_disks, "segmented": bool(segmented)}
    biplane = None
    if len(curves) == 2:
        report["biplane"] = biplane_from_curves(*curves)
        if len(curves[0].volumes) == len(curves[1].volumes):
            biplane = biplane_volume_curve(*curves)
    rows = []
    for curve in curves:
        rate = sequences[curve.view].frame_rate
        for index, (area, volume) in enumerate(zip(curve.areas, curve.volumes)):
            rows.append(
                {
                    "view": curve.view,
                    "frame": index + 1,
                    "time_s": index / rate if rate else np.nan,
                    "lv_area": area,
                    "area_unit": curve.area_unit,
                    "volume_single_plane": volume,
                    "volume_biplane": biplane[index] if biplane is not None else np.nan,
                    "volume_unit": curve.volume_unit,
                }
            )
    with staged_output(target) as staging:
        pd.DataFrame(rows).to_csv(staging / "curves.csv", index=False, float_format="%.4f")
        (staging / "cine.json").write_text(json.dumps(report, indent=1, default=float))
        ef_text = f"biplane EF {report['biplane']['ef']:.1f} %" if "biplane" in report else ""
        plot_volume_curves(
            curves,
            staging / "volume_curve.png",
            biplane,
            {view: s.frame_rate for view, s in sequences.items()},
            ef_text,
        )
        if save_masks and segmented:
            import SimpleITK as sitk

            for view in sorted(segmented):
                masks = masks_by_view[view]
                image = sitk.GetImageFromArray(masks.astype(np.uint8))
                spacing_row, spacing_col = sequences[view].spacing
                image.SetSpacing((spacing_col, spacing_row, 1.0))
                sitk.WriteImage(image, str(staging / f"{view}_masks.nii.gz"), True)
    return report
