"""Shared machinery of the converters: validated frame I/O, resizing, patient-level splits, atomic dataset writing.

Evaluation and clinical measurements use the same case-id parser, image reader, metadata-sidecar reader/finder and
staged output folders from here, so the format the converter writes is read in one place.

Every converter (CAMUS, generic, phantom) lists its frames as `FrameSource` records and hands them to
`build_dataset`, which writes an nnU-Net raw dataset:

    DatasetXXX_NAME/
      dataset.json              nnU-Net's (written by generate_dataset_json), channel "echo" -> z-score
      imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz     training patients
      imagesTs/, labelsTs/      held-out test patients (labelsTs only where labels exist)
      splits_final.json         patient-level folds; `install_splits` copies it to nnUNet_preprocessed
      camus_metadata.json       per patient: Info fields, source spacing, whether spacing is physical
      sequences/                optional half-sequences (one 2D file per frame) for sequence inference

Case identifiers are `<patient>_<2CH|4CH>_<ED|ES>`; every frame is a 2D NIfTI with spacing (col, row) in mm, so
nnU-Net's default 2d configuration applies. The dataset is built in a hidden temporary folder next to its final
place and moved there only after nnU-Net's integrity check passed: a failed conversion leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_lightweight.conversion.splits import DEFAULT_SEED, holdout_split, parse_split, patient_folds
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import FILE_ENDING, read_frame, read_sequence, write_frame
from nnunet_lightweight.core.labels import (
    LABELS,
    PATIENT_ID_PATTERN,
    PHASES,
    VIEWS,
    case_id,
    map_labels,
    sequence_frame_id,
)
from nnunet_lightweight.core.metadata import METADATA_FILE, SEQUENCES_FOLDER, read_dataset_metadata
from nnunet_lightweight.core.nnunet_paths import SPLITS_FILE, check_dataset_id, nnunet_folder
from nnunet_lightweight.core.output import OutputLayout, check_output_dir, staged_output

logger = logging.getLogger(__name__)


CHANNEL_NAMES = {0: "echo"}


INTERPOLATION_ORDERS = {"linear": 1, "cubic": 3}


def resize_frame(
    array: np.ndarray,
    spacing: tuple[float, float],
    shape: tuple[int, int],
    *,
    is_label: bool,
    interpolation: str = "linear",
) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize a frame to `shape` keeping its physical extent: the spacing grows by the inverse factor.

    Pixel edges stay aligned (grid mode), labels use nearest neighbour, images linear or cubic interpolation with
    a Gaussian anti-aliasing filter when shrinking; images keep their dtype and value range.
    """
    from scipy import ndimage

    factors = (shape[0] / array.shape[0], shape[1] / array.shape[1])
    new_spacing = (spacing[0] / factors[0], spacing[1] / factors[1])
    if tuple(array.shape) == tuple(shape):
        return array, new_spacing
    if is_label:
        resized = ndimage.zoom(array, factors, order=0, mode="nearest", grid_mode=True)
    else:
        smoothing = [max(0.0, (1 / f - 1) / 2) for f in factors]
        source = array.astype(np.float32)
        if any(s > 0 for s in smoothing):
            source = ndimage.gaussian_filter(source, smoothing, mode="nearest")
        resized = ndimage.zoom(
            source, factors, order=INTERPOLATION_ORDERS[interpolation], mode="nearest", grid_mode=True
        )
        resized = np.clip(resized, float(array.min()), float(array.max()))
        if np.issubdtype(array.dtype, np.integer):
            resized = np.round(resized)
        resized = resized.astype(array.dtype)
    if resized.shape != tuple(shape):
        raise AssertionError(f"resize produced {resized.shape}, expected {shape}")
    return resized, new_spacing


def normalize_resize(resize: int | Sequence[int] | None) -> tuple[int, int] | None:
    """`256`, `(256,)` or `(rows, cols)` as a (rows, cols) tuple of ints, or None."""
    if resize is None:
        return None
    shape = tuple(int(s) for s in np.atleast_1d(resize))
    shape = shape * 2 if len(shape) == 1 else shape
    if len(shape) != 2 or min(shape) < 8:
        raise InputError(f"--resize takes one or two sizes of at least 8 pixels, got {resize}")
    return shape


