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
        # an image given as its label has hundreds of values: the first few make the point
        shown = f"{unexpected}" if len(unexpected) <= 10 else f"{unexpected[:10]} and {len(unexpected) - 10} more"
        raise InputError(f"{path} has unexpected label values {shown}; expected only {sorted(label_map)}")
    mapped = np.zeros(label.shape, dtype=np.uint8)
    for value in values:
        mapped[label == value] = label_map[int(value)]
    return mapped


def keep_largest_component_per_label(segmentation: np.ndarray, labels: dict[str, int]) -> np.ndarray:
    """Keep only the largest component of every structure: nnU-Net's `remove_all_but_largest_component_from_segmentation`
    applied label by label (full connectivity: 8 in 2D, 26 in 3D; every component of the largest size is kept on a
    tie), on CPU: the predictor's filter for masks off the device, and the CCA of `lightecho postprocess`.

    One multi-label pass of cc3d (which nnU-Net's acvl_utils depends on) labels every structure's components at
    once, and a map with one component per structure is returned as it is (not copied): a third of nnU-Net's time per
    224x224 frame, which matters when every frame of a video is filtered. Other dimensions go to nnU-Net's function.
    """
    integral = segmentation.dtype.kind in "ub" or (segmentation.dtype.kind == "i" and segmentation.min() >= 0)
    if segmentation.ndim not in (2, 3) or not integral:
        return _keep_largest_component_per_label_nnunet(segmentation, labels)
    import cc3d  # imported here: only the predictor and `postprocess` filter masks

    components, count = cc3d.connected_components(
        segmentation, connectivity=8 if segmentation.ndim == 2 else 26, return_N=True
    )
    present = [label for label in labels.values() if np.any(segmentation == label)]
    if count == len(present):  # one component per structure: nothing to remove
        return segmentation
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    value = np.zeros(count + 1, dtype=segmentation.dtype)
    value[components.ravel()] = segmentation.ravel()
    largest = np.zeros(int(value.max()) + 1, dtype=sizes.dtype)
    np.maximum.at(largest, value, sizes)
    keep = (sizes == largest[value]) | ~np.isin(value, present)
    keep[0] = True
    return np.where(keep[components], segmentation, 0).astype(segmentation.dtype, copy=False)


def _keep_largest_component_per_label_nnunet(segmentation: np.ndarray, labels: dict[str, int]) -> np.ndarray:
    # Imported here: nnU-Net's postprocessing module pulls in its evaluation stack, which `predict` never needs.
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation

    result = segmentation
    for label in labels.values():
        result = remove_all_but_largest_component_from_segmentation(result, label)
    return result
