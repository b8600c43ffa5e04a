"""Patient-level splits: cross-validation folds, the paper's hold-out split, and their installation into
nnUNet_preprocessed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.nnunet_paths import SPLITS_FILE, nnunet_folder

DEFAULT_SEED = 12345


_TEST_ONLY_HINT = "--split none converts every patient as a test set, without training cases"


def parse_split(split: str) -> tuple[str, int]:
    """('cv', folds) for 'cv5'/'cv10', ('paper', 1), ('official', 1) or ('none', 0); InputError otherwise."""
    match = re.fullmatch(r"cv(\d+)", split)
    if match and int(match[1]) >= 2:
        return "cv", int(match[1])
    if split in ("paper", "official"):
        return split, 1
    if split == "none":
        return "none", 0
    raise InputError(f"unknown split '{split}': use cv<N> (e.g. cv5), paper, official or none")


def patient_folds(patients: Iterable[str], n_folds: int = 5, seed: int = DEFAULT_SEED) -> list[list[str]]:
    """Patients shuffled with `seed` and dealt round-robin into `n_folds` folds whose sizes differ by at most 1."""
    ordered = sorted(set(patients))
    if len(ordered) < n_folds:
        raise InputError(
            f"{n_folds}-fold cross-validation needs at least {n_folds} patients, got "
            f"{len(ordered)} labelled ({_TEST_ONLY_HINT})"
        )
    order = np.random.RandomState(seed).permutation(len(ordered))
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for position, index in enumerate(order):
        folds[position % n_folds].append(ordered[index])
    return [sorted(fold) for fold in folds]


def holdout_split(
    patients: Iterable[str], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = DEFAULT_SEED
) -> dict[str, list[str]]:
    """The paper's patient-level train/val/test split (80/10/10 by default), shuffled with `seed`."""
    ordered = sorted(set(patients))

    def sizes(n: int) -> tuple[int, int]:
        return int(round(test_fraction * n)), int(round(val_fraction * n))

    def feasible(n: int) -> bool:
        n_test, n_val = sizes(n)
        return n - n_test - n_val >= 1 and n_val >= 1

    if not feasible(len(ordered)):
        needed = next((n for n in range(len(ordered) + 1, 10_000) if feasible(n)), None)
        raise InputError(
            f"a train/val/test split with {val_fraction:.0%} validation and {test_fraction:.0%} test "
            f"patients needs at least {needed} patients, got {len(ordered)} labelled "
            f"({_TEST_ONLY_HINT})"
        )
    n_test, n_val = sizes(len(ordered))
    shuffled = [ordered[i] for i in np.random.RandomState(seed).permutation(len(ordered))]
    return {
        "test": sorted(shuffled[:n_test]),
        "val": sorted(shuffled[n_test : n_test + n_val]),
        "train": sorted(shuffled[n_test + n_val :]),
    }


def install_splits(
    dataset_id: int | str, raw_dir: str | os.PathLike | None = None, preprocessed_dir: str | os.PathLike | None = None
) -> Path:
    """Copy the dataset's `splits_final.json` from nnUNet_raw into nnUNet_preprocessed (where nnU-Net reads it)."""
    raw = nnunet_folder("nnUNet_raw", raw_dir)
    preprocessed = nnunet_folder("nnUNet_preprocessed", preprocessed_dir)
    name = str(dataset_id)
    if not name.startswith("Dataset"):
        prefix = f"Dataset{int(dataset_id):03d}_"
        candidates = sorted(p.name for p in raw.glob(f"{prefix}*") if p.is_dir())
        if len(candidates) != 1:
            raise InputError(f"expected one dataset {prefix}* in {raw}, found {candidates or 'none'}")
        name = candidates[0]
    source = raw / name / SPLITS_FILE
    if not source.is_file():
        raise InputError(f"missing file: {source} (convert the dataset with lightecho convert-camus/convert-generic)")
    target = preprocessed / name / SPLITS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target
