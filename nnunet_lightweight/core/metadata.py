"""The metadata sidecar (`camus_metadata.json`) a converted dataset carries: its reader and finder."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from nnunet_lightweight.core.json_files import read_json_object

METADATA_FILE = "camus_metadata.json"


SEQUENCES_FOLDER = "sequences"


def read_metadata(path: str | os.PathLike, missing_hint: str = "") -> dict:
    """The raw content of a metadata sidecar file (`camus_metadata.json`, written by `build_dataset`)."""
    return read_json_object(path, "metadata sidecar", missing_hint)


def read_dataset_metadata(dataset_dir: str | os.PathLike) -> dict:
    """The metadata sidecar (`camus_metadata.json`) of a converted dataset."""
    return read_metadata(Path(dataset_dir) / METADATA_FILE, "not a dataset converted by lightecho")


def find_metadata(*folders: str | os.PathLike | None, levels: int = 2) -> Path | None:
    """The metadata sidecar in the first of `folders` that has one in itself or up to `levels` folders above it
    (a raw dataset's labelsTr, or a prediction folder inside the dataset folder)."""
    for folder in folders:
        if folder is None:
            continue
        folder = Path(folder).resolve()
        for candidate in [folder, *folder.parents[:levels]]:
            if (candidate / METADATA_FILE).is_file():
                return candidate / METADATA_FILE
    return None


def metadata_patients(metadata: Mapping) -> dict[str, dict]:
    """{patient: entry} of a sidecar: the converter's `{"patients": {...}}`, or a plain dict keyed by patient id."""
    patients = metadata["patients"] if isinstance(metadata.get("patients"), dict) else metadata
    return {patient: entry for patient, entry in patients.items() if isinstance(entry, dict)}
