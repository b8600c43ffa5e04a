"""CAMUS and generic conversion: every layout, metadata, splits, resizing, and every kind of bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from nnunet_lightweight.cli import main
from nnunet_lightweight.conversion.camus import convert_camus, parse_info_file
from nnunet_lightweight.conversion.dataset import resize_frame
from nnunet_lightweight.conversion.generic import convert_generic, parse_label_map
from nnunet_lightweight.conversion.overlay import is_dataset_overlay, save_dataset_overlays
from nnunet_lightweight.conversion.splits import holdout_split, install_splits, patient_folds
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import read_frame
from nnunet_lightweight.core.labels import CASE_ID_PATTERN
from nnunet_lightweight.core.metadata import read_dataset_metadata

VIEWS, PHASES = ("2CH", "4CH"), ("ED", "ES")
INFO = "ED: 1\nES: 4\nNbFrame: 5\nSex: M\nAge: 61\nImageQuality: Medium\nLVedv: 100.5\nLVesv: 45.25\nLVef: 55\n"


def synthetic_frame(rng: np.random.Generator, shape=(40, 32)) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 image and a CAMUS-like label map (MYO around LV, LA below)."""
    rows, cols = shape
    label = np.zeros(shape, np.uint8)
    label[rows // 8 : rows // 2, cols // 4 : 3 * cols // 4] = 2
    label[rows // 8 + 2 : rows // 2, cols // 4 + 2 : 3 * cols // 4 - 2] = 1
    label[rows // 2 : 3 * rows // 4, cols // 3 : 2 * cols // 3] = 3
    image = (rng.integers(0, 60, shape) + 120 * (label == 2) + 50 * (label == 0)).astype(np.uint8)
    return image, label


def write_image(array: np.ndarray, path: Path, spacing=(0.3, 0.3), singleton: bool = False) -> None:
    """Write (rows, cols) or (frames, rows, cols) with (row, col) spacing; `singleton` adds a z axis like legacy."""
    data = array[None] if singleton else array
    image = sitk.GetImageFromArray(data)
    image.SetSpacing(tuple(reversed(spacing)) + ((1.0,) if data.ndim == 3 else ()))
    sitk.WriteImage(image, str(path))


def make_camus(
    root: Path,
    layout: str = "nifti",
    n_patients: int = 6,
    shape=(40, 32),
    spacing=(0.3, 0.3),
    info: bool = True,
    sequences: bool = False,
    groups: dict | None = None,
    unlabelled: tuple = (),
) -> Path:
    """A small CAMUS download: `nifti` (database_nifti/) or `legacy` (training/ + testing/ with .mhd/.raw)."""
    rng = np.random.default_rng(0)
    suffix = ".nii.gz" if layout == "nifti" else ".mhd"
    for index in range(1, n_patients + 1):
        patient = f"patient{index:04d}"
        parent = "database_nifti" if layout == "nifti" else ("testing" if patient in unlabelled else "training")
        folder = root / parent / patient
        folder.mkdir(parents=True)
        for view in VIEWS:
            if info:
                (folder / f"Info_{view}.cfg").write_text(INFO)
            for phase in PHASES:
                image, label = synthetic_frame(rng, shape)
                write_image(image, folder / f"{patient}_{view}_{phase}{suffix}", spacing, layout == "legacy")
                if patient not in unlabelled:
                    write_image(label, folder / f"{patient}_{view}_{phase}_gt{suffix}", spacing, layout == "legacy")
            if sequences:
                frames = [synthetic_frame(rng, shape) for _ in range(5)]
                stem = f"{patient}_{view}_half_sequence" if layout == "nifti" else f"{patient}_{view}_sequence"
                write_image(np.stack([f[0] for f in frames]), folder / f"{stem}{suffix}", spacing)
                write_image(np.stack([f[1] for f in frames]), folder / f"{stem}_gt{suffix}", spacing)
    if groups:
        (root / "database_split").mkdir()
        for group, members in groups.items():
            (root / "database_split" / f"subgroup_{group}.txt").write_text("".join(f"{m}\n" for m in members))
    return root


def convert(source, raw, **kwargs):
    kwargs.setdefault("verify", False)
    return convert_camus(source, 500, raw_dir=raw, progress=False, **kwargs)


def assert_nothing_written(raw: Path) -> None:
    assert list(raw.iterdir()) == [], f"partial output left behind: {list(raw.iterdir())}"


# ------------------------------------------------------------------------------------------------------------
# Layouts
# ------------------------------------------------------------------------------------------------------------


def test_nifti_release_with_info_subgroups_and_sequences(tmp_path, nnunet_dirs):
    groups = {
        "training": [f"patient{i:04d}" for i in range(1, 6)],
        "validation": ["patient0006"],
        "testing": ["patient0007"],
    }
    source = make_camus(tmp_path / "CAMUS_public", n_patients=7, sequences=True, groups=groups)
    raw = nnunet_dirs["nnUNet_raw"]
    out = convert_camus(source, 500, export_sequences=True, verify=True, num_processes=1, progress=False)

    assert out == raw / "Dataset500_CAMUS"
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "LV": 1, "MYO": 2, "LA": 3}
    assert dataset["channel_names"] == {"0": "echo"} and dataset["numTraining"] == 24
    train_images = sorted(p.name for p in (out / "imagesTr").iterdir())
    assert len(train_images) == 24 and len(list((out / "labelsTr").iterdir())) == 24
    assert all(CASE_ID_PATTERN.match(name.removesuffix("_0000.nii.gz")) for name in train_images)
    # the official testing subgroup never enters training, with the default cv5 split too
    assert sorted(p.name for p in (out / "labelsTs").iterdir()) == [
        f"patient0007_{v}_{p}.nii.gz" for v in VIEWS for p in PHASES
    ]
    metadata = read_dataset_metadata(out)
    patient = metadata["patients"]["patient0001"]
    assert patient["spacing_is_physical"] and patient["official_subgroup"] == "training"
    assert patient["views"]["4CH"]["info"] == {
        "ED": 1,
        "ES": 4,
        "NbFrame": 5,
        "Sex": "M",
        "Age": 61,
        "ImageQuality": "Medium",
        "LVedv": 100.5,
        "LVesv": 45.25,
        "LVef": 55,
    }
    assert patient["views"]["2CH"]["source_spacing_mm"] == pytest.approx([0.3, 0.3])
    assert metadata["cases"]["patient0001_2CH_ES"]["frame"] == 4
    sequence = metadata["sequences"]["patient0003_4CH"]
    assert sequence["n_frames"] == 5 and sequence["ES"] == 4 and sequence["has_labels"]
    assert len(list((out / "sequences" / "images").iterdir())) == 7 * 2 * 5
    frame, spacing = read_frame(out / "sequences" / "images" / f"{sequence['frames'][2]}_0000.nii.gz")
    assert frame.shape == (40, 32) and spacing == pytest.approx((0.3, 0.3))


def test_nifti_official_split_uses_the_subgroups(tmp_path, nnunet_dirs):
    groups = {"training": [f"patient{i:04d}" for i in range(1, 5)], "validation": ["patient0005", "patient0006"]}
    source = make_camus(tmp_path / "src", groups=groups)
    out = convert(source, None, split="official")
    splits = json.loads((out / "splits_final.json").read_text())
    assert len(splits) == 1
    assert {c.split("_")[0] for c in splits[0]["val"]} == {"patient0005", "patient0006"}
    assert len(splits[0]["train"]) == 16
    # SOURCE may also be the database_nifti folder itself; the subgroups are then found beside it
    again = convert_camus(source / "database_nifti", 501, split="official", verify=False, progress=False)
    assert json.loads((again / "splits_final.json").read_text()) == splits


def test_official_split_rejects_patients_listed_but_missing(tmp_path, nnunet_dirs):
    groups = {"training": ["patient0001", "patient0002", "patient0009"], "validation": ["patient0003"]}
    source = make_camus(tmp_path / "src", n_patients=3, groups=groups)
    with pytest.raises(InputError, match="subgroup_training.txt.*patient0009"):
        convert(source, None, split="official")
    assert_nothing_written(nnunet_dirs["nnUNet_raw"])


def test_legacy_mhd_release_keeps_spacing_and_puts_testing_into_imagests(tmp_path, nnunet_dirs):
    source = make_camus(
        tmp_path / "camus",
        layout="legacy",
        n_patients=6,
        spacing=(0.2, 0.3),
        sequences=True,
        unlabelled=("patient0006",),
    )
    out = convert(source, None, export_sequences=True)
    assert len(list((out / "imagesTr").iterdir())) == 20
    assert sorted(p.name for p in (out / "imagesTs").iterdir())[0] == "patient0006_2CH_ED_0000.nii.gz"
    assert not (out / "labelsTs").exists()
    image = sitk.ReadImage(str(out / "imagesTr" / "patient0001_4CH_ES_0000.nii.gz"))
    assert image.GetDimension() == 2 and image.GetSpacing() == pytest.approx((0.3, 0.2))
    metadata = read_dataset_metadata(out)
    assert metadata["layout"] == "legacy"
    assert metadata["patients"]["patient0006"]["subset"] == "unlabelled"
    assert metadata["patients"]["patient0002"]["views"]["2CH"]["info"]["LVesv"] == 45.25
    assert metadata["sequences"]["patient0006_2CH"]["has_labels"] is False
    assert len(list((out / "sequences" / "labels").iterdir())) == 5 * 2 * 5


def test_shared_copy_layout_records_pixel_units(tmp_path, nnunet_dirs):
    source = make_camus(tmp_path / "copy", spacing=(1.0, 1.0), info=False)
    metadata = read_dataset_metadata(convert(source, None))
    assert not any(p["spacing_is_physical"] for p in metadata["patients"].values())
    assert metadata["patients"]["patient0001"]["views"]["2CH"]["info"] is None


def test_real_camus_patients_convert(tmp_path, nnunet_dirs, camus_root):
    """Three real patients of the 224x224 copy, linked into a NIfTI-layout folder."""
    (tmp_path / "src" / "database_nifti").mkdir(parents=True)
    for patient in ("patient0001", "patient0002", "patient0003", "patient0004", "patient0005"):
        (tmp_path / "src" / "database_nifti" / patient).symlink_to(camus_root / "database_nifti" / patient)
    out = convert(tmp_path / "src", None, resize=256)
    metadata = read_dataset_metadata(out)
    assert not metadata["patients"]["patient0001"]["spacing_is_physical"]
    label_path = out / "labelsTr" / "patient0002_4CH_ED.nii.gz"
    label, spacing = read_frame(label_path)
    assert label.shape == (256, 256) and spacing == pytest.approx((224 / 256, 224 / 256))
    assert set(np.unique(label)) == {0, 1, 2, 3}
    png = save_dataset_overlays(out, ["patient0001_2CH_ED", "patient0001_4CH_ES"], tmp_path / "overlay.png")
    assert png.stat().st_size > 10_000 and not list(tmp_path.glob(".overlay.png.partial-*"))
    assert is_dataset_overlay(png)  # so that --overwrite may replace it
    Image.new("L", (8, 8)).save(tmp_path / "figure.png")
    assert not is_dataset_overlay(tmp_path / "figure.png") and not is_dataset_overlay(label_path)


# ------------------------------------------------------------------------------------------------------------
# Metadata, splits, resizing
# ------------------------------------------------------------------------------------------------------------


def test_parse_info_file_types_and_errors(tmp_path):
    path = tmp_path / "Info_2CH.cfg"
    path.write_text("ED: 1\nES: 15\n\nNbFrame: 15\nSex: F\nAge: 47\nImageQuality: Good\nEF: 38.33\n")
    assert parse_info_file(path) == {
        "ED": 1,
        "ES": 15,
        "NbFrame": 15,
        "Sex": "F",
        "Age": 47,
        "ImageQuality": "Good",
        "EF": 38.33,
    }
    path.write_text("ED: 1\nthis is not a key value line\n")
    with pytest.raises(InputError, match="Info_2CH.cfg, line 2"):
        parse_info_file(path)
    path.write_text("ED: first\n")
    with pytest.raises(InputError, match="ED must be an integer"):
        parse_info_file(path)


def test_patient_folds_are_disjoint_balanced_and_seeded():
    patients = [f"patient{i:04d}" for i in range(1, 451)]
    folds = patient_folds(patients, 5, seed=1)
    assert sorted(p for fold in folds for p in fold) == patients
    assert {len(fold) for fold in folds} == {90}
    assert patient_folds(patients, 5, seed=1) == folds and patient_folds(patients, 5, seed=2) != folds
    uneven = patient_folds(patients[:23], 5)
    assert sorted(len(f) for f in uneven) == [4, 4, 5, 5, 5]
    split = holdout_split(patients)
    assert [len(split[k]) for k in ("train", "val", "test")] == [360, 45, 45]
    assert not set(split["train"]) & set(split["val"]) and not set(split["val"]) & set(split["test"])
    with pytest.raises(InputError, match="at least 5 patients"):
        patient_folds(patients[:4], 5)


def test_splits_file_keeps_every_patient_in_one_fold_and_installs(tmp_path, nnunet_dirs):
    out = convert(make_camus(tmp_path / "src", n_patients=12), None)
    splits = json.loads((out / "splits_final.json").read_text())
    assert len(splits) == 5
    val_patients = [{case.split("_")[0] for case in fold["val"]} for fold in splits]
    assert sum(len(v) for v in val_patients) == 12 and set.union(*val_patients) == {
        f"patient{i:04d}" for i in range(1, 13)
    }
    for fold, patients in zip(splits, val_patients):
        assert len(fold["val"]) == 4 * len(patients)
        assert not {case.split("_")[0] for case in fold["train"]} & patients
    installed = install_splits(500)
    assert installed == nnunet_dirs["nnUNet_preprocessed"] / "Dataset500_CAMUS" / "splits_final.json"
    assert json.loads(installed.read_text()) == splits


def test_paper_split_moves_test_patients_to_imagests(tmp_path, nnunet_dirs):
    out = convert(make_camus(tmp_path / "src", n_patients=20), None, split="paper")
    metadata = read_dataset_metadata(out)
    test = sorted(p for p, m in metadata["patients"].items() if m["subset"] == "test")
    assert len(test) == 2 and len(list((out / "labelsTs").iterdir())) == 8
    (fold,) = json.loads((out / "splits_final.json").read_text())
    assert len(fold["train"]) == 16 * 4 and len(fold["val"]) == 2 * 4
    assert not {c.split("_")[0] for c in fold["train"] + fold["val"]} & set(test)


def test_resize_keeps_the_physical_extent_and_label_values():
    rng = np.random.default_rng(1)
    image, label = synthetic_frame(rng, (60, 44))
    spacing = (0.25, 0.4)
    for interpolation in ("linear", "cubic"):
        resized, new_spacing = resize_frame(image, spacing, (256, 256), is_label=False, interpolation=interpolation)
        assert resized.dtype == np.uint8 and resized.shape == (256, 256)
        assert np.array(new_spacing) * 256 == pytest.approx(np.array(spacing) * np.array(image.shape))
    resized_label, _ = resize_frame(label, spacing, (256, 256), is_label=True)
    assert set(np.unique(resized_label)) == set(np.unique(label))
    for value in (1, 2, 3):  # areas in mm^2 agree up to boundary pixels
        before = (label == value).sum() * spacing[0] * spacing[1]
        after = (resized_label == value).sum() * new_spacing[0] * new_spacing[1]
        assert after == pytest.approx(before, rel=0.03)


def test_converted_resize_writes_scaled_spacing(tmp_path, nnunet_dirs):
    source = make_camus(tmp_path / "src", n_patients=5, shape=(50, 40), spacing=(0.3, 0.2))
    out = convert(source, None, resize=(64, 64), interpolation="cubic")
    image = sitk.ReadImage(str(out / "imagesTr" / "patient0001_2CH_ED_0000.nii.gz"))
    assert image.GetSize() == (64, 64)
    assert np.array(image.GetSpacing()) * 64 == pytest.approx([40 * 0.2, 50 * 0.3])
    assert read_dataset_metadata(out)["patients"]["patient0001"]["views"]["2CH"]["source_shape"] == [50, 40]


# ------------------------------------------------------------------------------------------------------------
# Bad input: an InputError naming the file, and nothing written
# ------------------------------------------------------------------------------------------------------------


def _break_missing_label(folder):
    (folder / "patient0002" / "patient0002_4CH_ES_gt.nii.gz").unlink()
    return "patient0002_4CH_ES_gt"


def _break_label_values(folder):
    path = folder / "patient0003" / "patient0003_2CH_ED_gt.nii.gz"
    label, _ = read_frame(path)
    label[0, 0] = 7
    write_image(label, path)
    return "patient0003_2CH_ED_gt.nii.gz.*unexpected label values \\[7\\]"


def _break_shape(folder):
    write_image(np.zeros((40, 30), np.uint8), folder / "patient0001" / "patient0001_4CH_ED_gt.nii.gz")
    return "shape mismatch.*patient0001_4CH_ED_gt.nii.gz"


def _break_truncated(folder):
    path = folder / "patient0004" / "patient0004_2CH_ES.nii.gz"
    path.write_bytes(path.read_bytes()[:200])
    return "patient0004_2CH_ES.nii.gz.*truncated"


def _break_3d(folder):
    write_image(np.zeros((3, 40, 32), np.uint8), folder / "patient0005" / "patient0005_2CH_ED.nii.gz")
    return "patient0005_2CH_ED.nii.gz is not a 2D frame"


def _break_missing_image(folder):
    (folder / "patient0001" / "patient0001_2CH_ED.nii.gz").unlink()
    return "missing image file.*patient0001_2CH_ED"


def _break_info(folder):
    (folder / "patient0002" / "Info_4CH.cfg").write_text("ED 1\n")
    return "Info_4CH.cfg, line 1"


@pytest.mark.parametrize(
    "breaker",
    [
        _break_missing_label,
        _break_label_values,
        _break_shape,
        _break_truncated,
        _break_3d,
        _break_missing_image,
        _break_info,
    ],
)
def test_bad_input_is_rejected_without_partial_output(tmp_path, nnunet_dirs, breaker):
    source = make_camus(tmp_path / "src")
    message = breaker(source / "database_nifti")
    with pytest.raises(InputError, match=message):
        convert(source, None)
    assert_nothing_written(nnunet_dirs["nnUNet_raw"])


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_slightly_truncated_nifti_is_detected(tmp_path, suffix):
    """ITK reads such files silently with zeros for the missing pixels."""
    path = tmp_path / f"frame{suffix}"
    write_image(np.full((40, 32), 7, np.uint8), path)
    assert read_frame(path)[0].min() == 7
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match=f"frame{suffix}.*truncated"):
        read_frame(path)


def test_truncated_raw_of_legacy_mhd(tmp_path, nnunet_dirs):
    source = make_camus(tmp_path / "src", layout="legacy", n_patients=5)
    raw_file = source / "training" / "patient0003" / "patient0003_2CH_ED_gt.raw"
    raw_file.write_bytes(raw_file.read_bytes()[:100])
    with pytest.raises(InputError, match="patient0003_2CH_ED_gt.mhd"):
        convert(source, None)
    assert_nothing_written(nnunet_dirs["nnUNet_raw"])


def test_duplicate_patient_and_empty_folder(tmp_path, nnunet_dirs):
    source = make_camus(tmp_path / "src", layout="legacy", n_patients=5)
    shutil.copytree(source / "training" / "patient0002", source / "testing" / "patient0002")
    with pytest.raises(InputError, match="duplicate patient patient0002"):
        convert(source, None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no CAMUS patients found"):
        convert(tmp_path / "empty", None)
    assert_nothing_written(nnunet_dirs["nnUNet_raw"])


def test_existing_dataset_needs_overwrite(tmp_path, nnunet_dirs):
    source = make_camus(tmp_path / "src", n_patients=6)
    out = convert(source, None)
    marker = out / "imagesTr" / "patient0001_2CH_ED_0000.nii.gz"
    before = marker.stat().st_mtime_ns
    with pytest.raises(InputError, match="Dataset500_CAMUS.*--overwrite"):
        convert(source, None)
    assert marker.stat().st_mtime_ns == before
    (source / "database_nifti" / "patient0006" / "patient0006_2CH_ED_gt.nii.gz").unlink()
    with pytest.raises(InputError, match="missing label"):
        convert(source, None, overwrite=True)
    assert marker.stat().st_mtime_ns == before  # a failed overwrite keeps the old dataset
    shutil.rmtree(source / "database_nifti" / "patient0006")
    convert(source, None, resize=64, overwrite=True)
    assert read_frame(marker)[0].shape == (64, 64)
    assert sorted(p.name for p in nnunet_dirs["nnUNet_raw"].iterdir()) == ["Dataset500_CAMUS"]
    with pytest.raises(InputError, match="already used by"):
        convert_camus(source, 500, name="Other", verify=False, progress=False)


def test_cli_reports_errors_and_succeeds(tmp_path, nnunet_dirs, capsys):
    assert main(["convert-camus", str(tmp_path / "missing"), "-d", "500"]) == 2
    assert "CAMUS source folder not found" in capsys.readouterr().err
    source = make_camus(tmp_path / "src", n_patients=5)
    assert (
        main(
            [
                "convert-camus",
                str(source),
                "-d",
                "500",
                "--resize",
                "48",
                "--no-verify",
                "--split",
                "cv5",
                "--overlay",
                str(tmp_path / "o.png"),
            ]
        )
        == 0
    )
    output = capsys.readouterr().out
    assert "20 frames of    5 patients" in output and (tmp_path / "o.png").is_file()


# ------------------------------------------------------------------------------------------------------------
# Generic input (HUNT4-style)
# ------------------------------------------------------------------------------------------------------------


def make_generic(root: Path, n_patients: int = 5, label_values=(0, 60, 120, 180)) -> Path:
    """PNG frames and labels (LV/MYO/LA stored as 60/120/180) with a CSV; the last patient is a test patient."""
    rng = np.random.default_rng(2)
    (root / "img").mkdir(parents=True)
    (root / "lab").mkdir()
    rows = ["patient,view,phase,image,label,spacing,subset"]
    for index in range(n_patients):
        patient = f"hunt{index:03d}"
        for view in ("A2C", "A4C"):
            for phase in ("ED", "es"):
                image, label = synthetic_frame(rng, (36, 36))
                stored = np.asarray(label_values, np.uint8)[label]
                sitk.WriteImage(sitk.GetImageFromArray(image), str(root / "img" / f"{patient}_{view}_{phase}.png"))
                sitk.WriteImage(sitk.GetImageFromArray(stored), str(root / "lab" / f"{patient}_{view}_{phase}.png"))
                subset = "test" if index == n_patients - 1 else ""
                rows.append(
                    f"{patient},{view},{phase},img/{patient}_{view}_{phase}.png,"
                    f"lab/{patient}_{view}_{phase}.png,0.25x0.5,{subset}"
                )
    (root / "frames.csv").write_text("\n".join(rows) + "\n")
    return root / "frames.csv"


def test_generic_csv_with_label_map(tmp_path, nnunet_dirs):
    csv_path = make_generic(tmp_path / "hunt", n_patients=6)
    out = convert_generic(
        csv_path, 501, "HUNT4", label_map="0=background,60=LV,120=MYO,180=LA", verify=False, progress=False
    )
    assert out.name == "Dataset501_HUNT4"
    assert len(list((out / "imagesTr").iterdir())) == 20 and len(list((out / "labelsTs").iterdir())) == 4
    label, spacing = read_frame(out / "labelsTr" / "hunt000_4CH_ES.nii.gz")
    assert set(np.unique(label)) == {0, 1, 2, 3} and spacing == pytest.approx((0.25, 0.5))
    metadata = read_dataset_metadata(out)
    assert metadata["patients"]["hunt000"]["spacing_is_physical"]
    assert metadata["patients"]["hunt005"]["subset"] == "test"
    assert parse_label_map("0=0,255=LV") == {0: 0, 255: 1}


def test_generic_bad_input(tmp_path, nnunet_dirs):
    csv_path = make_generic(tmp_path / "hunt", n_patients=6)
    with pytest.raises(InputError, match="hunt000_A2C_ED.png has unexpected label values \\[60, 120, 180\\]"):
        convert_generic(csv_path, 501, "HUNT4", verify=False, progress=False)
    text = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(text + [text[1]]) + "\n")
    with pytest.raises(InputError, match="duplicate patient frame hunt000_2CH_ED"):
        convert_generic(csv_path, 501, "HUNT4", label_map="0=0,60=1,120=2,180=3", verify=False, progress=False)
    csv_path.write_text("\n".join(text[:1] + [text[1].replace("img/hunt000_A2C_ED", "img/nope")]) + "\n")
    with pytest.raises(InputError, match="line 2: missing file.*nope.png"):
        convert_generic(csv_path, 501, "HUNT4", verify=False, progress=False)
    csv_path.write_text("\n".join(text[:1] + ["", ""] + [text[1].replace("img/hunt000_A2C_ED", "img/nope")]) + "\n")
    with pytest.raises(InputError, match="line 4: missing file.*nope.png"):  # blank lines counted
        convert_generic(csv_path, 501, "HUNT4", verify=False, progress=False)
    csv_path.write_text("patient,view,image\nx,2CH,a.png\n")
    with pytest.raises(InputError, match="lacks the column"):
        convert_generic(csv_path, 501, "HUNT4", verify=False, progress=False)
    with pytest.raises(InputError, match="label map target 'RV'"):
        parse_label_map("1=RV")
    assert_nothing_written(nnunet_dirs["nnUNet_raw"])


def test_an_image_given_as_its_label_is_named_in_one_short_line(tmp_path):
    from nnunet_lightweight.core.labels import map_labels

    image = np.arange(256, dtype=np.int64).reshape(16, 16)
    with pytest.raises(InputError, match=r"frame.nii.gz has unexpected label values \[4, 5, .*, 13\] and 242 more;"):
        map_labels(image, {0: 0, 1: 1, 2: 2, 3: 3}, tmp_path / "frame.nii.gz")
