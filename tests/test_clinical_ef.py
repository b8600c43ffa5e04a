"""Per-patient EF from folders of masks, reference values, agreement statistics, `lightecho ef`."""

import json

import numpy as np
import pandas as pd
import pytest
from clinical_shapes import section_mask, truncated_ellipsoid_volume_ml, write_mask

from nnunet_lightweight.cli import main
from nnunet_lightweight.clinical.agreement import agreement, agreement_statistics
from nnunet_lightweight.clinical.ejection_fraction import ef, ef_table, ejection_fraction
from nnunet_lightweight.core.errors import InputError

SPACING = (0.4, 0.4)
# (a, b, c) of the ED and ES ellipsoids per patient (half-ellipsoids, mm).
SHAPES = {"patient0001": ((80, 26, 24), (68, 18, 17)), "patient0002": ((75, 24, 25), (70, 21, 22))}


def _analytic_ef(patient):
    ed, es = SHAPES[patient]
    return ejection_fraction(truncated_ellipsoid_volume_ml(*ed), truncated_ellipsoid_volume_ml(*es))


def _write_patient(folder, patient, spacing=SPACING, views=("2CH", "4CH"), phases=("ED", "ES"), suffix="", scale=1.0):
    folder.mkdir(parents=True, exist_ok=True)
    for phase, (a, b, c) in zip(("ED", "ES"), SHAPES[patient]):
        if phase not in phases:
            continue
        for view, half_width in (("2CH", b), ("4CH", c)):
            if view in views:
                mask = section_mask(a * scale, half_width * scale, 0, spacing, labels=True)
                write_mask(folder / f"{patient}_{view}_{phase}{suffix}.nii.gz", mask, spacing)


def test_ef_table_measures_biplane_volumes_in_ml(tmp_path):
    for patient in SHAPES:
        _write_patient(tmp_path / "masks", patient)
    table = ef_table(tmp_path / "masks")
    assert list(table["patient"]) == sorted(SHAPES)
    assert set(table["method"]) == {"biplane"} and set(table["volume_unit"]) == {"mL"}
    for _, row in table.iterrows():
        (a, b, c), _ = SHAPES[row["patient"]]
        assert row["edv"] == pytest.approx(truncated_ellipsoid_volume_ml(a, b, c), rel=0.03)
        assert row["ef"] == pytest.approx(_analytic_ef(row["patient"]), abs=1.0)


def test_unit_spacing_means_pixels_unless_metadata_says_physical(tmp_path):
    _write_patient(tmp_path / "masks", "patient0001", spacing=(1.0, 1.0))
    row = ef_table(tmp_path / "masks").iloc[0]
    assert row["volume_unit"] == "px^3"
    (a, b, c), _ = SHAPES["patient0001"]
    assert row["edv"] == pytest.approx(truncated_ellipsoid_volume_ml(a, b, c) * 1000, rel=0.03)  # 1 px = 1 mm here
    metadata = tmp_path / "camus_metadata.json"
    metadata.write_text(json.dumps({"patients": {"patient0001": {"spacing_is_physical": True}}}))
    physical = ef_table(tmp_path / "masks").iloc[0]  # found one folder above the masks
    assert physical["volume_unit"] == "mL" and physical["edv"] == pytest.approx(row["edv"] / 1000)
    assert physical["ef"] == pytest.approx(row["ef"])
    assert ef_table(tmp_path / "masks", units="px").iloc[0]["volume_unit"] == "px^3"


def test_pixel_units_ignore_a_physical_header(tmp_path):
    _write_patient(tmp_path / "masks", "patient0001", spacing=(0.5, 0.5))
    mm, px = ef_table(tmp_path / "masks").iloc[0], ef_table(tmp_path / "masks", units="px").iloc[0]
    assert px["volume_unit"] == "px^3" and px["edv"] == pytest.approx(mm["edv"] * 1000 / 0.5**3, rel=1e-6)


