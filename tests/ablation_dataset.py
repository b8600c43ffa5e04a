"""A tiny nnU-Net dataset of synthetic echo frames (the project's phantom at 64x64) for the ablation tests."""

import json
from pathlib import Path

import numpy as np

VIEWS_PHASES = [(view, phase) for view in ("2CH", "4CH") for phase in ("ED", "ES")]


def write_phantom_dataset(raw: Path, dataset_id: int, n_patients: int = 5, size: int = 64) -> tuple[str, list[str]]:
    """`n_patients` phantom patients (4 frames each) as nnU-Net raw dataset `dataset_id`; returns (name, cases)."""
    import SimpleITK as sitk
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    from nnunet_lightweight.conversion.phantom import render_frame, sample_patient

    name = f"Dataset{dataset_id:03d}_AblationPhantom"
    folder = raw / name
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    cases = []
    for index in range(1, n_patients + 1):
        patient = sample_patient(index, seed=6)
        for view, phase in VIEWS_PHASES:
            frame = 1 if phase == "ED" else patient.views[view].es_frame
            image, label, _ = render_frame(patient, view, frame, size=size)
            case = f"{patient.patient_id}_{view}_{phase}"
            sitk.WriteImage(sitk.GetImageFromArray(image[None]), str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
            sitk.WriteImage(sitk.GetImageFromArray(label[None]), str(folder / "labelsTr" / f"{case}.nii.gz"))
            cases.append(case)
    generate_dataset_json(
        str(folder),
        {0: "echo"},
        {"background": 0, "LV": 1, "MYO": 2, "LA": 3},
        len(cases),
        ".nii.gz",
        dataset_name=name,
    )
    return name, cases


def write_single_fold_split(preprocessed: Path, cases: list[str], n_val: int) -> None:
    """splits_final.json with one fold whose validation set is the last `n_val` cases."""
    preprocessed.mkdir(parents=True, exist_ok=True)
    (preprocessed / "splits_final.json").write_text(json.dumps([{"train": cases[:-n_val], "val": cases[-n_val:]}]))


def corrupt(label: np.ndarray, rng: np.random.Generator, n_islands: int, n_flips: int) -> np.ndarray:
    """A label map with `n_islands` small stray blobs of random structures and `n_flips` pixels relabelled."""
    out = label.copy()
    height, width = out.shape[-2:]
    for _ in range(n_islands):
        top, left = rng.integers(0, height - 3), rng.integers(0, width - 3)
        out[..., top : top + 3, left : left + 3] = rng.integers(1, 4)
    flat = out.reshape(-1)
    flat[rng.choice(flat.size, n_flips, replace=False)] = rng.integers(0, 4, n_flips)
    return out
