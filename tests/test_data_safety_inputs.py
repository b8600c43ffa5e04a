"""Data safety (issue 14) of inputs: stale plans, truncated or NaN images and videos, bad numbers, tiny datasets.

Rows of the tables run in-process through `lightecho`'s `main(argv)` with the `run_safety_case` fixture
(tests/conftest.py). The `plan` rows replace nnU-Net's fingerprint, planner and preprocessor with fakes that write
what they would (the real ones take minutes on 2 CPU cores and run in the training fixtures): what they check is
what `lightecho plan` decides to redo, to keep or to refuse.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from clinical_shapes import section_mask, write_mask
from safety_cases import SafetyCase

from nnunet_lightweight.core.image_io import write_frame

# --- input builders (tiny: 32x32 frames) ---------------------------------------------------------------------------


def _label_map(seed: int = 0) -> np.ndarray:
    """A 32x32 map of labels 0-3 in noise: its gzip stream cannot be cut anywhere ITK would notice."""
    return np.random.default_rng(seed).integers(0, 4, (32, 32)).astype(np.uint8)


def _cut(path: Path, fraction: float) -> None:
    """Keep only the first `fraction` of the file's bytes (an interrupted copy or download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _truncated_prediction(tmp: Path) -> None:
    (tmp / "pred").mkdir()
    write_frame(_label_map(), (1.0, 1.0), tmp / "pred" / "patient0001_2CH_ED.nii.gz")
    _cut(tmp / "pred" / "patient0001_2CH_ED.nii.gz", 0.5)


def _nan_prediction_and_reference(tmp: Path) -> None:
    for folder in ("pred", "ref"):
        (tmp / folder).mkdir()
        write_frame(_label_map(), (1.0, 1.0), tmp / folder / "patient0001_2CH_ED.nii.gz")
    mask = _label_map().astype(np.float32)
    mask[3, 4] = np.nan
    write_frame(mask, (1.0, 1.0), tmp / "pred" / "patient0001_2CH_ED.nii.gz")


def _nan_masks(tmp: Path) -> None:
    """One patient's ED/ES masks of both views for `ef`, one of them holding a NaN."""
    (tmp / "masks").mkdir()
    mask = section_mask(60, 20, 0, (2.0, 2.0), labels=True)
    for view in ("2CH", "4CH"):
        for phase in ("ED", "ES"):
            write_mask(tmp / "masks" / f"patient0001_{view}_{phase}.nii.gz", mask, (2.0, 2.0))
    broken = mask.astype(np.float32)
    broken[0, 0] = np.nan
    write_frame(broken, (2.0, 2.0), tmp / "masks" / "patient0001_4CH_ES.nii.gz")


def _nan_sequence(tmp: Path) -> None:
    frames = np.zeros((3, 32, 32), np.float32)
    frames[:, 8:24, 12:20] = 1
    frames[1, 0, 0] = np.inf
    (tmp / "loops").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(frames), str(tmp / "loops" / "loop.nii.gz"))


def write_video(path: Path, n_frames: int) -> None:
    """An MPEG-4 AVI of smooth 32x32 grey frames (imageio/PyAV), as an echo machine exports a loop."""
    import imageio.v3 as iio

    cols = np.arange(32)[None, :]
    frames = np.stack(
        [np.repeat(((np.sin((cols + 3 * t) / 5) + 1) * 120).astype(np.uint8), 32, axis=0) for t in range(n_frames)]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.repeat(frames[..., None], 3, axis=-1), plugin="pyav", codec="mpeg4", fps=25)


def _truncated_video(tmp: Path) -> None:
    write_video(tmp / "loops" / "loop.avi", 30)
    _cut(tmp / "loops" / "loop.avi", 1 / 3)


def _frames_csv(tmp: Path, n_patients: int = 5, spacing: str = "", bom: bool = False) -> None:
    """`n_patients` labelled 2CH ED frames listed in tmp/src/frames.csv (optionally with a spacing column, or
    saved by a spreadsheet with a UTF-8 byte order mark)."""
    source = tmp / "src"
    source.mkdir()
    rows = ["patient,view,phase,image,label" + (",spacing" if spacing else "")]
    image = (np.arange(32 * 32).reshape(32, 32) % 200).astype(np.uint8)
    for index in range(1, n_patients + 1):
        patient = f"p{index:03d}"
        write_frame(image, (1.0, 1.0), source / f"{patient}.nii.gz")
        write_frame(_label_map(index), (1.0, 1.0), source / f"{patient}_gt.nii.gz")
        rows.append(f"{patient},2CH,ED,{patient}.nii.gz,{patient}_gt.nii.gz" + (f",{spacing}" if spacing else ""))
    (source / "frames.csv").write_bytes(("\ufeff" if bom else "").encode() + ("\n".join(rows) + "\n").encode())