def test_single_view_falls_back_to_single_plane(tmp_path):
    _write_patient(tmp_path / "masks", "patient0001", views=("4CH",))
    row = ef_table(tmp_path / "masks").iloc[0]
    assert row["method"] == "single_plane_4CH"
    (a, _, c), _ = SHAPES["patient0001"]
    assert row["edv"] == pytest.approx(truncated_ellipsoid_volume_ml(a, c, c), rel=0.03)


def test_missing_phase_is_an_error_for_one_patient_and_a_warning_in_a_dataset(tmp_path):
    _write_patient(tmp_path / "one", "patient0001", phases=("ED",))
    with pytest.raises(InputError, match="patient0001: 2CH ES mask missing"):
        ef_table(tmp_path / "one")
    _write_patient(tmp_path / "many", "patient0001", phases=("ED",))
    _write_patient(tmp_path / "many", "patient0002")
    table = ef_table(tmp_path / "many")
    assert list(table["patient"]) == ["patient0002"]
    assert any("skipped patient0001" in problem for problem in table.attrs["warnings"])


def test_inconsistent_spacing_within_a_view_is_an_error(tmp_path):
    _write_patient(tmp_path / "masks", "patient0001")
    write_mask(tmp_path / "masks" / "patient0001_2CH_ES.nii.gz", section_mask(68, 18, 0, (0.5, 0.5), True), (0.5, 0.5))
    with pytest.raises(InputError, match="inconsistent spacing"):
        ef_table(tmp_path / "masks")


def test_an_image_instead_of_a_mask_is_an_error_naming_the_file(tmp_path):
    _write_patient(tmp_path / "masks", "patient0001")
    write_mask(tmp_path / "masks" / "patient0001_4CH_ED.nii.gz", np.full((40, 40), 200, np.uint8), SPACING)
    with pytest.raises(InputError, match="patient0001_4CH_ED.nii.gz has values"):
        ef_table(tmp_path / "masks")


def test_camus_folder_with_info_files_gives_reference_values(tmp_path):
    patient_dir = tmp_path / "database_nifti" / "patient0001"
    _write_patient(patient_dir, "patient0001", suffix="_gt")
    # Images sit beside the _gt masks in CAMUS folders; they must not be read as masks.
    write_mask(patient_dir / "patient0001_2CH_ED.nii.gz", np.full((40, 40), 200, np.uint8), SPACING)
    for view in ("2CH", "4CH"):
        (patient_dir / f"Info_{view}.cfg").write_text(
            "ED: 1\nES: 14\nNbFrame: 14\nEF: 55.0\nLVedv: 120.0\nLVesv: 54.0\nImageQuality: Good\n"
        )
    table = ef_table(None, tmp_path / "database_nifti")
    row = table.iloc[0]
    assert row["ref_source"] == "info" and row["ef_ref"] == 55.0 and row["edv_info"] == 120.0
    stats = agreement(table)
    assert stats["EF"]["n"] == 1 and stats["EF"]["bias"] == pytest.approx(row["ef"] - 55.0)
    assert stats["EDV"]["n"] == 1  # both in mL: comparable


def test_agreement_statistics_by_hand():
    measured, reference = np.array([50.0, 60.0, 40.0, 70.0]), np.array([48.0, 63.0, 40.0, 65.0])
    stats = agreement_statistics(measured, reference)
    differences = measured - reference  # 2, -3, 0, 5
    assert stats["n"] == 4 and stats["bias"] == pytest.approx(1.0) and stats["mae"] == pytest.approx(2.5)
    sd = np.std(differences, ddof=1)
    assert stats["loa_low"] == pytest.approx(1.0 - 1.96 * sd) and stats["loa_high"] == pytest.approx(1.0 + 1.96 * sd)
    assert stats["pearson_r"] == pytest.approx(np.corrcoef(measured, reference)[0, 1])
    assert agreement_statistics([1.0, np.nan], [1.0, 2.0])["n"] == 1


