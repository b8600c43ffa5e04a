"""Issue item 3: `lightecho predict` gives nnUNetv2_predict --disable_tta's masks on real CAMUS frames.

Both run as the user would run them (separate processes, through nnU-Net's own results folder), via the
end-to-end timing function, which also compares the two mask folders.
"""

import json
import shutil

import pytest

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.workflows.end_to_end import benchmark_end_to_end, mask_agreement


def test_lightecho_predict_matches_nnunetv2_predict(trained_lightecho, tmp_path, monkeypatch):
    for name, value in trained_lightecho["env"].items():
        if name.startswith("nnUNet_"):
            monkeypatch.setenv(name, value)
    frames = tmp_path / "frames"
    frames.mkdir()
    # The two validation patients of fold 0: 8 frames the model did not train on.
    for path in sorted(trained_lightecho["images_dir"].glob("*_0000.nii.gz"))[-8:]:
        shutil.copy(path, frames / path.name)
    # The default CPU engine (OpenVINO where installed) and, as a variant, the optimised torch engine.
    result = benchmark_end_to_end(
        trained_lightecho["results_folder"],
        frames,
        tmp_path / "e2e",
        folds=["0"],
        device="cpu",
        include_tta=False,
        include_cca=False,
        variants={"torch": ["--backend", "torch"]},
        keep_outputs=True,
        log=None,
    )
    assert result["frames"] == 8 and all(seconds > 0 for seconds in result["seconds"].values())
    assert (tmp_path / "e2e" / "end_to_end.json").is_file()
    variant = result["variants"]["lightecho predict --no-cca (torch)"]
    assert variant["inside_process"]["frames"] == 8
    assert set(variant["speedup_vs"]) == {"nnUNetv2_predict --disable_tta"}
    # A model trained for one epoch has near-tied logits, and nnU-Net keeps its logits in fp16: a structure of a
    # few pixels can lose one. Dice >= 0.99 is required of every structure of at least 100 pixels, and at most
    # 0.1 % of all pixels may differ.
    agreement = mask_agreement(
        tmp_path / "e2e" / "nnunet_no_tta", tmp_path / "e2e" / "lightecho_no_cca", [1, 2, 3], min_pixels=100
    )
    assert agreement["cases"] == 8
    compared = {label: dice for label, dice in agreement["min_dice"].items() if dice is not None}
    assert compared, "the model predicted no structure of 100 pixels: nothing to compare"
    assert all(dice >= 0.99 for dice in compared.values()), agreement
    assert agreement["differing_pixels"] <= 0.001 * 8 * 224 * 224, agreement
    torch_engine = mask_agreement(
        tmp_path / "e2e" / "nnunet_no_tta", tmp_path / "e2e" / "lightecho_no_cca_torch", [1, 2, 3], min_pixels=100
    )
    assert torch_engine["differing_pixels"] <= 0.001 * 8 * 224 * 224, torch_engine


def test_end_to_end_benchmark_refuses_a_used_work_folder(tmp_path):
    """The benchmark removes its outputs afterwards, so it writes only into a new folder: a folder holding
    anything (here a user's folder named like one of its outputs) is refused before any command runs, untouched."""
    model, frames, work = tmp_path / "model", tmp_path / "frames", tmp_path / "work"
    model.mkdir()
    (model / "dataset.json").write_text(json.dumps({"file_ending": ".nii.gz", "labels": {"background": 0, "LV": 1}}))
    frames.mkdir()
    (frames / "case_0000.nii.gz").write_bytes(b"")
    (work / "nnunet_no_tta").mkdir(parents=True)
    (work / "nnunet_no_tta" / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty"):
        benchmark_end_to_end(model, frames, work, log=None)
    assert (work / "nnunet_no_tta" / "mine.txt").read_text() == "keep me"