def _label_map_json(text: str):
    def build(tmp: Path) -> None:
        _frames_csv(tmp)
        (tmp / "map.json").write_text(text)

    return build


def _ef_one_unmeasurable(tmp: Path) -> None:
    """Two patients; the second has no LV in one frame, so only the first can be measured."""
    (tmp / "masks").mkdir()
    for patient, half_width in (("patient0001", 20), ("patient0002", 18)):
        for view in ("2CH", "4CH"):
            for phase, scale in (("ED", 1.0), ("ES", 0.8)):
                mask = section_mask(60 * scale, half_width * scale, 0, (2.0, 2.0), labels=True)
                if patient == "patient0002" and (view, phase) == ("4CH", "ES"):
                    mask[mask == 1] = 0
                write_mask(tmp / "masks" / f"{patient}_{view}_{phase}.nii.gz", mask, (2.0, 2.0))


def _phantom(n_patients: int):
    def build(tmp: Path) -> None:
        from nnunet_lightweight.conversion.phantom import generate_phantom

        generate_phantom(tmp / "ph", n_patients=n_patients, size=32, progress=False)

    return build


def _nothing(tmp: Path) -> None:
    return None


GENERIC = ("convert-generic", "{tmp}/src/frames.csv", "-d", "11", "--raw", "{tmp}/raw", "--no-verify")
CONVERT_ONE = ("convert-camus", "{tmp}/ph", "-d", "12", "--raw", "{tmp}/raw", "--no-verify")

