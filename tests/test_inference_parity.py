"""Issue item 3: `lightecho predict` gives nnUNetv2_predict --disable_tta's masks on real CAMUS frames.

Both run as the user would run them (separate processes, through nnU-Net's own results folder), via the
end-to-end timing function, which also compares the two mask folders.
"""
import shutil

from nnunet_lightweight.inference.end_to_end import benchmark_end_to_end


def test_lightecho_predict_matches_nnunetv2_predict(trained_lightecho, tmp_path, monkeypatch):
    for name, value in trained_lightecho["env"].items():
        if name.startswith("nnUNet_"):
            monkeypatch.setenv(name, value)
    frames = tmp_path / "frames"
    frames.mkdir()
    # The two validation patients of fold 0: 8 frames the model did not train on.
    for path in sorted(trained_lightecho["images_dir"].glob("*_0000.nii.gz"))[-8:]:
        shutil.copy(path, frames / path.name)
    result = benchmark_end_to_end(trained_lightecho["results_folder"], frames, tmp_path / "e2e", folds=["0"],
                                  device="cpu", include_tta=False, include_cca=False, log=None)
    agreement = result["agreement_no_tta_vs_lightecho"]
    assert agreement["cases"] == 8 and result["frames"] == 8
    compared = {label: dice for label, dice in agreement["min_dice"].items() if dice is not None}
    assert compared, "the model predicted no structure at all: nothing to compare"
    assert all(dice >= 0.99 for dice in compared.values()), agreement
    assert all(seconds > 0 for seconds in result["seconds"].values())
    assert (tmp_path / "e2e" / "end_to_end.json").is_file()
