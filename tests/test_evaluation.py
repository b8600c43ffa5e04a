"""Evaluation on hand-checkable synthetic masks: metrics, plausibility criteria, post-processing, folders and CLI."""

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from label_maps import synthetic_heart, write_seg

from nnunet_lightweight.cli import main
from nnunet_lightweight.core.commands import console_command
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.evaluation import (
    check_plausibility,
    evaluate_folder,
    keep_largest_component_per_label,
    morphological_filter,
    parse_case_id,
    parse_labels,
    postprocess,
    structure_metrics,
)
from nnunet_lightweight.evaluation.io import DEFAULT_LABELS, load_evaluation_metadata, read_segmentation


def rectangle(shape=(64, 64), rows=(20, 40), cols=(10, 30), shift=0) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1], cols[0] + shift : cols[1] + shift] = True
    return mask


def failed(seg: np.ndarray) -> set[str]:
    return {name for name, bad in check_plausibility(seg, DEFAULT_LABELS).items() if bad}


# --- metrics -----------------------------------------------------------------------------------------------------


def test_identical_masks_give_dice_one_and_zero_distances():
    result = structure_metrics(rectangle(), rectangle(), (1.0, 1.0))
    assert result["dice"] == 1.0
    assert result["hd"] == result["hd95"] == result["mad"] == result["hd_mm"] == 0.0


@pytest.mark.parametrize("shift", [1, 3, 7])
def test_rectangle_shifted_by_k_pixels_has_hausdorff_k(shift):
    result = structure_metrics(rectangle(shift=shift), rectangle(), (1.0, 1.0))
    assert result["hd"] == pytest.approx(shift)
    assert result["dice"] == pytest.approx((20 - shift) / 20)  # width 20, overlap 20 - k columns


def test_anisotropic_spacing_scales_distances_along_each_axis():
    # Shift along columns; columns are 0.5 mm apart, rows 2 mm apart: HD is k * 0.5 mm but k pixels.
    result = structure_metrics(rectangle(shift=4), rectangle(), (2.0, 0.5))
    assert result["hd"] == pytest.approx(4.0)
    assert result["hd_mm"] == pytest.approx(2.0)


def test_mad_and_hd95_of_a_rectangle_grown_by_one_pixel():
    pred = rectangle(rows=(20, 30), cols=(20, 35))  # 10 x 15
    ref = rectangle(rows=(19, 31), cols=(19, 36))  # grown by 1 on every side: 12 x 17
    result = structure_metrics(pred, ref, (1.0, 1.0))
    pred_contour, ref_contour = 2 * 10 + 2 * 15 - 4, 2 * 12 + 2 * 17 - 4
    # Every contour distance is 1 except the 4 reference corners, which are sqrt(2) from the prediction's corners.
    expected_mad = (pred_contour + ref_contour - 4 + 4 * math.sqrt(2)) / (pred_contour + ref_contour)
    assert result["hd"] == pytest.approx(math.sqrt(2))
    assert result["mad"] == pytest.approx(expected_mad)
    assert result["hd95"] == pytest.approx(1.0)
    assert result["dice"] == pytest.approx(2 * 150 / (150 + 204))


def test_empty_masks_have_documented_finite_values():
    empty = np.zeros((64, 64), bool)
    both = structure_metrics(empty, empty, (1.0, 1.0))
    assert both["dice"] == 1.0 and both["hd"] == 0.0 and both["empty_pred"] and both["empty_ref"]
    one = structure_metrics(empty, rectangle(), (1.0, 2.0))
    assert one["dice"] == 0.0 and one["empty_pred"] and not one["empty_ref"]
    assert one["hd"] == one["hd95"] == one["mad"] == pytest.approx(63 * math.sqrt(2))
    assert one["hd_mm"] == pytest.approx(math.hypot(63, 126))


# --- anatomical plausibility -------------------------------------------------------------------------------------


def test_synthetic_heart_is_plausible():
    assert failed(synthetic_heart()) == set()


def test_hole_in_lv_is_flagged():
    seg = synthetic_heart()
    seg[20:23, 30:33] = 0
    assert failed(seg) == {"LV_hole", "LV_MYO_hole"}


