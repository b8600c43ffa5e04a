"""Evaluation on a few real CAMUS expert masks: self-comparison, a shifted copy, plausibility of expert masks."""

import shutil

import numpy as np
import pytest
from label_maps import write_seg

from nnunet_lightweight.evaluation import (
    DEFAULT_LABELS,
    check_plausibility,
    evaluate_folder,
    read_segmentation,
    save_overlays,
)


@pytest.fixture
def camus_reference(camus_root, tmp_path):
    """The 8 expert masks of two patients as an nnU-Net label folder (`<case>.nii.gz`)."""
    folder = tmp_path / "labels"
    folder.mkdir()
    for patient in ("patient0001", "patient0002"):
        for path in sorted((camus_root / "database_nifti" / patient).glob("*_gt.nii.gz")):
            shutil.copy(path, folder / path.name.replace("_gt", ""))
    return folder


def test_expert_masks_against_themselves_and_shifted(camus_reference, camus_root, tmp_path):
    identical = evaluate_folder(camus_reference, camus_reference, tmp_path / "self")
    assert (identical["dice"] == 1).all() and (identical["hd"] == 0).all() and len(identical) == 24
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    for path in sorted(camus_reference.glob("*.nii.gz")):
        seg, spacing = read_segmentation(path)
        write_seg(shifted / path.name, np.roll(seg, 2, axis=1), spacing)
    metrics = evaluate_folder(shifted, camus_reference, images=camus_root / "database_nifti", out_dir=tmp_path / "out")
    # Every contour point moves by 2 pixels, so no contour distance can exceed 2 (and some reach it).
    assert (metrics["hd"] <= 2 + 1e-9).all() and (metrics["hd"] > 1).all()
    assert (metrics["dice"] < 1).all() and (metrics["dice"] > 0.8).all()
    assert (tmp_path / "out" / "overlays_worst.png").stat().st_size > 10_000


def test_expert_masks_are_anatomically_plausible(camus_root):
    """Calibration check: the criteria accept the experts' masks (all 1800 frames pass; 100 checked here)."""
    files = sorted((camus_root / "database_nifti").glob("patient00[0-2]?/*_gt.nii.gz"))[:100]
    failures = {}
    for path in files:
        failed = [name for name, bad in check_plausibility(read_segmentation(path)[0], DEFAULT_LABELS).items() if bad]
        if failed:
            failures[path.name] = failed
    assert len(files) == 100
    assert len(failures) <= 5, f"expert masks flagged as implausible: {failures}"


def test_overlay_from_camus_layout(camus_reference, camus_root, tmp_path):
    out = save_overlays(
        camus_root / "database_nifti", None, camus_reference, ["patient0001_2CH_ED"], tmp_path / "o.png"
    )
    assert out.stat().st_size > 5_000