@dataclass(frozen=True)
class FrameSource:
    """One ED or ES frame of one view of one patient, with its label file (None where unlabelled)."""

    patient: str
    view: str
    phase: str
    image: Path
    label: Path | None
    spacing: tuple[float, float] | None = None  # (row, col) in mm; overrides the header where given

    @property
    def case(self) -> str:
        return case_id(self.patient, self.view, self.phase)


@dataclass(frozen=True)
class SequenceSource:
    """The half-sequence (all frames) of one view of one patient, with its per-frame labels where present."""

    patient: str
    view: str
    image: Path
    label: Path | None
    spacing: tuple[float, float] | None = None


@dataclass
class PatientPlan:
    """Where a patient goes: `train` (imagesTr), `test` (imagesTs + labelsTs) or `unlabelled` (imagesTs only)."""

    subset: str
    official_subgroup: str | None = None
    info: dict[str, dict] = field(default_factory=dict)  # view -> parsed Info file
    has_physical_spacing_evidence: bool = False  # Info files or explicit spacings: headers are trusted


def check_patient_ids(frames: Sequence[FrameSource]) -> None:
    """InputError on malformed patient ids, unknown views/phases or duplicate frames (naming both files)."""
    seen: dict[str, FrameSource] = {}
    for frame in frames:
        if not PATIENT_ID_PATTERN.match(frame.patient):
            raise InputError(
                f"patient id '{frame.patient}' ({frame.image}) may only contain letters, digits, '_' and '-'"
            )
        if frame.view not in VIEWS or frame.phase not in PHASES:
            raise InputError(
                f"{frame.image}: view must be one of {VIEWS} and phase one of {PHASES}, got {frame.view}/{frame.phase}"
            )
        if frame.case in seen:
            raise InputError(f"duplicate patient frame {frame.case}: {seen[frame.case].image} and {frame.image}")
        seen[frame.case] = frame


def plan_subsets(
    patients: Mapping[str, PatientPlan],
    split: str,
    seed: int,
    official_groups: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, list[str]]]:
    """Assign held-out patients to `test` (in place) and return patient-level folds [{train, val}, ...]."""
    mode, n_folds = parse_split(split)
    trainable = sorted(p for p, plan in patients.items() if plan.subset == "train")
    if mode == "none":
        # A test-only set (down to a single patient): every labelled patient to imagesTs/labelsTs, no folds.
        for patient in trainable:
            patients[patient].subset = "test"
        return []
    if mode == "cv":
        return [
            {"train": sorted(set(trainable) - set(fold)), "val": fold}
            for fold in patient_folds(trainable, n_folds, seed)
        ]
    if mode == "paper":
        holdout = holdout_split(trainable, seed=seed)
        for patient in holdout["test"]:
            patients[patient].subset = "test"
        return [{"train": holdout["train"], "val": holdout["val"]}]
    if not official_groups or not official_groups.get("training") or not official_groups.get("validation"):
        raise InputError(
            "--split official needs database_split/subgroup_training.txt and "
            "subgroup_validation.txt (CAMUS NIfTI release)"
        )
    grouped = set(official_groups["training"]) | set(official_groups["validation"])
    if grouped != set(trainable):
        stray = sorted(grouped.symmetric_difference(trainable))
        raise InputError(
            f"the official training/validation subgroups do not match the labelled patients: "
            f"{stray[:5]}{' ...' if len(stray) > 5 else ''}"
        )
    return [{"train": sorted(official_groups["training"]), "val": sorted(official_groups["validation"])}]


def _cases_of(patients: Iterable[str], cases_by_patient: Mapping[str, list[str]]) -> list[str]:
    return sorted(case for patient in patients for case in cases_by_patient[patient])


# What `build_dataset` writes: how a dataset converted before the marker file existed is recognised.
DATASET_LAYOUT = OutputLayout(
    METADATA_FILE, ("dataset.json", SPLITS_FILE, "imagesTr", "labelsTr", "imagesTs", "labelsTs", SEQUENCES_FOLDER)
)