def test_second_component_is_flagged_and_cca_removes_it():
    seg = synthetic_heart()
    seg[55:58, 2:5] = 2
    assert failed(seg) == {"MYO_fragmented"}
    cleaned = keep_largest_component_per_label(seg, DEFAULT_LABELS)
    assert failed(cleaned) == set()
    assert np.array_equal(cleaned, synthetic_heart())


def test_missing_structure_is_flagged():
    seg = synthetic_heart()
    seg[seg == 3] = 0
    # Without an LA the base cannot be located, so the LV's open base also counts as not enclosed.
    assert failed(seg) == {"missing_LA", "LV_not_enclosed"}


def test_lv_not_enclosed_by_myocardium_at_apex_is_flagged():
    seg = synthetic_heart()
    seg[:12][seg[:12] == 2] = 0  # remove the apical myocardium
    assert failed(seg) == {"LV_not_enclosed", "MYO_fragmented"}  # the wall splits into two arms


def test_detached_atrium_is_flagged():
    seg = synthetic_heart()
    la = seg == 3
    seg[la] = 0
    seg[np.roll(la, 4, axis=0)] = 3
    assert failed(seg) == {"LA_not_touching_LV"}


def test_gap_between_cavity_and_wall_is_flagged():
    seg = synthetic_heart()
    lv = seg == 1
    rim = lv & ~np.roll(lv, 1, axis=1)  # the leftmost LV pixel of every row
    seg[rim & (np.arange(64)[:, None] < 30)] = 0
    assert failed(seg) == {"LV_MYO_hole"}


def test_morphological_opening_removes_specks_and_closing_fills_gaps():
    seg = synthetic_heart()
    specks = seg.copy()
    specks[50, 5] = 1  # LV speck in the background: becomes background
    specks[8, 32] = 1  # LV speck inside the apical myocardium: joins the myocardium, leaves no hole
    opened = morphological_filter(specks, DEFAULT_LABELS, "open", 1)
    assert opened[50, 5] == 0 and opened[8, 32] == 2
    gapped = seg.copy()
    gapped[25, 32] = 0  # a one-pixel hole inside the LV
    lv = seg == 1
    gapped[lv & ~np.roll(lv, 1, axis=1) & (np.arange(64)[:, None] < 30)] = 0  # background between LV and MYO
    assert failed(gapped) == {"LV_hole", "LV_MYO_hole"}
    closed = morphological_filter(gapped, DEFAULT_LABELS, "close", 1)
    assert closed[25, 32] == 1 and failed(closed) == set()
    assert failed(morphological_filter(gapped, DEFAULT_LABELS, "both", 1)) == set()


# --- io ----------------------------------------------------------------------------------------------------------


def test_case_ids_and_labels_are_parsed():
    info = parse_case_id("patient0001_2CH_ES")
    assert (info.patient, info.view, info.phase) == ("patient0001", "2CH", "ES")
    other = parse_case_id("heart_042")
    assert (other.patient, other.view, other.phase) == ("heart_042", "unknown", "unknown")
    assert parse_labels("LV=1, MYO=2") == {"LV": 1, "MYO": 2}
    with pytest.raises(InputError):
        parse_labels("LV=one")


def test_metadata_sidecar_of_the_converter_and_a_plain_layout(tmp_path):
    sidecar = tmp_path / "camus_metadata.json"
    sidecar.write_text(
        json.dumps(
            {
                "format_version": 1,
                "patients": {
                    "patient0001": {
                        "views": {"2CH": {"info": {"ImageQuality": "Good", "ED": 1}}, "4CH": {"info": None}}
                    },
                },
                "cases": {"case_17": {"patient": "patient0001", "view": "2CH", "phase": "ES"}},
            }
        )
    )
    metadata = load_evaluation_metadata(sidecar)
    info, quality = metadata.describe("case_17")
    assert (info.patient, info.view, info.phase, quality) == ("patient0001", "2CH", "ES", "Good")
    assert metadata.describe("patient0001_4CH_ED")[1] == "unknown"
    sidecar.write_text(json.dumps({"patient0002": {"image_quality": "medium"}, "patient0003": {"4CH": {"ED": 1}}}))
    metadata = load_evaluation_metadata(sidecar)
    assert metadata.describe("patient0002_4CH_ED")[1] == "Medium"
    assert metadata.describe("patient0003_4CH_ED")[1] == "unknown"
    sidecar.write_text("[1, 2")
    with pytest.raises(InputError, match="camus_metadata.json"):
        load_evaluation_metadata(sidecar)


