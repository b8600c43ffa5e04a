"""Per-patient EDV, ESV and EF from folders of apical 2CH/4CH ED/ES masks, with reference values where available.

Masks are found as `<patient>_<2CH|4CH>_<ED|ES>.nii.gz` (nnU-Net raw/prediction folders) or
`<patient>_<view>_<phase>_gt.nii.gz` (CAMUS patient folders, whose other files are images), in the given folder
and one level of sub-folders (a CAMUS `database_nifti/` root or a patient folder both work).

Units: volumes are in mL where the header spacing is physical (mm) and in pixel^3 ("px^3") otherwise. The
`camus_metadata.json` sidecar of a converted dataset says which (`spacing_is_physical`); CAMUS Info files beside
the masks (native release) mean mm; otherwise a header spacing of exactly 1 x 1 is taken to mean pixels (the
224 x 224 CAMUS copy) and any other spacing mm.
EF = 100 (EDV - ESV) / EDV is unit-free.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nnunet_lightweight.clinical.agreement import agreement, agreement_markdown, ef_distribution, save_agreement_plots
from nnunet_lightweight.clinical.volumes import (
    N_DISKS,
    DiskMeasurement,
    biplane_volume_from_disks,
    measure_disks,
    single_plane_volume_from_disks,
)
from nnunet_lightweight.conversion.camus import parse_info_file
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import check_same_grid, read_segmentation
from nnunet_lightweight.core.labels import CASE_ID_REGEX, LABELS, PHASES, VIEWS
from nnunet_lightweight.core.metadata import find_metadata, metadata_patients, read_metadata
from nnunet_lightweight.core.output import OutputLayout, check_output_dir, staged_output

if TYPE_CHECKING:
    from nnunet_lightweight.inference.settings import PredictorSettings

ALLOWED_LABELS = set(LABELS.values())
MASK_FILE = re.compile(rf"^{CASE_ID_REGEX}(?P<gt>_gt)?\.nii(?:\.gz)?$")
INFO_FILE = re.compile(r"^Info_(?P<view>2CH|4CH)\.cfg$")
UNIT_ML, UNIT_PX = "mL", "px^3"
UNIT_MODES = ("auto", "mm", "px")
# What `ef` writes: how an output folder of a version before the marker file is recognised.
EF_LAYOUT = OutputLayout("ef.csv", ("agreement.json", "agreement.md", "bland_altman_*.png", "scatter_*.png"))
# Info-file keys of the reference clinical values (CAMUS: the same biplane values in both views' files).
INFO_KEYS = {"edv": "LVedv", "esv": "LVesv", "ef": "EF"}


@dataclass(frozen=True)
class PatientVolumes:
    """EDV and ESV (in `volume_unit`), EF (%) and the method used for one patient."""

    patient: str
    edv: float
    esv: float
    ef: float
    method: str
    volume_unit: str


def ejection_fraction(edv: float, esv: float) -> float:
    """EF in % = 100 (EDV - ESV) / EDV."""
    if not edv > 0:
        raise InputError(f"EDV must be positive to compute an ejection fraction, got {edv}")
    return 100.0 * (edv - esv) / edv


def find_mask_files(folder: Path) -> dict[str, dict[tuple[str, str], Path]]:
    """{patient: {(view, phase): file}} for the ED/ES masks in `folder` and its immediate sub-folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"mask folder not found: {folder}")
    found: dict[str, dict[tuple[str, str], Path]] = {}
    for directory in [folder, *sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        matches = [(path, MASK_FILE.match(path.name)) for path in sorted(directory.iterdir()) if path.is_file()]
        matches = [(path, match) for path, match in matches if match]
        # In a CAMUS patient folder `<case>.nii.gz` is the image and `<case>_gt.nii.gz` its label.
        if any(match["gt"] for _, match in matches):
            matches = [(path, match) for path, match in matches if match["gt"]]
        for path, match in matches:
            frames = found.setdefault(match["patient"], {})
            key = (match["view"], match["phase"])
            if key in frames:
                raise InputError(f"two masks for {match['patient']} {key[0]} {key[1]}: {frames[key]} and {path}")
            frames[key] = path
    return found


def read_mask(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """A 2D label map (0 bg, 1 LV, 2 MYO, 3 LA) and its (row, col) spacing; InputError naming the file."""
    mask, spacing = read_segmentation(path)
    if mask.ndim != 2:
        raise InputError(f"{path} is not a 2D mask: shape {mask.shape}")
    unexpected = sorted(set(np.unique(mask).tolist()) - ALLOWED_LABELS)
    if unexpected:
        raise InputError(f"{path} has values {unexpected[:5]} outside the labels 0-3 (an image, not a mask?)")
    return mask, (float(spacing[0]), float(spacing[1]))


def find_info_files(folder: Path) -> dict[str, dict[str, dict]]:
    """{patient: {view: Info fields}} from CAMUS `Info_2CH.cfg` / `Info_4CH.cfg` files in patient folders.

    The patient is the name of the folder holding the files; `folder` may be a patient folder or a database root.
    """

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"CAMUS Info folder not found: {folder}")
    info: dict[str, dict[str, dict]] = {}
    for directory in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]:
        for path in sorted(directory.iterdir()):
            match = INFO_FILE.match(path.name)
            if match and path.is_file():
                info.setdefault(directory.name, {})[match["view"]] = parse_info_file(path)
    return info


