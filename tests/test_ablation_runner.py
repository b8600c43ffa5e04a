"""Issue 6: the ablation runner's logic on prepared nnU-Net result folders (no training): variant lists, Wilcoxon
keep/discard decisions, connected-component post-processing, resuming, failures and the written table."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from ablation_dataset import corrupt

from nnunet_lightweight.cli import main
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.workflows import ablation
from nnunet_lightweight.workflows.ablation import compare_with_best, fold_folder, run_ablation
from nnunet_lightweight.workflows.ablation_variants import (
    CCA,
    LADDER,
    ablation_variants,
    count_variant_parameters,
    expand_variants,
    variant_groups,
    variant_step,
)

DATASET = "Dataset962_AblationFake"
N_CASES = 12
BASELINE, BN, MISH = LADDER[0], LADDER[1], LADDER[2]
FINAL = "nnUNetTrainerLightEcho"


def write_label(path, array):
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array[None].astype(np.uint8)), str(path))


@pytest.fixture
def fake_study(nnunet_dirs):
    """A preprocessed-looking dataset of 12 phantom label maps and a writer of finished nnU-Net result folders."""
    from nnunet_lightweight.conversion.phantom import render_frame, sample_patient

    preprocessed = nnunet_dirs["nnUNet_preprocessed"] / DATASET
    (nnunet_dirs["nnUNet_raw"] / DATASET).mkdir()
    references = {}
    for index in range(N_CASES // 2):
        patient = sample_patient(index + 1, seed=3)
        for view in ("2CH", "4CH"):
            case = f"{patient.patient_id}_{view}_ED"
            references[case] = render_frame(patient, view, 1, size=64)[1]
            write_label(preprocessed / "gt_segmentations" / f"{case}.nii.gz", references[case])
    # gt_segmentations holds every case of the dataset, training cases included.
    write_label(preprocessed / "gt_segmentations" / "patient0099_2CH_ED.nii.gz", references[case])
    (preprocessed / "nnUNetPlans.json").write_text(json.dumps({"configurations": {}}))
    dataset_json = {
        "channel_names": {"0": "echo"},
        "labels": {"background": 0, "LV": 1, "MYO": 2, "LA": 3},
        "numTraining": N_CASES,
        "file_ending": ".nii.gz",
    }
    (preprocessed / "dataset.json").write_text(json.dumps(dataset_json))
    (preprocessed / "splits_final.json").write_text(json.dumps([{"train": [], "val": sorted(references)}]))

    def finish(trainer: str, islands: int, flips: int, seed: int = 0, epochs: int = 3) -> None:
        """A finished training of `trainer` whose predictions are the references with stray blobs and noise."""
        folder = fold_folder(DATASET, trainer, 0)
        rng = np.random.default_rng(seed)
        for case, reference in references.items():
            write_label(folder / "validation" / f"{case}.nii.gz", corrupt(reference, rng, islands, flips))
        (folder / "validation" / "summary.json").write_text("{}")
        (folder.parent / "plans.json").write_text(json.dumps({"configurations": {}}))
        torch.save({"current_epoch": epochs}, folder / "checkpoint_final.pth")

    return {"finish": finish, "references": references}


def test_variant_lists_groups_and_steps():
    assert expand_variants(None) == list(LADDER)
    groups = variant_groups()
    everything = groups["all"]
    assert sorted(everything) == sorted([*ablation_variants(), CCA])
    assert everything.index(CCA) == everything.index("nnUNetTrainerLightEcho_UNet1_BN_LeakyReLU") + 1
    assert expand_variants(["nnunet", BN]) == [*groups["nnunet"], BN]
    assert [variant_step(n) for n in LADDER] == [
        "Baseline",
        "Normalization",
        "Activation",
        "Postprocessing",
        "Data augmentation",
        "Loss function",
        "Deep supervision",
        "Size",
        "Size",
        "Size",
        "Architecture",
        "Architecture",
    ]
    with pytest.raises(InputError, match="nnUNetTrainerNope"):
        expand_variants([BASELINE, "nnUNetTrainerNope"])
    with pytest.raises(InputError, match="cca"):
        expand_variants([CCA, BASELINE])


def test_keep_needs_a_significant_gain_and_no_significant_loss():
    rng = np.random.default_rng(0)
    cases = [f"c{i}" for i in range(30)]
    best = pd.DataFrame(
        {"case": cases, "structure": "LV", "dice": rng.uniform(0.80, 0.90, 30), "hd": rng.uniform(8, 12, 30)}
    )
    better = best.assign(dice=best["dice"] + rng.uniform(0.01, 0.03, 30))
    p_dice, p_hd, decision = compare_with_best(better, best)
    assert p_dice < 0.001 and p_hd == 1.0 and decision == "keep"
    assert compare_with_best(best.assign(dice=best["dice"] - 0.02), best)[2] == "discard"
    assert compare_with_best(best, best) == (1.0, 1.0, "discard")
    mixed = better.assign(hd=best["hd"] + rng.uniform(0.5, 1.0, 30))
    assert compare_with_best(mixed, best)[2] == "discard"  # Dice better but HD significantly worse
    noise = best.assign(dice=best["dice"] + rng.normal(0, 0.01, 30))
    assert compare_with_best(noise, best, alpha=1e-6)[2] == "discard"


def test_incremental_table_decisions_cca_and_final_row(fake_study, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("finished runs must not be retrained")

    monkeypatch.setattr(ablation, "_train_in_subprocess", no_training)
    fake_study["finish"](BASELINE, islands=3, flips=400)
    fake_study["finish"](BN, islands=3, flips=40)  # far fewer wrong pixels: significantly better Dice
    fake_study["finish"](MISH, islands=3, flips=41, seed=1)  # about as good as BN: no significant gain
    out = tmp_path / "out"
    table = run_ablation(DATASET, 0, out, [BASELINE, BN, CCA, MISH], device="cpu")
    assert list(table["step"]) == ["Baseline", "Normalization", "Postprocessing", "Activation", "Final"]
    assert list(table["decision"]) == ["reference", "keep", "keep", "discard", "final model"]
    assert table.loc[1, "dice_LV"] > table.loc[0, "dice_LV"] and table.loc[1, "p_dice"] < 0.05
    # CCA removes the stray blobs: same trainer, post-processed, much lower Hausdorff distance.
    assert table.loc[2, "trainer"] == BN and table.loc[2, "postprocessing"] == CCA
    assert table.loc[2, "hd_MYO"] < table.loc[1, "hd_MYO"] and table.loc[2, "p_hd"] < 0.05
    assert table.loc[3, "postprocessing"] == CCA  # evaluated with the kept post-processing
    assert table.loc[4, "trainer"] == BN and table.loc[4, "postprocessing"] == CCA
    assert table.loc[0, "epochs"] == 3 and table.loc[0, "frames"] == N_CASES
    assert table.loc[0, "params"] == count_variant_parameters(BASELINE)
    assert pd.isna(table.loc[0, "p_dice"]) and table["outliers"].notna().all()

    written = pd.read_csv(out / "ablation.csv")
    assert list(written.columns) == [
        "step",
        "trainer",
        "params",
        "epochs",
        "postprocessing",
        "frames",
        "dice_LV",
        "dice_MYO",
        "dice_LA",
        "hd_LV",
        "hd_MYO",
        "hd_LA",
        "outliers",
        "p_dice",
        "p_hd",
        "decision",
    ]
    assert list(written["decision"]) == list(table["decision"])
    markdown = (out / "ablation.md").read_text()
    assert f"# Ablation study: {DATASET}, fold 0" in markdown and "smoke" not in markdown
    assert markdown.count(f"`{BN}`") == 3 and "| Postprocessing |" in markdown
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 4 * N_CASES * 3 and set(metrics["postprocessing"]) == {"none", CCA}
    assert (out / "ablation.png").stat().st_size > 10_000
    assert json.loads((out / "ablation.json").read_text())["variants"] == [BASELINE, BN, CCA, MISH]


def test_unfinished_runs_are_trained_resumed_or_validated_and_failures_reported(fake_study, tmp_path, monkeypatch):
    calls = []

    def fake_training(dataset_name, fold, trainer, state, device, max_epochs, log):
        calls.append((trainer, state, device, max_epochs))
        if trainer == MISH:
            return 1
        if state == "trained":  # validation only
            (fold_folder(DATASET, trainer, 0) / "validation" / "summary.json").write_text("{}")
        else:
            fake_study["finish"](trainer, islands=1, flips=50, epochs=max_epochs)
        return 0

    monkeypatch.setattr(ablation, "_train_in_subprocess", fake_training)
    fold_folder(DATASET, BN, 0).mkdir(parents=True)
    torch.save({}, fold_folder(DATASET, BN, 0) / "checkpoint_latest.pth")
    fake_study["finish"](FINAL, islands=0, flips=10)
    (fold_folder(DATASET, FINAL, 0) / "validation" / "summary.json").unlink()
    out = tmp_path / "out"
    table = run_ablation(DATASET, 0, out, [BASELINE, BN, MISH, FINAL], device="cpu", max_epochs=2)
    assert calls == [
        (BASELINE, "new", "cpu", 2),
        (BN, "partial", "cpu", 2),
        (MISH, "new", "cpu", 2),
        (FINAL, "trained", "cpu", 2),
    ]
    assert table.loc[2, "decision"].startswith("failed") and pd.isna(table.loc[2, "dice_LV"])
    assert table.loc[3, "decision"] == "keep" and table.loc[3, "p_dice"] < 0.05
    assert "smoke/test schedule" in (out / "ablation.md").read_text()

    calls.clear()
    assert (
        main(
            [
                "ablation",
                "run",
                "-d",
                DATASET,
                "-f",
                "0",
                "-o",
                str(out),
                "--device",
                "cpu",
                "--variants",
                BASELINE,
                MISH,
            ]
        )
        == 1
    )  # the failed variant is retried and fails again
    assert calls == [(MISH, "new", "cpu", None)]


def test_output_folder_of_another_study_is_not_overwritten(fake_study, tmp_path, monkeypatch, capsys):
    fake_study["finish"](BASELINE, islands=1, flips=10)
    out = tmp_path / "out"
    run_ablation(DATASET, 0, out, [BASELINE], device="cpu")
    settings = json.loads((out / "ablation.json").read_text())
    (out / "ablation.json").write_text(json.dumps({**settings, "fold": 3}))
    assert main(["ablation", "run", "-d", DATASET, "-o", str(out), "--variants", BASELINE, "--device", "cpu"]) == 2
    assert "fold 3" in capsys.readouterr().err
    assert (
        main(
            ["ablation", "run", "-d", DATASET, "-o", str(out), "--variants", BASELINE, "--device", "cpu", "--overwrite"]
        )
        == 0
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        run_ablation(DATASET, 0, other, [BASELINE], device="cpu")
    with pytest.raises(InputError, match="fold 1"):
        run_ablation(DATASET, 1, tmp_path / "x", [BASELINE], device="cpu")


def test_list_prints_one_line_per_variant(capsys):
    assert main(["ablation", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(ablation_variants())
    counts = {name: int(count) for name, count in (line.split() for line in lines)}
    assert counts["nnUNetTrainerLightEcho_UNet0"] == 118_808 and counts["nnUNetTrainer_100epochs"] > 30_000_000


def test_missing_validation_prediction_is_an_error(fake_study, tmp_path):
    fake_study["finish"](BASELINE, islands=1, flips=10)
    missing = sorted(fake_study["references"])[0]
    (fold_folder(DATASET, BASELINE, 0) / "validation" / f"{missing}.nii.gz").unlink()
    with pytest.raises(InputError, match=missing):
        run_ablation(DATASET, 0, tmp_path / "out", [BASELINE], device="cpu")