# --- folders -----------------------------------------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """Reference: four synthetic hearts; prediction: identical except the LV of one is shifted by 2 columns."""
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir(), ref_dir.mkdir()
    for index, case in enumerate(["p1_2CH_ED", "p1_2CH_ES", "p1_4CH_ED", "p1_4CH_ES"]):
        ref = np.roll(synthetic_heart(), index, axis=0)
        write_seg(ref_dir / f"{case}.nii.gz", ref, (0.3, 0.3))
        pred = ref.copy()
        if case == "p1_4CH_ES":
            pred[pred == 1] = 0
            pred[np.roll(ref == 1, 2, axis=1)] = 1
        write_seg(pred_dir / f"{case}.nii.gz", pred, (0.3, 0.3))
    return pred_dir, ref_dir


def test_nnunet_written_files_are_read_as_2d_with_spacing(folders):
    seg, spacing = read_segmentation(folders[1] / "p1_2CH_ED.nii.gz")
    assert seg.shape == (64, 64) and spacing == pytest.approx((0.3, 0.3))


def test_evaluate_folder_writes_metrics_outliers_and_summary(folders, tmp_path):
    pred_dir, ref_dir = folders
    metrics = evaluate_folder(pred_dir, ref_dir, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert {"case", "structure", "dice", "hd", "hd95", "mad", "hd_mm"} <= set(table.columns)
    assert len(table) == len(metrics) == 12 and set(table["structure"]) == {"LV", "MYO", "LA"}
    unchanged = table[table["case"] != "p1_4CH_ES"]
    assert (unchanged["dice"] == 1).all() and (unchanged["hd"] == 0).all()
    shifted = table[(table["case"] == "p1_4CH_ES") & (table["structure"] == "LV")].iloc[0]
    assert shifted["hd"] <= 2 and shifted["hd_mm"] == pytest.approx(0.3 * shifted["hd"]) and shifted["dice"] < 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_cases"] == 4 and summary["metrics"]["MYO"]["dice"]["mean"] == pytest.approx(
        table.query("structure == 'MYO'")["dice"].mean()
    )
    outliers = pd.read_csv(tmp_path / "out" / "outliers.csv")
    assert len(outliers) == 4 and summary["anatomical_outliers"]["count"] == int(outliers["outlier"].sum())
    # The shifted LV pokes into the myocardium on one side and leaves a gap on the other.
    assert outliers.set_index("case").loc["p1_4CH_ES", "outlier"]
    assert "p1_4CH_ES" in summary["anatomical_outliers"]["cases"]


def test_postprocess_on_the_fly_and_as_files_agree(folders, tmp_path):
    pred_dir, ref_dir = folders
    speckled = tmp_path / "speckled"
    speckled.mkdir()
    for path in sorted(pred_dir.glob("*.nii.gz")):
        seg, spacing = read_segmentation(path)
        seg[60:62, 60:62] = 3
        write_seg(speckled / path.name, seg, spacing)
    before = evaluate_folder(speckled, ref_dir)
    on_the_fly = evaluate_folder(speckled, ref_dir, postprocess="cca")
    postprocess(speckled, tmp_path / "cleaned", "cca")
    from_files = evaluate_folder(tmp_path / "cleaned", ref_dir)
    assert (before.query("structure == 'LA'")["hd"] > 20).all()
    assert np.allclose(on_the_fly["hd"], from_files["hd"]) and np.allclose(on_the_fly["dice"], from_files["dice"])
    assert (from_files.query("structure == 'LA'")["dice"] == 1).all()
    assert read_segmentation(tmp_path / "cleaned" / "p1_2CH_ED.nii.gz")[1] == pytest.approx((0.3, 0.3))