def test_ef_writes_csv_report_and_plots(tmp_path):
    for patient in SHAPES:
        _write_patient(tmp_path / "ref", patient)
        _write_patient(tmp_path / "pred", patient, scale=0.97)  # a systematically small "prediction"
    report = ef(tmp_path / "out", tmp_path / "pred", tmp_path / "ref")
    table = pd.read_csv(tmp_path / "out" / "ef.csv")
    assert {"patient", "edv", "esv", "ef", "edv_ref", "esv_ref", "ef_ref", "method", "volume_unit"} <= set(table)
    assert (table["edv"] < table["edv_ref"]).all() and report["agreement"]["EDV"]["bias"] < 0
    assert report["agreement"]["EF"]["mae"] < 1.0  # uniform scaling keeps the EF
    for name in ("agreement.json", "agreement.md", "bland_altman_ef.png", "scatter_ef.png", "bland_altman_esv.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    with pytest.raises(FileExistsError):
        ef(tmp_path / "out", tmp_path / "pred", tmp_path / "ref")


def test_predictions_on_another_grid_than_the_reference_are_an_error(tmp_path):
    """Volumes in pixel units of masks on different grids cannot be compared (in mL they can)."""
    _write_patient(tmp_path / "ref", "patient0001", spacing=(1.0, 1.0))
    _write_patient(tmp_path / "pred", "patient0001", spacing=(1.0, 1.0), scale=1.5)  # 1.5x the pixels
    with pytest.raises(InputError, match="shape mismatch: prediction .*patient0001"):
        ef(tmp_path / "out", tmp_path / "pred", tmp_path / "ref", units="px")
    assert ef(tmp_path / "out", tmp_path / "pred", tmp_path / "ref", units="mm")["measured"]["n"] == 1


def test_cli_ef(tmp_path, capsys):
    _write_patient(tmp_path / "pred", "patient0001")
    assert main(["ef", "--pred", str(tmp_path / "pred"), "-o", str(tmp_path / "out")]) == 0
    assert "1 patients measured (mL)" in capsys.readouterr().out
    assert main(["ef", "--pred", str(tmp_path / "pred"), "-o", str(tmp_path / "out")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["ef", "--pred", str(tmp_path / "missing"), "-o", str(tmp_path / "out2")]) == 2


def test_expert_masks_give_plausible_ef(camus_root):
    folder = camus_root / "database_nifti"
    patients = sorted(p.name for p in folder.iterdir() if p.is_dir())[:6]
    table = pd.concat([ef_table(folder / patient) for patient in patients])
    assert set(table["volume_unit"]) == {"px^3"} and set(table["method"]) == {"biplane"}
    assert (table["esv"] < table["edv"]).all()
    assert table["ef"].between(10, 90).all()


def test_camus_exact_uses_the_ed_length_for_es_and_lowers_ef(tmp_path):
    _write_patient(tmp_path / "masks", "patient0001")
    default = ef_table(tmp_path / "masks").iloc[0]
    camus = ef_table(tmp_path / "masks", camus_exact=True).iloc[0]
    assert camus["method"] == "biplane_camus"
    assert camus["edv"] / default["edv"] == pytest.approx(1.035, abs=0.015)  # basal-end diameters
    (a_ed, _, _), (a_es, _, _) = SHAPES["patient0001"]
    assert camus["esv"] / default["esv"] == pytest.approx(1.035 * a_ed / a_es, rel=0.02)  # ED disk height for ES
    assert camus["ef"] < default["ef"] - 5


def test_phantom_expert_masks_recover_the_analytic_info_values(tmp_path):
    from nnunet_lightweight.conversion import phantom

    folder = phantom.generate_phantom(tmp_path / "phantom", n_patients=3, size=160, progress=False)
    table = ef_table(None, folder / "database_nifti")
    assert set(table["ref_source"]) == {"info"} and set(table["volume_unit"]) == {"mL"}
    stats = agreement(table)
    assert stats["EF"]["n"] == 3 and stats["EF"]["mae"] < 1.5
    assert stats["EDV"]["n"] == 3 and abs(stats["EDV"]["bias"]) < 0.03 * table["edv_ref"].mean()
    without_info = tmp_path / "masks_only"
    without_info.mkdir()
    for mask in (folder / "database_nifti" / "patient0001").glob("*_gt.nii.gz"):
        (without_info / mask.name).symlink_to(mask)
    assert ef_table(without_info).iloc[0]["volume_unit"] == "px^3"  # 1 x 1 mm pixels, but nothing says so
