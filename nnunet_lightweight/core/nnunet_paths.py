"""nnU-Net's folders, dataset ids and names, and the environment settings nnU-Net reads."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from nnunet_lightweight.core.errors import InputError

SPLITS_FILE = "splits_final.json"


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name for a dataset, e.g. `Dataset500_CAMUS`."""
    return f"Dataset{dataset_id:03d}_{name}"


def nnunet_folder(variable: str, override: str | os.PathLike | None = None) -> Path:
    """An nnU-Net base folder (`nnUNet_raw`, `nnUNet_preprocessed`) from the argument or the environment."""
    value = override if override is not None else os.environ.get(variable)
    if not value:
        raise InputError(f"{variable} is not set: export {variable}=/path/to/folder (see nnU-Net's setting_up_paths)")
    return Path(value)


@contextmanager
def environment_variable(name: str, value: str) -> Iterator[None]:
    """`os.environ[name]` set to `value` inside the block and restored (or removed) after it: for settings that
    nnU-Net reads only from the environment (nnUNet_results, nnUNet_n_proc_DA)."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def check_dataset_id(raw: Path, dataset_id: int, name: str) -> Path:
    """The dataset folder for (id, name); InputError where another dataset already uses that id."""
    # nnU-Net names datasets DatasetXXX_NAME with exactly three digits: an id of 1000 or more is misread by it.
    if not isinstance(dataset_id, (int, np.integer)) or not 1 <= int(dataset_id) <= 999:
        raise InputError(
            f"dataset id must be an integer between 1 and 999 (nnU-Net's three-digit DatasetXXX "
            f"names), got {dataset_id}"
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise InputError(f"dataset name '{name}' may only contain letters, digits, '_' and '-'")
    folder = raw / dataset_folder_name(int(dataset_id), name)
    others = sorted(p.name for p in raw.glob(f"Dataset{int(dataset_id):03d}_*") if p.is_dir() and p != folder)
    if others:
        raise InputError(
            f"dataset id {dataset_id} is already used by {raw / others[0]}; pick another id or remove that folder"
        )
    return folder