def verify_dataset(folder: Path, num_processes: int) -> None:
    """nnU-Net's `verify_dataset_integrity`; its failures become an InputError naming the dataset folder."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    try:
        verify_dataset_integrity(str(folder), num_processes)
    except (AssertionError, RuntimeError, FileNotFoundError) as error:
        raise InputError(f"nnU-Net's dataset integrity check failed for {folder}: {error}") from None


def _read_image_and_label(
    read: Callable[[Path], tuple[np.ndarray, tuple[float, float]]],
    image_path: Path,
    label_path: Path | None,
    spacing: tuple[float, float] | None,
    label_map: Mapping[int, int],
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float]]:
    """A frame or sequence and its labels (mapped, or None), checked against each other, and the spacing to use:
    `spacing` where the source gives one, else the image header's, which the label header must then match."""
    image, header_spacing = read(image_path)
    if label_path is None:
        return image, None, spacing or header_spacing
    label, label_spacing = read(label_path)
    if label.shape != image.shape:
        raise InputError(f"shape mismatch: image {image_path} is {image.shape}, label {label_path} is {label.shape}")
    if spacing is None and not np.allclose(label_spacing, header_spacing, rtol=1e-3):
        raise InputError(
            f"spacing mismatch: image {image_path} has {header_spacing}, label {label_path} has {label_spacing}"
        )
    return image, map_labels(label, label_map, label_path), spacing or header_spacing


def _resized(
    image: np.ndarray,
    label: np.ndarray | None,
    spacing: tuple[float, float],
    resize: tuple[int, int] | None,
    interpolation: str,
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float]]:
    """A frame and its label resized to `resize` (None: as they are), and the spacing that keeps the physical size."""
    if resize is None:
        return image, label, spacing
    resized, resized_spacing = resize_frame(image, spacing, resize, is_label=False, interpolation=interpolation)
    if label is not None:
        label, _ = resize_frame(label, spacing, resize, is_label=True)
    return resized, label, resized_spacing


def _convert_frame(
    frame: FrameSource,
    plan: PatientPlan,
    folder: Path,
    label_map: Mapping[int, int],
    resize: tuple[int, int] | None,
    interpolation: str,
) -> dict:
    image, label, spacing = _read_image_and_label(read_frame, frame.image, frame.label, frame.spacing, label_map)
    out_image, out_label, out_spacing = _resized(image, label, spacing, resize, interpolation)
    images_dir, labels_dir = ("imagesTr", "labelsTr") if plan.subset == "train" else ("imagesTs", "labelsTs")
    image_rel = f"{images_dir}/{frame.case}_0000{FILE_ENDING}"
    write_frame(out_image, out_spacing, folder / image_rel)
    label_rel = None
    if out_label is not None:
        label_rel = f"{labels_dir}/{frame.case}{FILE_ENDING}"
        write_frame(out_label, out_spacing, folder / label_rel)
    return {
        "patient": frame.patient,
        "view": frame.view,
        "phase": frame.phase,
        "subset": plan.subset,
        "frame": (plan.info.get(frame.view) or {}).get(frame.phase),
        "image": image_rel,
        "label": label_rel,
        "source_image": str(frame.image),
        "source_shape": list(image.shape),
        "source_spacing_mm": list(spacing),
        "shape": list(out_image.shape),
        "spacing_mm": [float(s) for s in out_spacing],
    }


def _convert_sequence(
    sequence: SequenceSource,
    folder: Path,
    label_map: Mapping[int, int],
    resize: tuple[int, int] | None,
    interpolation: str,
) -> dict:
    frames, labels, spacing = _read_image_and_label(
        read_sequence, sequence.image, sequence.label, sequence.spacing, label_map
    )
    ids = []
    out_spacing = spacing
    for index in range(frames.shape[0]):
        frame_id = sequence_frame_id(sequence.patient, sequence.view, index + 1)
        label = labels[index] if labels is not None else None
        image, label, out_spacing = _resized(frames[index], label, spacing, resize, interpolation)
        write_frame(image, out_spacing, folder / SEQUENCES_FOLDER / "images" / f"{frame_id}_0000{FILE_ENDING}")
        if label is not None:
            write_frame(label, out_spacing, folder / SEQUENCES_FOLDER / "labels" / f"{frame_id}{FILE_ENDING}")
        ids.append(frame_id)
    return {
        "patient": sequence.patient,
        "view": sequence.view,
        "n_frames": len(ids),
        "frames": ids,
        "has_labels": labels is not None,
        "source_image": str(sequence.image),
        "spacing_mm": [float(s) for s in out_spacing],
    }