CASES = [
    # item 3: truncated files and NaN/Inf pixels are an error naming the file, never a silently wrong result
    SafetyCase(
        "postprocess of a .nii.gz cut in half",
        _truncated_prediction,
        ("postprocess", "-i", "{tmp}/pred", "-o", "{tmp}/out"),
        2,
        "pred/patient0001_2CH_ED.nii.gz (unreadable or truncated file)",
        ("pred",),
    ),
    SafetyCase(
        "evaluate of a prediction with NaN",
        _nan_prediction_and_reference,
        ("evaluate", "--pred", "{tmp}/pred", "--ref", "{tmp}/ref", "-o", "{tmp}/out"),
        2,
        "pred/patient0001_2CH_ED.nii.gz has 1 NaN or infinite pixel value(s)",
        ("pred", "ref"),
    ),
    SafetyCase(
        "ef of a mask with NaN",
        _nan_masks,
        ("ef", "--ref", "{tmp}/masks", "-o", "{tmp}/out"),
        2,
        "patient0001_4CH_ES.nii.gz has 1 NaN or infinite",
        ("masks",),
    ),
    SafetyCase(
        "cine of a sequence with inf",
        _nan_sequence,
        ("cine", "--2ch", "{tmp}/loops/loop.nii.gz", "-o", "{tmp}/out"),
        2,
        "loop.nii.gz has 1 NaN or infinite",
        ("loops",),
    ),
    SafetyCase(
        "cine of an AVI cut to a third",
        _truncated_video,
        ("cine", "--2ch", "{tmp}/loops/loop.avi", "-o", "{tmp}/out"),
        2,
        "loops/loop.avi (",
        ("loops",),
    ),
    # item 5: bad numbers are refused by the argument parser, naming the option
    SafetyCase(
        "compare --alpha 7",
        _nothing,
        ("compare", "--pred", "a={tmp}/a", "--ref", "{tmp}/r", "-o", "{tmp}/out", "--alpha", "7"),
        2,
        "argument --alpha: must be greater than 0 and at most 0.5, got 7",
    ),
    SafetyCase(
        "predict --batch-size 0",
        _nothing,
        ("predict", "-m", "{tmp}/m", "-i", "{tmp}/i", "-o", "{tmp}/o", "--batch-size", "0"),
        2,
        "argument --batch-size: must be at least 1",
    ),
    SafetyCase(
        "predict --threads 0",
        _nothing,
        ("predict", "-m", "{tmp}/m", "-i", "{tmp}/i", "-o", "{tmp}/o", "--threads", "0"),
        2,
        "argument --threads: must be at least 1",
    ),
    SafetyCase(
        "postprocess --radius 200",
        _nothing,
        ("postprocess", "-i", "{tmp}/p", "-o", "{tmp}/o", "--radius", "200"),
        2,
        "argument --radius: must be at least 1 and at most 50",
    ),
    SafetyCase(
        "export-onnx --opset 5",
        _nothing,
        ("export-onnx", "-m", "{tmp}/m", "-o", "{tmp}/m.onnx", "--opset", "5"),
        2,
        "argument --opset: must be at least 9",
    ),
    SafetyCase(
        "cine --spacing nan",
        _nothing,
        ("cine", "--2ch", "{tmp}/x.nii.gz", "-o", "{tmp}/o", "--spacing", "nan", "1"),
        2,
        "argument --spacing: 'nan' is not a finite number",
    ),
    SafetyCase(
        "convert -d 1000",
        _nothing,
        ("convert-camus", "{tmp}/ph", "-d", "1000"),
        2,
        "argument -d/--dataset-id: must be at least 1 and at most 999, got 1000",
    ),
    SafetyCase(
        "convert-generic spacing nan",
        lambda tmp: _frames_csv(tmp, spacing="nan"),
        GENERIC,
        2,
        "frames.csv, line 2: spacing 'nan' must be one or two positive numbers",
        ("src",),
    ),
    SafetyCase(
        "convert-generic spacing inf",
        lambda tmp: _frames_csv(tmp, spacing="0.3xinf"),
        GENERIC,
        2,
        "spacing '0.3xinf' must be one or two positive numbers",
        ("src",),
    ),
    SafetyCase(
        "convert-generic --label-map JSON with a repeated key",
        _label_map_json('{"1": "LV", "1": "LA"}'),
        (*GENERIC, "--label-map", "{tmp}/map.json"),
        2,
        "key(s) ['1'] appear more than once",
        ("src", "map.json"),
    ),
    SafetyCase(
        "convert-generic --label-map value mapped twice",
        _frames_csv,
        (*GENERIC, "--label-map", "0=background,1=LV,1=LA"),
        2,
        "source value 1 is mapped twice",
        ("src",),
    ),
    SafetyCase(
        "convert-generic CSV with a UTF-8 BOM",
        lambda tmp: _frames_csv(tmp, bom=True),
        GENERIC,
        0,
        "5 frames of    5 patients",
        ("src",),
    ),
    SafetyCase(
        "ef counts the measured patients",
        _ef_one_unmeasurable,
        ("ef", "--ref", "{tmp}/masks", "-o", "{tmp}/out", "--pixel-units"),
        0,
        "2/2 patients read, 1 measured",
        ("masks",),
    ),
    # item 8: a single patient is a valid test set; a split that needs more patients says how many
    SafetyCase(
        "convert one patient --split none",
        _phantom(1),
        (*CONVERT_ONE, "--split", "none"),
        0,
        "no training cases, every patient held out in imagesTs",
        ("ph",),
    ),
    SafetyCase(
        "convert one patient --split cv5",
        _phantom(1),
        CONVERT_ONE,
        2,
        "5-fold cross-validation needs at least 5 patients, got 1 labelled (--split none",
        ("ph",),
    ),
    SafetyCase(
        "convert three patients --split paper",
        _phantom(3),
        (*CONVERT_ONE, "--split", "paper"),
        2,
        "needs at least 6 patients, got 3 labelled",
        ("ph",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_input_case(case: SafetyCase, run_safety_case) -> None:
    run_safety_case(case)


def test_ef_output_counts_only_measured_patients(run_safety_case) -> None:
    output = run_safety_case(next(case for case in CASES if case.id == "ef counts the measured patients"))
    assert "1 patients measured" in output and "skipped patient0002" in output


def test_split_none_writes_every_case_to_images_ts(run_safety_case, tmp_path) -> None:
    run_safety_case(next(case for case in CASES if case.id == "convert one patient --split none"))
    dataset = tmp_path / "raw" / "Dataset012_CAMUS"
    assert len(list((dataset / "imagesTs").glob("*.nii.gz"))) == 4 == len(list((dataset / "labelsTs").iterdir()))
    assert not any((dataset / "imagesTr").iterdir())
    assert not (dataset / "splits_final.json").exists()
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 0


def test_every_numeric_option_is_range_checked() -> None:
    """Every int/float option of every subcommand (but `benchmark`, checked by its own module) has a bounded type."""
    import argparse

    from nnunet_lightweight.cli import build_parser

    unchecked = []

    def walk(parser: argparse.ArgumentParser, command: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, subparser in action.choices.items():
                    if name != "benchmark":
                        walk(subparser, f"{command} {name}".strip())
            elif action.type in (int, float):
                unchecked.append(f"{command} {action.option_strings or action.dest}")
            elif action.type is not None and getattr(action.type, "__name__", "") in ("int", "float"):
                assert hasattr(action.type, "bounds"), f"{command} {action.option_strings}"

    walk(build_parser(), "")
    assert not unchecked, f"numeric options without a range check: {unchecked}"


def test_onnx_opset_bounds_match_the_exporter() -> None:
    import torch.onnx._constants as constants

    from nnunet_lightweight.cli.export_onnx import ONNX_OPSETS
    from nnunet_lightweight.inference.onnx_export import MIN_OPSET

    assert ONNX_OPSETS == (MIN_OPSET, constants.ONNX_MAX_OPSET)


# --- videos and predict's reader -----------------------------------------------------------------------------------


def _reader_only_predictor():
    """A FastPredictor with nnU-Net's SimpleITK reader and no preprocessing (frames come out as read, each
    (channels, 1, rows, cols)): enough for `read_case` without a trained model."""
    from types import SimpleNamespace

    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from nnunet_lightweight.inference.fast_predictor import FastPredictor

    predictor = object.__new__(FastPredictor)
    predictor.reader_writer = SimpleITKIO()
    predictor.model = SimpleNamespace(plans_manager=SimpleNamespace(transpose_forward=[0, 1, 2]), num_input_channels=1)
    predictor.preprocess = lambda data, properties: data
    predictor.prepare = lambda stack, spacing, coloured=None: [stack[:, z : z + 1] for z in range(stack.shape[1])]
    return predictor


def test_video_reader_counts_decoded_frames(tmp_path) -> None:
    from nnunet_lightweight.core.errors import InputError
    from nnunet_lightweight.core.video_readers import read_loop

    write_video(tmp_path / "loop.avi", 30)
    sequence = read_loop(tmp_path / "loop.avi")
    assert sequence.frames.shape == (30, 32, 32) and sequence.frame_rate == 25
    assert sequence.frames.min() >= 0 and sequence.frames[:, 0, :].std() > 10  # real frames, none black
    _cut(tmp_path / "loop.avi", 1 / 3)
    with pytest.raises(InputError, match=r"loop\.avi \((unreadable|truncated)"):
        read_loop(tmp_path / "loop.avi")


def test_predict_reads_a_one_frame_video_and_refuses_truncated_images(tmp_path) -> None:
    from nnunet_lightweight.core.errors import InputError
    from nnunet_lightweight.core.video_readers import read_loop
    from nnunet_lightweight.inference.fast_predictor import CLIP_SPACING, Case

    write_video(tmp_path / "still.avi", 1)
    predictor = _reader_only_predictor()
    frames, properties = predictor.read_case(Case("still", [tmp_path / "still.avi"], video=True))
    assert len(frames) == 1 and frames[0].shape == (1, 1, 32, 32) and properties == {CLIP_SPACING: None}
    with pytest.raises(InputError, match="cine loop|at least 2"):
        read_loop(tmp_path / "still.avi")  # a cine loop still needs two frames

    image = (np.arange(32 * 32).reshape(32, 32) * 7 % 251).astype(np.float32)
    write_frame(image, (1.0, 1.0), tmp_path / "case_0000.nii.gz")
    frames, _ = predictor.read_case(Case("case", [tmp_path / "case_0000.nii.gz"]))
    np.testing.assert_array_equal(frames[0][0, 0], image)
    _cut(tmp_path / "case_0000.nii.gz", 0.5)
    with pytest.raises(InputError, match=r"case_0000\.nii\.gz \((unreadable or )?truncated"):
        predictor.read_case(Case("case", [tmp_path / "case_0000.nii.gz"]))
    image[5, 5] = np.nan
    write_frame(image, (1.0, 1.0), tmp_path / "nan_0000.nii.gz")
    with pytest.raises(InputError, match="nan_0000.nii.gz has 1 NaN"):
        predictor.read_case(Case("nan", [tmp_path / "nan_0000.nii.gz"]))


def test_predict_writes_the_masks_of_a_dicom_clip_with_its_pixel_size(tmp_path) -> None:
    """A DICOM clip's ultrasound-region spacing reaches its masks' header (videos without one keep 1 x 1)."""
    pytest.importorskip("pydicom")
    import SimpleITK as sitk
    from echo_clips import write_dicom

    from nnunet_lightweight.inference.fast_predictor import CLIP_SPACING, Case, _write_case

    frames = np.tile((np.arange(96 * 80).reshape(96, 80) % 200).astype(np.uint8), (3, 1, 1))
    box = (slice(0, 56), slice(0, 80))  # the tissue region above the ECG strip that write_dicom adds
    dicom = write_dicom(
        tmp_path / "clip.dcm", frames, spacing_mm=(0.3, 0.5), photometric="MONOCHROME2", jpeg=False, sector_box=box
    )
    case = Case("clip", [dicom], video=True)
    read, properties = _reader_only_predictor().read_case(case)
    assert properties == {CLIP_SPACING: pytest.approx((0.3, 0.5))}
    _write_case(None, case, [np.zeros((1, 96, 80), np.uint8)] * len(read), properties, tmp_path / "clip.nii.gz")
    written = sitk.ReadImage(str(tmp_path / "clip.nii.gz"))
    assert written.GetSize() == (80, 96, 3) and written.GetSpacing()[:2] == pytest.approx((0.5, 0.3))


# --- lightecho plan ------------------------------------------------------------------------------------------------

PLAN_ID, PLAN_NAME = 13, "Dataset013_Tiny"
# The nnU-Net steps the fakes were called for, in order; a builder appends BUILT once its own planning is done.
CALLS: list[str] = []
BUILT = "|"


@pytest.fixture
def fake_nnunet(monkeypatch) -> list[str]:
    """nnU-Net's fingerprint, default planner, preprocessor and the LightEcho planner replaced by fakes that write
    the files the real ones write, recording the raw shape they saw and their calls in CALLS."""
    import nnunetv2.experiment_planning.plan_and_preprocess_api as api

    import nnunet_lightweight.planning.plan as plan_module

    calls = CALLS
    calls.clear()

    def folders() -> tuple[Path, Path]:
        import os

        return (Path(os.environ["nnUNet_raw"]) / PLAN_NAME, Path(os.environ["nnUNet_preprocessed"]) / PLAN_NAME)

    def raw_cases() -> dict[str, list[float]]:
        raw, _ = folders()
        return {
            p.name[: -len("_0000.nii.gz")]: [999.0, *reversed(sitk.ReadImage(str(p)).GetSpacing())]
            for p in sorted((raw / "imagesTr").glob("*_0000.nii.gz"))
        }

    def shape_seen() -> list[int]:
        raw, _ = folders()
        return list(sitk.ReadImage(str(next((raw / "imagesTr").glob("*.nii.gz")))).GetSize())

    def fingerprint(dataset_id, num_processes, check_dataset_integrity, clean):
        calls.append("fingerprint")
        _, preprocessed = folders()
        preprocessed.mkdir(parents=True, exist_ok=True)
        (preprocessed / "dataset_fingerprint.json").write_text(json.dumps({"spacings": list(raw_cases().values())}))

    def default_plans(dataset_id):
        calls.append("plans")
        (folders()[1] / "nnUNetPlans.json").write_text(json.dumps({"shape": shape_seen()}))

    def preprocess(dataset_id, plans, configurations, num_processes):
        calls.append("preprocessing")
        folder = folders()[1] / "nnUNetPlans_2d"
        folder.mkdir(exist_ok=True)
        for case in raw_cases():
            (folder / f"{case}.pkl").write_text(json.dumps({"shape": shape_seen()}))
        (folders()[1] / "gt_segmentations").mkdir(exist_ok=True)

    class LightEchoPlanner:
        def __init__(self, dataset_id, plans_name, preset):
            self.plans_name = plans_name

        def plan_experiment(self):
            calls.append("lightecho")
            (folders()[1] / f"{self.plans_name}.json").write_text("{}")

    monkeypatch.setattr(api, "extract_fingerprint_dataset", fingerprint)
    monkeypatch.setattr(api, "plan_experiment_dataset", default_plans)
    monkeypatch.setattr(api, "preprocess_dataset", preprocess)
    monkeypatch.setattr(plan_module, "nnUNetPlannerLightEcho", LightEchoPlanner)
    return calls


def _raw_dataset(tmp: Path, size: int = 16, patients: int = 5, splits: bool = True, test_only: bool = False) -> None:
    """A raw nnU-Net dataset of `patients` x 2 frames of `size` pixels, with the converters' splits_final.json."""
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    folder = tmp / "nnUNet_raw" / PLAN_NAME
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for old in (folder / sub).iterdir():
            old.unlink()
    cases = [] if test_only else [f"p{index}_2CH_{phase}" for index in range(patients) for phase in ("ED", "ES")]
    for case in cases:
        write_frame(np.full((size, size), 50, np.uint8), (1.0, 1.0), folder / "imagesTr" / f"{case}_0000.nii.gz")
        write_frame(np.ones((size, size), np.uint8), (1.0, 1.0), folder / "labelsTr" / f"{case}.nii.gz")
    generate_dataset_json(
        str(folder),
        {0: "echo"},
        {"background": 0, "LV": 1, "MYO": 2, "LA": 3},
        len(cases),
        ".nii.gz",
        dataset_name=PLAN_NAME,
    )
    if splits:
        folds = [
            {
                "train": [c for c in cases if not c.startswith(f"p{k}_")],
                "val": [c for c in cases if c.startswith(f"p{k}_")],
            }
            for k in range(patients)
        ]
        (folder / "splits_final.json").write_text(json.dumps(folds))


def _planned(*steps):
    """A builder: the raw dataset, then `steps` in order (functions of tmp; `_plan` runs lightecho plan)."""

    def build(tmp: Path) -> None:
        _raw_dataset(tmp)
        for step in steps:
            step(tmp)
        CALLS.append(BUILT)

    return build


def _plan(tmp: Path) -> None:
    from nnunet_lightweight.planning.plan import plan

    plan(PLAN_ID, num_processes=1)


def _resized(tmp: Path) -> None:
    _raw_dataset(tmp, size=12)


def _other_patients(tmp: Path) -> None:
    _raw_dataset(tmp, patients=6)


def _splits_edited_by_the_user(tmp: Path) -> None:
    installed = tmp / "nnUNet_preprocessed" / PLAN_NAME / "splits_final.json"
    installed.write_text(json.dumps(json.loads(installed.read_text())[:2][::-1]))  # two folds of their own order


def _interrupted_preprocessing(tmp: Path) -> None:
    """lightecho plan stopped by Ctrl-C in nnU-Net's preprocessing, which had begun its output folder."""
    import nnunetv2.experiment_planning.plan_and_preprocess_api as api

    from nnunet_lightweight.planning.plan import plan

    def interrupted(*args, **kwargs):
        (tmp / "nnUNet_preprocessed" / PLAN_NAME / "nnUNetPlans_2d").mkdir()
        raise KeyboardInterrupt

    complete = api.preprocess_dataset
    api.preprocess_dataset = interrupted
    try:
        plan(PLAN_ID, num_processes=1)
    except KeyboardInterrupt:
        pass
    finally:
        api.preprocess_dataset = complete


def _users_own_planning(tmp: Path) -> None:
    """What nnUNetv2_plan_and_preprocess leaves: plans and preprocessed data without lightecho's state file."""
    _plan(tmp)
    preprocessed = tmp / "nnUNet_preprocessed" / PLAN_NAME
    (preprocessed / "lightecho_plan.json").unlink()
    (preprocessed / "nnUNetPlansLightEcho.json").unlink()


PLAN = ("plan", "-d", str(PLAN_ID), "-np", "1")
USERS = "nnUNet_preprocessed/" + PLAN_NAME

ALL_STEPS = ["fingerprint", "plans", "preprocessing", "lightecho"]
# (case, the nnU-Net steps the command itself must run: what it redoes and nothing more)
PLAN_CASES = [
    (SafetyCase("plan from scratch", _planned(), PLAN, 0, "LightEcho plans:"), ALL_STEPS),
    (SafetyCase("plan again, nothing changed", _planned(_plan), PLAN, 0, "LightEcho plans:", (USERS,)), ["lightecho"]),
    (
        SafetyCase(
            "plan after re-converting with --resize",
            _planned(_plan, _resized),
            PLAN,
            0,
            "changed shape (e.g. p0_2CH_ED: 16x16 -> 12x12)): planning and preprocessing again",
        ),
        ALL_STEPS,
    ),
    (
        SafetyCase(
            "plan after re-converting with other patients",
            _planned(_plan, _other_patients),
            PLAN,
            0,
            "2 new case(s) (p5_2CH_ED, p5_2CH_ES)",
        ),
        ALL_STEPS,
    ),
    (
        SafetyCase(
            "plan after Ctrl-C in the preprocessing",
            _planned(_interrupted_preprocessing),
            PLAN,
            0,
            "redoing preprocessing (not finished last time)",
        ),
        ["preprocessing", "lightecho"],
    ),
    (
        SafetyCase(
            "plan reuses the user's own planning",
            _planned(_users_own_planning),
            PLAN,
            0,
            "LightEcho plans:",
            (f"{USERS}/nnUNetPlans.json", f"{USERS}/nnUNetPlans_2d", f"{USERS}/dataset_fingerprint.json"),
        ),
        ["lightecho"],
    ),
    (
        SafetyCase(
            "plan stops at the user's own stale planning",
            _planned(_users_own_planning, _other_patients),
            PLAN,
            2,
            "that lightecho plan did not write (e.g. from nnUNetv2_plan_and_preprocess) and they no longer match",
            (USERS,),
        ),
        [],
    ),
    (
        SafetyCase(
            "plan --force replaces the user's stale planning",
            _planned(_users_own_planning, _resized),
            (*PLAN, "--force"),
            0,
            "redoing plans, preprocessing (--force)",
        ),
        ALL_STEPS,
    ),
    (
        SafetyCase(
            "plan --preset bogus", _planned(), (*PLAN, "--preset", "bogus"), 2, "unknown architecture preset 'bogus'"
        ),
        [],
    ),
    (
        SafetyCase(
            "plan keeps the user's edit of the splits it installed",
            _planned(_plan, _splits_edited_by_the_user),
            PLAN,
            2,
            "was changed since lightecho plan installed it",
            (f"{USERS}/splits_final.json",),
        ),
        [],
    ),
    (SafetyCase("plan -d 1000", _nothing, ("plan", "-d", "1000"), 2, "dataset id must be between 1 and 999"), []),
    (
        SafetyCase(
            "plan of a test-only dataset",
            lambda tmp: _raw_dataset(tmp, splits=False, test_only=True),
            PLAN,
            2,
            "has no training cases",
        ),
        [],
    ),
]


@pytest.mark.parametrize("case, steps", PLAN_CASES, ids=[case.id for case, _ in PLAN_CASES])
def test_plan_case(case: SafetyCase, steps: list[str], run_safety_case, fake_nnunet, tmp_path) -> None:
    run_safety_case(case)
    assert CALLS[CALLS.index(BUILT) + 1 if BUILT in CALLS else 0 :] == steps
    if case.exit_code != 0:
        return  # what must survive untouched is in the case's `kept`
    preprocessed = tmp_path / "nnUNet_preprocessed" / PLAN_NAME
    state = json.loads((preprocessed / "lightecho_plan.json").read_text())
    assert state["done"] == (["plans", "preprocessing"] if "reuses" not in case.id else [])
    size = sitk.ReadImage(str(next((tmp_path / "nnUNet_raw" / PLAN_NAME / "imagesTr").glob("*")))).GetSize()
    # the plans and every preprocessed case are made from the raw data as it is now
    assert json.loads((preprocessed / "nnUNetPlans.json").read_text())["shape"] == list(size)
    raw_cases = {p.name[: -len("_0000.nii.gz")] for p in (tmp_path / "nnUNet_raw" / PLAN_NAME / "imagesTr").iterdir()}
    assert {p.stem for p in (preprocessed / "nnUNetPlans_2d").glob("*.pkl")} == raw_cases
    installed = json.loads((preprocessed / "splits_final.json").read_text())
    assert installed == json.loads((tmp_path / "nnUNet_raw" / PLAN_NAME / "splits_final.json").read_text())


def test_frame_globs_are_read_in_the_order_of_their_numbers(tmp_path) -> None:
    """frame2 comes before frame10: unpadded frame numbers in text order would shuffle the loop (and its ED/ES)."""
    from nnunet_lightweight.core.image_io import read_sequence_file

    for number in range(1, 13):
        write_frame(np.full((8, 8), number, np.float32), (1.0, 1.0), tmp_path / f"frame{number}.nii.gz")
    sequence = read_sequence_file(tmp_path / "frame*.nii.gz")
    assert [int(frame[0, 0]) for frame in sequence.frames] == list(range(1, 13))
