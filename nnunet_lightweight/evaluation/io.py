"""Reading nnU-Net style segmentation folders: `<case>.nii.gz` label maps, case ids, the CAMUS metadata sidecar."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import FILE_ENDING, check_same_grid, read_segmentation
from nnunet_lightweight.core.labels import LABELS, UNKNOWN, CaseInfo, parse_case_id
from nnunet_lightweight.core.metadata import metadata_patients, read_metadata

# Label ids of the CAMUS conversion (dataset.json): 1 LV, 2 MYO, 3 LA besides background 0.
DEFAULT_LABELS: dict[str, int] = {name: value for name, value in LABELS.items() if value}


def parse_labels(text: str) -> dict[str, int]:
    """Parse a `--labels` value such as `LV=1,MYO=2,LA=3` into {structure: label id}."""
    labels: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit() or int(value) == 0:
            raise InputError(
                f"--labels: expected NAME=ID with a positive integer ID (e.g. LV=1,MYO=2,LA=3), got {item!r}"
            )
        if name.strip() in labels or int(value) in labels.values():
            raise InputError(f"--labels: structure or label id repeated in {text!r}")
        labels[name.strip()] = int(value)
    if not labels:
        raise InputError(f"--labels: no structure given in {text!r}")
    return labels


def list_cases(folder: Path, file_ending: str = FILE_ENDING) -> dict[str, Path]:
    """{case id: file} for every `<case><file_ending>` directly in `folder` (nnU-Net's json/pkl side files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"segmentation folder not found: {folder}")
    return {
        path.name[: -len(file_ending)]: path
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name.endswith(file_ending) and not path.name.startswith(".")
    }


def pair_cases(pred_dir: Path, ref_dir: Path, allow_missing: bool = False) -> list[tuple[str, Path, Path]]:
    """(case, prediction, reference) for every prediction; every prediction needs a reference and, unless
    `allow_missing`, every reference a prediction."""
    predictions, references = list_cases(pred_dir), list_cases(ref_dir)
    if not predictions:
        raise InputError(f"no {FILE_ENDING} predictions in {pred_dir}")
    without_reference = sorted(set(predictions) - set(references))
    if without_reference:
        raise InputError(
            f"{len(without_reference)} prediction(s) in {pred_dir} have no reference in {ref_dir}: "
            f"{_preview(without_reference)}"
        )
    without_prediction = sorted(set(references) - set(predictions))
    if without_prediction and not allow_missing:
        raise InputError(
            f"{len(without_prediction)} reference case(s) in {ref_dir} have no prediction in {pred_dir}: "
            f"{_preview(without_prediction)} (pass --allow-missing to evaluate only the predicted cases)"
        )
    return [(case, predictions[case], references[case]) for case in sorted(predictions)]


def read_pair(
    pred_path: Path, ref_path: Path, labels: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Prediction and reference label maps checked against each other and against `labels`; the reference spacing."""
    pred, _ = read_segmentation(pred_path)
    ref, ref_spacing = read_segmentation(ref_path)
    check_same_grid(pred_path, ref_path, "prediction", "reference")
    for path, array in ((pred_path, pred), (ref_path, ref)):
        check_label_values(path, array, labels)
    return pred, ref, ref_spacing


def check_label_values(path: Path, array: np.ndarray, labels: dict[str, int]) -> None:
    """InputError naming the file where a label map holds values other than background 0 and `labels`."""
    unexpected = sorted(set(np.unique(array).tolist()) - {0, *labels.values()})
    if unexpected:
        raise InputError(
            f"{path} contains label values {unexpected} outside background 0 and the structures "
            f"{labels} (set --labels to match the dataset)"
        )


@dataclass
class Metadata:
    """What the `camus_metadata.json` sidecar says about cases: their patient/view/phase and image quality."""

    cases: dict[str, CaseInfo] = field(default_factory=dict)
    quality: dict[tuple[str, str | None], str] = field(default_factory=dict)

    def describe(self, case: str) -> tuple[CaseInfo, str]:
        """The case's patient/view/phase (sidecar first, then the case id) and image quality (`unknown` if absent)."""
        info = self.cases.get(case) or parse_case_id(case)
        quality = self.quality.get((info.patient, info.view)) or self.quality.get((info.patient, None), UNKNOWN)
        return info, quality


def load_evaluation_metadata(metadata_path: Path) -> Metadata:
    """Read the converter's sidecar (`{"patients": {p: {"views": {"2CH": {"info": {"ImageQuality": ..}}}}},
    "cases": {case: {"patient", "view", "phase"}}}`); a plain dict keyed by patient id, with the quality per view
    or per patient, is accepted too. Patients or views without a quality are simply left out."""
    data = read_metadata(metadata_path)
    metadata = Metadata()
    for patient, record in metadata_patients(data).items():
        if _quality_of(record):
            metadata.quality[(patient, None)] = _quality_of(record)
        views = record["views"] if isinstance(record.get("views"), dict) else record
        for view, view_record in views.items():
            if isinstance(view_record, dict):
                value = _quality_of(view_record.get("info")) or _quality_of(view_record)
                if value:
                    metadata.quality[(patient, str(view).upper())] = value
    for case, record in (data.get("cases") or {}).items():
        if isinstance(record, dict) and {"patient", "view", "phase"} <= record.keys():
            metadata.cases[case] = CaseInfo(
                case, str(record["patient"]), str(record["view"]).upper(), str(record["phase"]).upper()
            )
    return metadata


def _quality_of(info: object) -> str | None:
    if not isinstance(info, dict):
        return None
    for key, value in info.items():
        if key.replace("_", "").lower() == "imagequality" and isinstance(value, str) and value.strip():
            return value.strip().capitalize()
    return None


def _preview(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