def info_from_metadata(entry: dict) -> dict[str, dict]:
    """{view: Info fields} of one metadata entry (`views.<view>.info` or `<view>` directly)."""
    views = entry.get("views", entry)
    info = {}
    for view in VIEWS:
        fields = views.get(view) if isinstance(views, dict) else None
        if isinstance(fields, dict) and isinstance(fields.get("info"), dict):
            fields = fields["info"]
        if isinstance(fields, dict) and any(key in fields for key in INFO_KEYS.values()):
            info[view] = fields
    return info


def reference_from_info(info: dict[str, dict]) -> dict[str, float]:
    """{edv, esv, ef} from Info fields (2CH file first, then 4CH); keys without a number are left out."""
    values: dict[str, float] = {}
    for view in VIEWS:
        for name, key in INFO_KEYS.items():
            value = info.get(view, {}).get(key)
            if name not in values and isinstance(value, (int, float)) and math.isfinite(value):
                values[name] = float(value)
    return values


def _resolve_spacings(
    patient: str, spacings: dict[tuple[str, str], tuple[float, float]], files: dict, units: str, physical: bool | None
) -> tuple[dict[tuple[str, str], tuple[float, float]], str]:
    """The spacings to measure with and the volume unit, after checking they are consistent within the patient."""
    for view in VIEWS:
        if (
            (view, "ED") in spacings
            and (view, "ES") in spacings
            and not np.allclose(spacings[view, "ED"], spacings[view, "ES"], rtol=1e-3)
        ):
            raise InputError(
                f"{patient}: inconsistent spacing between {files[view, 'ED']} {spacings[view, 'ED']} and "
                f"{files[view, 'ES']} {spacings[view, 'ES']} (ED and ES of one view share a "
                "sequence)"
            )
    unit_spacing = {key: bool(np.allclose(value, 1.0, rtol=0, atol=1e-9)) for key, value in spacings.items()}
    if units == "px" or (units == "auto" and physical is False):
        return {key: (1.0, 1.0) for key in spacings}, UNIT_PX
    if units == "mm" or physical is True:
        return spacings, UNIT_ML
    if all(unit_spacing.values()):
        return {key: (1.0, 1.0) for key in spacings}, UNIT_PX
    if any(unit_spacing.values()):
        ones = [str(files[key]) for key, is_one in unit_spacing.items() if is_one]
        raise InputError(
            f"{patient}: some masks have a 1 x 1 header spacing ({ones[0]}) and others not; say "
            "which units apply (metadata sidecar, or units='mm' / 'px')"
        )
    return spacings, UNIT_ML


