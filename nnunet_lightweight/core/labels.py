"""The label values, views, phases and the case-id grammar every layer shares, and label-map validation."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_lightweight.core.errors import InputError

LABELS = {"background": 0, "LV": 1, "MYO": 2, "LA": 3}


VIEWS = ("2CH", "4CH")


PHASES = ("ED", "ES")


# The one grammar of case ids; file-name patterns (e.g. the clinical mask finder) embed it.
CASE_ID_REGEX = r"(?P<patient>.+)_(?P<view>2CH|4CH)_(?P<phase>ED|ES)"


CASE_ID_PATTERN = re.compile(rf"^{CASE_ID_REGEX}$")


_CASE_ID_ANY_CASE = re.compile(CASE_ID_PATTERN.pattern, re.IGNORECASE)


UNKNOWN = "unknown"


PATIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def case_id(patient: str, view: str, phase: str) -> str:
    """The nnU-Net case identifier of one frame, e.g. `patient0001_2CH_ED`."""
    return f"{patient}_{view}_{phase}"


@dataclass(frozen=True)
class CaseInfo:
    """What a case id says about a frame: patient, view (2CH/4CH) and phase (ED/ES), `unknown` where it says nothing."""

    case: str
    patient: str
    view: str
    phase: str


def parse_case_id(case: str) -> CaseInfo:
    """Split `<patient>_<2CH|4CH>_<ED|ES>` (view and phase in any letter case); other ids keep the whole id as
    patient and `unknown` view and phase."""
    match = _CASE_ID_ANY_CASE.match(case)
    if not match:
        return CaseInfo(case, case, UNKNOWN, UNKNOWN)
    return CaseInfo(case, match["patient"], match["view"].upper(), match["phase"].upper())


def sequence_frame_id(patient: str, view: str, frame: int) -> str:
    """Id of a half-sequence frame, 1-based as in the CAMUS Info files, e.g. `patient0001_2CH_frame003`."""
    return f"{patient}_{view}_frame{frame:03d}"


def map_labels(label: np.ndarray, label_map: Mapping[int, int], path: Path) -> np.ndarray:
    """Label array with source values replaced by target ids; InputError naming the file on unknown values."""
    if not np.issubdtype(label.dtype, np.integer):
        if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
            raise InputError(f"{path} has non-integer label values; labels must be integers")
        label = label.astype(np.int64)
    values = np.unique(label)
    unexpected = [int(v) for v in values if int(v) not in label_map]
    if unexpected:
        raise InputError(f"{path} has unexpected label values {unexpected}; expected only {sorted(label_map)}")
    mapped = np.zeros(label.shape, dtype=np.uint8)
    for value in values:
        mapped[label == value] = label_map[int(value)]
    return mapped


def keep_largest_component_per_label(segmentation: np.ndarray, labels: dict[str, int]) -> np.ndarray:
    """Keep only the largest 8-connected component of every structure (nnU-Net's function, applied per label, on
    CPU): the predictor's filter for masks off the device, and the CCA of `lightecho postprocess`."""
    # Imported here: nnU-Net's postprocessing module pulls in its evaluation stack, which `predict` never needs.
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation

    result = segmentation
    for label in labels.values():
        result = remove_all_but_largest_component_from_segmentation(result, label)
    return result