def build_dataset(
    frames: Sequence[FrameSource],
    patients: Mapping[str, PatientPlan],
    *,
    dataset_id: int,
    name: str,
    raw_dir: str | os.PathLike | None = None,
    split: str = "cv5",
    seed: int = DEFAULT_SEED,
    official_groups: Mapping[str, Sequence[str]] | None = None,
    label_map: Mapping[int, int] | None = None,
    resize: int | Sequence[int] | None = None,
    interpolation: str = "linear",
    spacing_units: str = "auto",
    sequences: Sequence[SequenceSource] = (),
    overwrite: bool = False,
    verify: bool = True,
    num_processes: int = 2,
    dataset_json_extra: Mapping | None = None,
    metadata_extra: Mapping | None = None,
    progress: bool = True,
) -> Path:
    """Write the nnU-Net raw dataset for `frames` (see module docstring) and return its folder."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
    from tqdm import tqdm

    if not frames:
        raise InputError("no frames to convert")
    if interpolation not in INTERPOLATION_ORDERS:
        raise InputError(f"interpolation must be one of {sorted(INTERPOLATION_ORDERS)}, got {interpolation}")
    if spacing_units not in ("auto", "mm", "pixel"):
        raise InputError(f"spacing_units must be auto, mm or pixel, got {spacing_units}")
    check_patient_ids(frames)
    shape = normalize_resize(resize)
    label_map = dict(label_map) if label_map is not None else {v: v for v in LABELS.values()}
    raw = nnunet_folder("nnUNet_raw", raw_dir)
    final_dir = check_dataset_id(raw, dataset_id, name)
    sources = [path for item in (*frames, *sequences) for path in (item.image, item.label)]
    # Rechecked under the lock on nnUNet_raw at the final rename: a concurrent conversion may have taken the id.
    target = check_output_dir(
        final_dir,
        overwrite,
        what="dataset",
        inputs=sources,
        layout=DATASET_LAYOUT,
        recheck=lambda: check_dataset_id(raw, dataset_id, name),
    )

    folds = plan_subsets(patients, split, seed, official_groups)
    cases_by_patient: dict[str, list[str]] = {}
    for frame in frames:
        cases_by_patient.setdefault(frame.patient, []).append(frame.case)

    with staged_output(target) as staging:
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (staging / sub).mkdir()
        if sequences:
            (staging / SEQUENCES_FOLDER / "images").mkdir(parents=True)
            (staging / SEQUENCES_FOLDER / "labels").mkdir()
        cases = {}
        for frame in tqdm(frames, desc=f"converting {final_dir.name}", unit="frame", disable=not progress):
            cases[frame.case] = _convert_frame(frame, patients[frame.patient], staging, label_map, shape, interpolation)
        sequence_records = {}
        for sequence in tqdm(sequences, desc="half-sequences", unit="sequence", disable=not (progress and sequences)):
            record = _convert_sequence(sequence, staging, label_map, shape, interpolation)
            info = patients[sequence.patient].info.get(sequence.view) or {}
            record.update({"ED": info.get("ED"), "ES": info.get("ES")})
            sequence_records[f"{sequence.patient}_{sequence.view}"] = record
        if not any((staging / "labelsTs").iterdir()):
            (staging / "labelsTs").rmdir()
        if not any((staging / "imagesTs").iterdir()):
            (staging / "imagesTs").rmdir()
        if not sequence_records and (staging / SEQUENCES_FOLDER).exists():
            shutil.rmtree(staging / SEQUENCES_FOLDER)

        patient_meta = _patient_metadata(patients, cases, spacing_units)
        n_training = sum(1 for c in cases.values() if c["subset"] == "train")
        generate_dataset_json(
            str(staging),
            dict(CHANNEL_NAMES),
            dict(LABELS),
            n_training,
            FILE_ENDING,
            dataset_name=final_dir.name,
            **{"numTest": len(cases) - n_training, **(dataset_json_extra or {})},
        )
        splits = [{subset: _cases_of(fold[subset], cases_by_patient) for subset in ("train", "val")} for fold in folds]
        if splits:  # --split none: nothing to train on, so no splits for nnU-Net to find
            (staging / SPLITS_FILE).write_text(json.dumps(splits, indent=1))
        metadata = {
            "format_version": 1,
            "dataset": final_dir.name,
            "labels": LABELS,
            "resize": list(shape) if shape else None,
            "interpolation": interpolation if shape else None,
            "split": split,
            "seed": seed,
            "folds": folds,
            "patients": patient_meta,
            "cases": cases,
            **(metadata_extra or {}),
        }
        if sequence_records:
            metadata["sequences"] = sequence_records
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
        if verify and n_training:
            verify_dataset(staging, num_processes)
        elif verify:
            # nnU-Net's check reads the training cases only; each test frame was read and checked above
            logger.warning(
                "no training cases (--split none): nnU-Net's dataset integrity check, which checks "
                "imagesTr/labelsTr only, was skipped"
            )
    preprocessed = os.environ.get("nnUNet_preprocessed")
    if overwrite and preprocessed and (Path(preprocessed) / final_dir.name).is_dir():
        logger.warning(
            "%s was made from the replaced dataset: plan and preprocess again", Path(preprocessed) / final_dir.name
        )
    return final_dir


def _patient_metadata(
    patients: Mapping[str, PatientPlan], cases: Mapping[str, dict], spacing_units: str
) -> dict[str, dict]:
    views: dict[str, dict[str, dict]] = {patient: {} for patient in patients}
    for record in cases.values():
        views[record["patient"]].setdefault(
            record["view"],
            {
                "info": patients[record["patient"]].info.get(record["view"]),
                "source_spacing_mm": record["source_spacing_mm"],
                "source_shape": record["source_shape"],
                "spacing_mm": record["spacing_mm"],
                "shape": record["shape"],
            },
        )
    meta = {}
    for patient, plan in sorted(patients.items()):
        if spacing_units == "auto":
            unit_spacing = all(np.allclose(v["source_spacing_mm"], 1.0) for v in views[patient].values())
            physical = plan.has_physical_spacing_evidence or not unit_spacing
        else:
            physical = spacing_units == "mm"
        meta[patient] = {
            "subset": plan.subset,
            "official_subgroup": plan.official_subgroup,
            "spacing_is_physical": bool(physical),
            "views": views[patient],
        }
    return meta


def describe_dataset(dataset_dir: str | os.PathLike) -> str:
    """A few lines summarizing a converted dataset: frames and patients per subset, folds, spacing units."""
    metadata = read_dataset_metadata(dataset_dir)
    lines = [f"{Path(dataset_dir)}"]
    for subset, where in (
        ("train", "imagesTr/labelsTr"),
        ("test", "imagesTs/labelsTs"),
        ("unlabelled", "imagesTs, no labels"),
    ):
        patients = [p for p, m in metadata["patients"].items() if m["subset"] == subset]
        if patients:
            n_frames = sum(1 for c in metadata["cases"].values() if c["patient"] in set(patients))
            lines.append(f"  {subset:<10} {n_frames:5d} frames of {len(patients):4d} patients ({where})")
    folds = metadata["folds"]
    if folds:
        sizes = "/".join(str(len(f["val"])) for f in folds)
        lines.append(f"  split {metadata['split']}: {len(folds)} fold(s), validation patients per fold {sizes}")
    else:
        lines.append(f"  split {metadata['split']}: no training cases, every patient held out in imagesTs")
    physical = {m["spacing_is_physical"] for m in metadata["patients"].values()}
    lines.append(
        "  spacing: "
        + {frozenset({True}): "physical (mm)", frozenset({False}): "pixel units (no physical spacing known)"}.get(
            frozenset(physical), "mixed: see camus_metadata.json"
        )
    )
    if "sequences" in metadata:
        lines.append(f"  half-sequences: {len(metadata['sequences'])} in {SEQUENCES_FOLDER}/")
    return "\n".join(lines)