def patient_volumes(
    patient: str,
    files: dict[tuple[str, str], Path],
    units: str = "auto",
    physical: bool | None = None,
    n_disks: int = N_DISKS,
    camus_exact: bool = False,
) -> PatientVolumes:
    """EDV, ESV and EF of one patient from its mask files (biplane, or single-plane where one view is absent).

    `units`: "auto" (metadata's `physical`, else 1 x 1 spacing means pixels), "mm" or "px".

    `camus_exact` follows the official CAMUS EF script (script_camus_ef): diameters at the basal end of each disk
    and one disk height, from the longest of the four long axes, for both ED and ES. Its bias: +3.3 % on a
    half-ellipsoid from the placement, and the ES volume is scaled by L_ED / L_ES from the common height. On the
    450 expert-annotated CAMUS patients of the 224 x 224 copy it gives EDV x1.001, ESV x1.18 and EF 7.7 +- 2.7
    points lower than the default. (The script's pixel walk, which never measures a half-diameter below 8 pixels,
    is not reproduced: diameters are always exact cross-sections.)
    """
    if units not in UNIT_MODES:
        raise InputError(f"units must be one of {UNIT_MODES}, got {units!r}")
    views = [view for view in VIEWS if any((view, phase) in files for phase in PHASES)]
    if not views:
        raise InputError(f"{patient}: no 2CH or 4CH ED/ES masks")
    for view in views:
        for phase in PHASES:
            if (view, phase) not in files:
                present = files[view, "ES" if phase == "ED" else "ED"]
                raise InputError(
                    f"{patient}: {view} {phase} mask missing (found {present.name} but no "
                    f"{patient}_{view}_{phase} mask beside it)"
                )
    masks, spacings = {}, {}
    for key, path in files.items():
        masks[key], spacings[key] = read_mask(path)
    spacings, unit = _resolve_spacings(patient, spacings, files, units, physical)
    placement = "camus" if camus_exact else "midpoint"
    disks: dict[tuple[str, str], DiskMeasurement] = {}
    for key, mask in masks.items():
        try:
            disks[key] = measure_disks(mask, spacings[key], n_disks, placement, lv_label=1, what=str(files[key]))
        except InputError as error:
            raise InputError(f"{patient}: {error}") from None
    scale = 1e-3 if unit == UNIT_ML else 1.0  # mm^3 -> mL
    volumes = {}
    if len(views) == 2:
        common_length = max(d.axis.length for d in disks.values()) if camus_exact else None
        for phase in PHASES:
            volumes[phase] = scale * biplane_volume_from_disks(disks["2CH", phase], disks["4CH", phase], common_length)
        method = "biplane"
    else:
        view = views[0]
        common_length = max(disks[view, phase].axis.length for phase in PHASES) if camus_exact else None
        for phase in PHASES:
            volumes[phase] = scale * single_plane_volume_from_disks(disks[view, phase], common_length)
        method = f"single_plane_{view}"
    if camus_exact:
        method += "_camus"
    return PatientVolumes(
        patient, volumes["ED"], volumes["ES"], ejection_fraction(volumes["ED"], volumes["ES"]), method, unit
    )


def _measure_folder(
    folder: Path,
    files_by_patient: dict[str, dict[tuple[str, str], Path]],
    units: str,
    physical_by_patient: dict[str, bool | None],
    n_disks: int,
    camus_exact: bool,
    strict: bool | None,
    problems: list[str],
    progress: bool,
    only: set[str] | None = None,
) -> dict[str, PatientVolumes]:
    if not files_by_patient:
        raise InputError(f"no <patient>_<2CH|4CH>_<ED|ES>.nii.gz masks in {folder} or its sub-folders")
    if only is not None:
        unmatched = sorted(set(files_by_patient) - only)
        if unmatched:
            problems.append(
                f"{len(unmatched)} patient(s) in {folder} not measured (no measured predictions): "
                f"{', '.join(unmatched[:5])}{' ...' if len(unmatched) > 5 else ''}"
            )
        files_by_patient = {p: files for p, files in files_by_patient.items() if p in only}
    strict = len(files_by_patient) == 1 if strict is None else strict
    results = {}
    for index, (patient, files) in enumerate(sorted(files_by_patient.items()), start=1):
        try:
            results[patient] = patient_volumes(
                patient, files, units, physical_by_patient.get(patient), n_disks, camus_exact
            )
        except InputError as error:
            if strict:
                raise
            problems.append(f"skipped {patient} ({folder}): {error}")
        if progress and (index % 50 == 0 or index == len(files_by_patient)):
            # a skipped patient is read but not measured: count both
            print(f"  {folder}: {index}/{len(files_by_patient)} patients read, {len(results)} measured", flush=True)
    return results