def test_missing_case_shape_mismatch_and_corrupt_file_are_clear_errors(folders, tmp_path):
    pred_dir, ref_dir = folders
    (pred_dir / "p1_4CH_ES.nii.gz").unlink()
    with pytest.raises(InputError, match="p1_4CH_ES"):
        evaluate_folder(pred_dir, ref_dir)
    assert len(evaluate_folder(pred_dir, ref_dir, allow_missing=True)) == 9
    write_seg(pred_dir / "p1_4CH_ES.nii.gz", np.zeros((32, 64), np.uint8), (0.3, 0.3))
    with pytest.raises(InputError, match="shape mismatch.*p1_4CH_ES"):
        evaluate_folder(pred_dir, ref_dir)
    write_seg(pred_dir / "p1_4CH_ES.nii.gz", np.full((64, 64), 5, np.uint8), (0.3, 0.3))
    with pytest.raises(InputError, match=r"label values \[5\]"):
        evaluate_folder(pred_dir, ref_dir)
    (pred_dir / "p1_4CH_ES.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="cannot read .*p1_4CH_ES"):
        evaluate_folder(pred_dir, ref_dir)
    write_seg(pred_dir / "extra_2CH_ED.nii.gz", np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError, match="no reference"):
        evaluate_folder(pred_dir, ref_dir)


def test_a_flipped_or_shifted_prediction_grid_is_an_error(folders):
    """A prediction stored flipped (its header compensating) or starting elsewhere has the reference's shape and
    spacing, but its pixel (i, j) lies elsewhere: comparing by index would give wrong Dice silently."""
    import SimpleITK as sitk

    pred_dir, ref_dir = folders
    path = pred_dir / "p1_2CH_ED.nii.gz"
    image = sitk.ReadImage(str(path))
    flipped = sitk.Flip(image, [True, True])  # pixels reversed, direction and origin keep them in place
    sitk.WriteImage(flipped, str(path))
    with pytest.raises(InputError, match="orientation mismatch.*p1_2CH_ED"):
        evaluate_folder(pred_dir, ref_dir)
    image.SetOrigin((5.0, 0.0))
    sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match="origin mismatch.*p1_2CH_ED"):
        evaluate_folder(pred_dir, ref_dir)


def test_postprocess_refuses_what_is_not_a_label_map_of_the_structures(tmp_path):
    """Masks that evaluate refuses (other label values, fractional values, stacks of frames) are not post-processed
    and written back either: one line naming the file, nothing written."""
    import SimpleITK as sitk

    for name, array, message in (
        ("label5", np.where(synthetic_heart() == 3, 5, synthetic_heart()), r"label values \[5\]"),
        ("fraction", synthetic_heart() * 0.7, "non-integer"),
        ("stack", np.stack([synthetic_heart()] * 2), "not a 2D label map"),
    ):
        single = tmp_path / name
        single.mkdir()
        sitk.WriteImage(sitk.GetImageFromArray(array), str(single / "p1_2CH_ED.nii.gz"))
        with pytest.raises(InputError, match=f"{name}/p1_2CH_ED.nii.gz.*{message}"):
            postprocess(single, tmp_path / f"out_{name}", "cca")
        assert not (tmp_path / f"out_{name}").exists()


def test_console_command_with_deferred_pandas_writes_what_main_writes(folders, tmp_path):
    """The installed command defers pandas (and others) until first use; `evaluate`, which uses pandas throughout,
    gives the same tables through it as through `main` in this process."""
    pred_dir, ref_dir = folders
    assert main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "-o", str(tmp_path / "main")]) == 0
    arguments = ("evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "-o", str(tmp_path / "console"))
    finished = subprocess.run(console_command("lightecho", *arguments), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    for name in ("metrics.csv", "outliers.csv"):
        assert (tmp_path / "console" / name).read_text() == (tmp_path / "main" / name).read_text()


def test_cli_evaluate_and_postprocess(folders, tmp_path, capsys):
    pred_dir, ref_dir = folders
    out = tmp_path / "cli_out"
    assert main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "-o", str(out)]) == 0
    assert {"metrics.csv", "outliers.csv", "summary.json"} <= {p.name for p in out.iterdir()}
    assert main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(pred_dir),
                "--ref",
                str(ref_dir),
                "-o",
                str(out),
                "--overwrite",
                "--postprocess",
                "cca+morph",
                "--labels",
                "LV=1,MYO=2,LA=3",
            ]
        )
        == 0
    )
    assert json.loads((out / "summary.json").read_text())["postprocess"] == "cca+morph"
    assert (
        main(["evaluate", "--pred", str(tmp_path / "nowhere"), "--ref", str(ref_dir), "-o", str(tmp_path / "x")]) == 2
    )
    assert "nowhere" in capsys.readouterr().err
    assert main(["postprocess", "-i", str(pred_dir), "-o", str(tmp_path / "pp"), "--method", "morph"]) == 0
    assert len(list((tmp_path / "pp").glob("*.nii.gz"))) == 4
