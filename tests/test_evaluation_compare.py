"""`compare_models` / `lightecho compare` on synthetic prediction folders: tables, Wilcoxon, strata, boxplots."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from label_maps import synthetic_heart, write_seg

from nnunet_lightweight.cli import main
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.evaluation import compare_models, wilcoxon_paired

CASES = [f"patient{p:04d}_{view}_{phase}" for p in (1, 2, 3, 4) for view in ("2CH", "4CH") for phase in ("ED", "ES")]


@pytest.fixture
def dataset(tmp_path) -> dict[str, Path]:
    """16 reference frames (more than 13, so scipy's Wilcoxon uses its fast asymptotic p-value) in labelsTr/ with a metadata sidecar beside it; three models: `same` (a copy of
    `good`), `good` (LV shifted by 1 column) and `worse` (LV shifted by 3 columns, plus a stray LA speck)."""
    raw = tmp_path / "Dataset500_CAMUS"
    folders = {name: tmp_path / name for name in ("good", "same", "worse")}
    folders["ref"] = raw / "labelsTr"
    for folder in folders.values():
        folder.mkdir(parents=True)
    for index, case in enumerate(CASES):
        ref = np.roll(synthetic_heart(), index % 5 - 2, axis=0)
        write_seg(folders["ref"] / f"{case}.nii.gz", ref)
        for name, shift in (("good", 1), ("same", 1), ("worse", 3)):
            pred = ref.copy()
            pred[pred == 1] = 0
            pred[np.roll(ref == 1, shift + index % 2, axis=1)] = 1
            if name == "worse":
                pred[60:62, 2:4] = 3
            write_seg(folders[name] / f"{case}.nii.gz", pred)
    patients = {
        f"patient{p:04d}": {"views": {"2CH": {"info": {"ImageQuality": q}}, "4CH": {"info": {"ImageQuality": "Good"}}}}
        for p, q in ((1, "Good"), (2, "Medium"), (3, "Poor"), (4, "Good"))
    }
    (raw / "camus_metadata.json").write_text(json.dumps({"format_version": 1, "patients": patients}))
    return folders


def test_wilcoxon_of_identical_samples_is_one():
    values = np.linspace(0.8, 0.9, 20)
    assert wilcoxon_paired(values, values) == (0.0, 1.0)
    assert wilcoxon_paired(values, values + 0.01)[1] < 0.01


def test_compare_tables_tests_and_strata(dataset, tmp_path):
    result = compare_models(
        {name: dataset[name] for name in ("good", "same", "worse")}, dataset["ref"], tmp_path / "cmp"
    )
    assert len(result["cases"]) == 16
    summary = result["summary"].set_index(["model", "structure", "metric"])
    assert summary.loc[("good", "LV", "dice"), "mean"] > summary.loc[("worse", "LV", "dice"), "mean"]
    assert summary.loc[("good", "MYO", "dice"), "n"] == 16
    wilcoxon = result["wilcoxon"].set_index(["model_a", "model_b", "structure", "metric"])
    identical = wilcoxon.loc[("good", "same")]
    assert (identical["p_value"] == 1.0).all() and not identical["significant"].any()
    assert wilcoxon.loc[("good", "worse", "LV", "dice"), "p_value"] < 0.01
    assert wilcoxon.loc[("good", "worse", "LV", "dice"), "n"] == 16
    outliers = result["outliers"].set_index("model")
    assert outliers.loc["worse", "LA_fragmented"] == 16 and outliers.loc["good", "LA_fragmented"] == 0
    assert set(result["stratified"]) == {"view", "phase", "quality"}
    by_quality = result["stratified"]["quality"]["summary"]
    assert set(by_quality["quality"]) == {"Good", "Medium", "Poor"}
    assert (
        by_quality.query("quality == 'Poor' and model == 'good' and structure == 'LV' and metric == 'dice'")["n"].item()
        == 2
    )
    written = {p.name for p in (tmp_path / "cmp").iterdir()}
    assert {
        "comparison.md",
        "comparison.csv",
        "wilcoxon.csv",
        "outliers.csv",
        "metrics.csv",
        "boxplot_dice.png",
        "boxplot_hd.png",
        "comparison_by_view.csv",
        "comparison_by_phase.csv",
        "comparison_by_quality.csv",
    } <= written
    csv = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert {"model", "structure", "metric", "mean", "std"} <= set(csv.columns)
    report = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| good vs worse |" in report and "## By quality" in report and "boxplot_dice.png" in report


def test_compare_needs_matching_cases_and_two_models(dataset, tmp_path):
    with pytest.raises(InputError, match="at least two"):
        compare_models({"good": dataset["good"]}, dataset["ref"])
    (dataset["worse"] / f"{CASES[0]}.nii.gz").unlink()
    with pytest.raises(InputError, match=CASES[0]):
        compare_models({"good": dataset["good"], "worse": dataset["worse"]}, dataset["ref"])
    result = compare_models({"good": dataset["good"], "worse": dataset["worse"]}, dataset["ref"], allow_missing=True)
    assert len(result["cases"]) == 15


def test_cli_compare(dataset, tmp_path, capsys):
    out = tmp_path / "cli_cmp"
    code = main(
        [
            "compare",
            "--pred",
            f"A={dataset['good']}",
            "--pred",
            str(dataset["worse"]),
            "--ref",
            str(dataset["ref"]),
            "-o",
            str(out),
            "--postprocess",
            "cca",
        ]
    )
    assert code == 0
    argv = [
        "compare",
        "--pred",
        f"A|B={dataset['good']}",
        "--pred",
        str(dataset["worse"]),
        "--ref",
        str(dataset["ref"]),
    ]
    assert main([*argv, "-o", str(tmp_path / "pipe")]) == 2  # '|' would break the Markdown tables
    wilcoxon = pd.read_csv(out / "wilcoxon.csv")
    assert set(zip(wilcoxon["model_a"], wilcoxon["model_b"])) == {("A", "worse")}
    # With CCA on the fly the stray LA speck is gone, so LA no longer differs between the models.
    la_dice = wilcoxon.query("structure == 'LA' and metric == 'dice'")["p_value"].item()
    assert la_dice == 1.0
    assert (
        main(
            [
                "compare",
                "--pred",
                f"A={dataset['good']}",
                "--pred",
                f"A={dataset['worse']}",
                "--ref",
                str(dataset["ref"]),
                "-o",
                str(tmp_path / "dup"),
            ]
        )
        == 2
    )
    assert "given twice" in capsys.readouterr().err