def ef_table(
    pred_dir: Path | None,
    ref_dir: Path | None = None,
    camus_info_dir: Path | None = None,
    metadata_path: Path | None = None,
    units: str = "auto",
    n_disks: int = N_DISKS,
    camus_exact: bool = False,
    strict: bool | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Per-patient EDV, ESV, EF (and reference values) as a DataFrame; skipped patients in `df.attrs["warnings"]`.

    The measured columns (`edv, esv, ef, method, volume_unit`) come from `pred_dir`, or from `ref_dir` when no
    predictions are given. The reference columns (`edv_ref, esv_ref, ef_ref, volume_unit_ref, ref_source`) come
    from the `ref_dir` masks when predictions are measured, otherwise from the CAMUS Info values (`*_info`
    columns, from Info files in `camus_info_dir`, `ref_dir` or `pred_dir`, or from the metadata sidecar).
    `strict` (default: only for a single patient) raises instead of skipping a patient that cannot be measured.
    """
    if pred_dir is None and ref_dir is None:
        raise InputError("give a prediction folder, a reference folder, or both")
    if units not in UNIT_MODES:
        raise InputError(f"units must be one of {UNIT_MODES}, got {units!r}")
    if n_disks < 1:
        raise InputError(f"the number of disks must be at least 1, got {n_disks}")
    metadata_path = metadata_path or find_metadata(ref_dir, pred_dir)
    metadata = metadata_patients(read_metadata(metadata_path)) if metadata_path else {}
    physical = {
        p: e.get("spacing_is_physical") for p, e in metadata.items() if isinstance(e.get("spacing_is_physical"), bool)
    }
    info = {patient: info_from_metadata(entry) for patient, entry in metadata.items()}
    for folder in (pred_dir, ref_dir):
        if folder is not None and Path(folder).is_dir():
            for patient, views in find_info_files(folder).items():
                info.setdefault(patient, {}).update(views)
                # Info files beside the masks come with the native CAMUS release, whose header spacing is in mm.
                physical.setdefault(patient, True)
    if camus_info_dir is not None:
        for patient, views in find_info_files(camus_info_dir).items():
            info.setdefault(patient, {}).update(views)
    problems: list[str] = []
    measured_dir = pred_dir if pred_dir is not None else ref_dir
    measured_files = find_mask_files(measured_dir)
    measured = _measure_folder(
        measured_dir, measured_files, units, physical, n_disks, camus_exact, strict, problems, progress
    )
    reference = {}
    if pred_dir is not None and ref_dir is not None:
        reference_files = find_mask_files(ref_dir)
        reference = _measure_folder(
            ref_dir, reference_files, units, physical, n_disks, camus_exact, False, problems, progress, set(measured)
        )
        # Volumes in pixels compare only between masks of one pixel grid (in mL any grid will do).
        for patient in reference:
            if UNIT_ML not in (measured[patient].volume_unit, reference[patient].volume_unit):
                predictions, references = measured_files[patient], reference_files[patient]
                for key in predictions.keys() & references.keys():
                    check_same_grid(predictions[key], references[key], "prediction", "reference", placement=False)
    rows = []
    for patient, volumes in sorted(measured.items()):
        row = {
            "patient": patient,
            "edv": volumes.edv,
            "esv": volumes.esv,
            "ef": volumes.ef,
            "method": volumes.method,
            "volume_unit": volumes.volume_unit,
        }
        clinical = reference_from_info(info.get(patient, {}))
        for name in INFO_KEYS:
            row[f"{name}_info"] = clinical.get(name, np.nan)
        if patient in reference:
            ref = reference[patient]
            row.update(
                edv_ref=ref.edv, esv_ref=ref.esv, ef_ref=ref.ef, volume_unit_ref=ref.volume_unit, ref_source="masks"
            )
        elif pred_dir is not None and ref_dir is not None:
            problems.append(f"{patient}: no reference volumes (no measurable masks in {ref_dir})")
            row.update(edv_ref=np.nan, esv_ref=np.nan, ef_ref=np.nan, volume_unit_ref="", ref_source="")
        elif clinical:
            row.update(
                edv_ref=clinical.get("edv", np.nan),
                esv_ref=clinical.get("esv", np.nan),
                ef_ref=clinical.get("ef", np.nan),
                volume_unit_ref=UNIT_ML,
                ref_source="info",
            )
        else:
            row.update(edv_ref=np.nan, esv_ref=np.nan, ef_ref=np.nan, volume_unit_ref="", ref_source="")
        rows.append(row)
    if not rows:
        raise InputError(f"no patient could be measured in {measured_dir}: " + "; ".join(problems[:3]))
    columns = [
        "patient",
        "edv",
        "esv",
        "ef",
        "method",
        "volume_unit",
        "edv_ref",
        "esv_ref",
        "ef_ref",
        "volume_unit_ref",
        "ref_source",
        "edv_info",
        "esv_info",
        "ef_info",
    ]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs["warnings"] = problems
    table.attrs["metadata"] = str(metadata_path) if metadata_path else None
    return table


def ef_from_images(
    output_dir: Path,
    images_dir: Path,
    model_folder: Path | None = None,
    ref_dir: Path | None = None,
    settings: PredictorSettings | None = None,
    overwrite: bool = False,
    **options,
) -> dict:
    """`ef` on the masks a trained model (default: the shipped LightEcho) predicts for `images_dir`.

    The images are <patient>_<2CH|4CH>_<ED|ES>[_0000].nii.gz frames, or still frame images such as
    <patient>_<2CH|4CH>_<ED|ES>.png (measured in pixels), of any size (models with an input convention bring them
    to it); the masks are an intermediate result, kept only while measuring. `settings`: how the predictor runs
    (default: as `lightecho predict`'s defaults).
    """
    import tempfile

    from nnunet_lightweight.inference.fast_predictor import predict
    from nnunet_lightweight.inference.settings import PredictorSettings
    from nnunet_lightweight.pretrained import shipped_model_folder

    model_folder = model_folder or shipped_model_folder()
    check_output_dir(output_dir, overwrite, inputs=[images_dir, model_folder, ref_dir], layout=EF_LAYOUT)
    with tempfile.TemporaryDirectory(prefix="lightecho-ef-masks-") as work:
        masks = Path(work) / "masks"
        predict(model_folder, images_dir, masks, settings or PredictorSettings(), verbose=False)
        return ef(output_dir, masks, ref_dir, overwrite=overwrite, **options)


def ef(
    output_dir: Path,
    pred_dir: Path | None = None,
    ref_dir: Path | None = None,
    camus_info_dir: Path | None = None,
    metadata_path: Path | None = None,
    units: str = "auto",
    n_disks: int = N_DISKS,
    camus_exact: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write `ef.csv`, `agreement.json`, `agreement.md` and the Bland-Altman/scatter PNGs into `output_dir`."""

    output_dir = Path(output_dir)
    target = check_output_dir(
        output_dir, overwrite, inputs=[pred_dir, ref_dir, camus_info_dir, metadata_path], layout=EF_LAYOUT
    )
    table = ef_table(pred_dir, ref_dir, camus_info_dir, metadata_path, units, n_disks, camus_exact, progress=progress)
    stats = agreement(table)
    distribution = ef_distribution(table)
    problems = table.attrs["warnings"]
    sources = {
        "predictions": str(pred_dir) if pred_dir else None,
        "reference masks": str(ref_dir) if ref_dir else None,
        "CAMUS Info files": str(camus_info_dir) if camus_info_dir else None,
        "metadata": table.attrs["metadata"],
    }
    report = {
        "agreement": stats,
        "measured": distribution,
        "warnings": problems,
        "sources": sources,
        "n_disks": n_disks,
        "disk_placement": "camus" if camus_exact else "midpoint",
        "units": units,
    }
    with staged_output(target) as staging:
        table.to_csv(staging / "ef.csv", index=False, float_format="%.4f")
        (staging / "agreement.json").write_text(json.dumps(report, indent=1))
        (staging / "agreement.md").write_text(agreement_markdown(stats, distribution, problems, sources))
        save_agreement_plots(table, staging)
    return report
