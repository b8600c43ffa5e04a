"""Data safety (issue 14): no command destroys its input, and user errors give one clear line, never a traceback.

Each row of CASES is run in-process through `lightecho`'s `main(argv)` by the `run_safety_case` fixture
(tests/conftest.py); every subcommand with an output folder option must have a row (`test_every_output_is_guarded`).
The race between concurrent conversions and Ctrl-C need real processes (the tests at the end).
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safety_cases import SafetyCase

from nnunet_lightweight.core.image_io import write_frame
from nnunet_lightweight.core.output import OUTPUT_MARKER

# --- input builders (tiny: a few 32x32 frames) ---------------------------------------------------------------------


def _masks(folder: Path, n: int = 2) -> None:
    """`n` label maps <patientNNNN>_2CH_ED.nii.gz of 32x32 pixels (LV, MYO, LA boxes) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 10:22] = 2
    mask[10:22, 12:20] = 1
    mask[24:30, 12:20] = 3
    for index in range(1, n + 1):
        write_frame(mask, (1.0, 1.0), folder / f"patient{index:04d}_2CH_ED.nii.gz")


def _user_files(folder: Path) -> None:
    """A folder of the user's own files, which no command wrote."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "results.csv").write_text("a,b\n1,2\n")


def _images_in_parent(tmp: Path) -> None:
    _masks(tmp / "parent" / "in")
    _user_files(tmp / "parent")


def _symlink_to_input(tmp: Path) -> None:
    _masks(tmp / "in")
    (tmp / "link").symlink_to(tmp / "in", target_is_directory=True)


def _pred_and_ref(tmp: Path) -> None:
    _masks(tmp / "pred")
    _masks(tmp / "ref")


def _two_preds_and_ref(tmp: Path) -> None:
    _masks(tmp / "a")
    _masks(tmp / "b")
    _masks(tmp / "ref")


def _sequence(tmp: Path) -> None:
    """A 3-frame label-map sequence (2D+t NIfTI), as CAMUS half-sequence ground truth."""
    import SimpleITK as sitk

    (tmp / "loops").mkdir()
    frames = np.zeros((3, 32, 32), np.uint8)
    for t, half_width in enumerate((6, 4, 5)):
        frames[t, 6:26, 16 - half_width : 16 + half_width] = 1
    sitk.WriteImage(sitk.GetImageFromArray(frames), str(tmp / "loops" / "patient0001_2CH_half_sequence_gt.nii.gz"))


def _phantom(folder: Path) -> None:
    from nnunet_lightweight.conversion.phantom import generate_phantom

    generate_phantom(folder, n_patients=5, size=32, progress=False)


def _dataset_holding_its_sources(tmp: Path) -> None:
    """Frames listed by a CSV that lies inside the dataset folder the conversion would replace."""
    source = tmp / "raw" / "Dataset007_Echo" / "source"
    _masks(source, 5)
    rows = ["patient,view,phase,image,label"]
    for index in range(1, 6):
        name = f"patient{index:04d}_2CH_ED.nii.gz"
        rows.append(f"patient{index:04d},2CH,ED,{name},{name}")
    (source / "frames.csv").write_text("\n".join(rows) + "\n")


def _phantom_in_raw(tmp: Path) -> None:
    _phantom(tmp / "raw" / "Dataset008_CAMUS")


def _users_zip(tmp: Path) -> None:
    _user_files(tmp / "mine")
    with zipfile.ZipFile(tmp / "mine" / "photos.zip", "w") as archive:
        archive.writestr("holiday/notes.txt", "my notes")


def _phantom_and_users_png(tmp: Path) -> None:
    from PIL import Image

    _phantom(tmp / "ph")
    _user_files(tmp / "mine")
    Image.new("L", (8, 8), 128).save(tmp / "mine" / "figure.png")


def _camus_folder(tmp: Path) -> None:
    (tmp / "camus" / "database_nifti").mkdir(parents=True)
    _user_files(tmp / "camus")


def _preprocessed_dataset(tmp: Path) -> None:
    """The files `ablation run` checks before it trains: plans, gt_segmentations, dataset.json with labels."""
    folder = tmp / "nnUNet_preprocessed" / "Dataset555_Tiny"
    _masks(folder / "gt_segmentations")
    (folder / "nnUNetPlans.json").write_text("{}")
    (folder / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "echo"},
                "file_ending": ".nii.gz",
                "labels": {"background": 0, "LV": 1, "MYO": 2, "LA": 3},
            }
        )
    )
    (tmp / "nnUNet_raw" / "Dataset555_Tiny").mkdir(parents=True)


def _folder_and_file(tmp: Path) -> None:
    _user_files(tmp / "onnx_dir")
    _user_files(tmp / "files")


def _previous_output(command_files: dict[str, str], marker: bool) -> "callable":
    """A builder of inputs plus an output folder `out` as an earlier run left it (with or without the marker)."""

    def build(tmp: Path) -> None:
        _pred_and_ref(tmp)
        (tmp / "out").mkdir()
        for name, text in command_files.items():
            (tmp / "out" / name).write_text(text)
        if marker:
            (tmp / "out" / OUTPUT_MARKER).write_text("{}")

    return build


def _nothing(tmp: Path) -> None:
    return None


def _latin1_csv(tmp: Path) -> None:
    _dataset_holding_its_sources(tmp)
    csv = tmp / "raw" / "Dataset007_Echo" / "source" / "frames.csv"
    csv.write_bytes(csv.read_bytes().replace(b"patient0001,", "patient0001é,".encode("latin-1"), 1))


def _label_map_list(tmp: Path) -> None:
    _dataset_holding_its_sources(tmp)
    (tmp / "map.json").write_text('[{"1": "LV"}, {"2": "MYO"}]')


def _raw_dataset_without_labels(tmp: Path) -> None:
    folder = tmp / "nnUNet_raw" / "Dataset009_NoLabels"
    _masks(folder / "labelsTr")
    (folder / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "echo"}, "file_ending": ".nii.gz", "numTraining": 2})
    )


def _model_without_labels(tmp: Path) -> None:
    _masks(tmp / "in")
    (tmp / "model").mkdir()
    (tmp / "model" / "plans.json").write_text("{}")
    (tmp / "model" / "dataset.json").write_text(json.dumps({"channel_names": {"0": "echo"}, "file_ending": ".nii.gz"}))


EVALUATE = ("evaluate", "--pred", "{tmp}/pred", "--ref", "{tmp}/ref")
IS_INPUT, CONTAINS, INSIDE = "is the input", "contains the input", "lies inside the input"
NOT_OURS = "was not written by lightecho"

CASES = [
    # item 1: an output that is, contains or lies inside an input is refused whatever --overwrite says
    SafetyCase(
        "predict -o = -i",
        lambda tmp: _masks(tmp / "in"),
        ("predict", "-m", "{tmp}/model", "-i", "{tmp}/in", "-o", "{tmp}/in", "--overwrite"),
        2,
        IS_INPUT,
        ("in",),
        covers="predict",
    ),
    SafetyCase(
        "predict -o parent of -i",
        _images_in_parent,
        ("predict", "-m", "{tmp}/model", "-i", "{tmp}/parent/in", "-o", "{tmp}/parent", "--overwrite"),
        2,
        CONTAINS,
        ("parent",),
        covers="predict",
    ),
    SafetyCase(
        "predict -o inside -i",
        lambda tmp: _masks(tmp / "in"),
        ("predict", "-m", "{tmp}/model", "-i", "{tmp}/in", "-o", "{tmp}/in/masks"),
        2,
        INSIDE,
        ("in",),
    ),
    SafetyCase(
        "predict -o symlink to -i",
        _symlink_to_input,
        ("predict", "-m", "{tmp}/model", "-i", "{tmp}/in", "-o", "{tmp}/link", "--overwrite"),
        2,
        IS_INPUT,
        ("in",),
    ),
    SafetyCase(
        "predict -o inside the model",
        lambda tmp: _user_files(tmp / "model"),
        ("predict", "-m", "{tmp}/model", "-i", "{tmp}/in", "-o", "{tmp}/model/pred"),
        2,
        INSIDE,
        ("model",),
    ),
    SafetyCase(
        "evaluate -o = --pred",
        _pred_and_ref,
        (*EVALUATE, "-o", "{tmp}/pred", "--overwrite"),
        2,
        IS_INPUT,
        ("pred", "ref"),
        covers="evaluate",
    ),
    SafetyCase(
        "evaluate -o parent of --ref",
        _pred_and_ref,
        (*EVALUATE, "-o", "{tmp}", "--overwrite"),
        2,
        CONTAINS,
        ("pred", "ref"),
    ),
    SafetyCase(
        "ef -o = --ref",
        lambda tmp: _masks(tmp / "ref"),
        ("ef", "--ref", "{tmp}/ref", "-o", "{tmp}/ref", "--overwrite"),
        2,
        IS_INPUT,
        ("ref",),
        covers="ef",
    ),
    SafetyCase(
        "postprocess -o = -i",
        lambda tmp: _masks(tmp / "pred"),
        ("postprocess", "-i", "{tmp}/pred", "-o", "{tmp}/pred", "--overwrite"),
        2,
        IS_INPUT,
        ("pred",),
        covers="postprocess",
    ),
    SafetyCase(
        "compare -o = --ref",
        _two_preds_and_ref,
        (
            "compare",
            "--pred",
            "a={tmp}/a",
            "--pred",
            "b={tmp}/b",
            "--ref",
            "{tmp}/ref",
            "-o",
            "{tmp}/ref",
            "--overwrite",
        ),
        2,
        IS_INPUT,
        ("a", "b", "ref"),
        covers="compare",
    ),
    SafetyCase(
        "cine -o holds the sequence",
        _sequence,
        ("cine", "--2ch", "{tmp}/loops/patient0001_2CH_half_sequence_gt.nii.gz", "-o", "{tmp}/loops", "--overwrite"),
        2,
        CONTAINS,
        ("loops",),
        covers="cine",
    ),
    SafetyCase(
        "cine -o holds a glob's frames",
        lambda tmp: _masks(tmp / "frames", 3),
        ("cine", "--2ch", "{tmp}/frames/patient*_2CH_ED.nii.gz", "-o", "{tmp}/frames", "--overwrite"),
        2,
        IS_INPUT,
        ("frames",),
    ),
    SafetyCase(
        "convert-generic into the folder of its frames",
        _dataset_holding_its_sources,
        (
            "convert-generic",
            "{tmp}/raw/Dataset007_Echo/source/frames.csv",
            "-d",
            "7",
            "--raw",
            "{tmp}/raw",
            "--overwrite",
        ),
        2,
        CONTAINS,
        ("raw/Dataset007_Echo/source",),
        covers="convert-generic",
    ),
    SafetyCase(
        "convert-camus into its source",
        _phantom_in_raw,
        ("convert-camus", "{tmp}/raw/Dataset008_CAMUS", "-d", "8", "--raw", "{tmp}/raw", "--overwrite"),
        2,
        CONTAINS,
        ("raw/Dataset008_CAMUS",),
        covers="convert-camus",
    ),
    SafetyCase(
        "demo -o = --camus",
        _camus_folder,
        ("demo", "-o", "{tmp}/camus", "--camus", "{tmp}/camus"),
        2,
        IS_INPUT,
        ("camus",),
        covers="demo",
    ),
    SafetyCase(
        "ablation run -o inside the preprocessed data",
        _preprocessed_dataset,
        (
            "ablation",
            "run",
            "-d",
            "Dataset555_Tiny",
            "-o",
            "{tmp}/nnUNet_preprocessed/Dataset555_Tiny/out",
            "--overwrite",
        ),
        2,
        INSIDE,
        ("nnUNet_preprocessed",),
        covers="ablation run",
    ),
    SafetyCase(
        "export-model -o inside the model",
        lambda tmp: _user_files(tmp / "model"),
        ("export-model", "-m", "{tmp}/model", "-o", "{tmp}/model/model.zip", "--overwrite"),
        2,
        "lies inside the input",
        ("model",),
        covers="export-model",
    ),
    SafetyCase(
        "export-model -o unwritable",
        lambda tmp: _user_files(tmp / "model"),
        ("export-model", "-m", "{tmp}/model", "-o", "{unwritable}/model.zip"),
        2,
        "cannot write",
        ("model",),
    ),
    SafetyCase(
        "quantize -o inside the model",
        lambda tmp: (_user_files(tmp / "model"), _masks(tmp / "in")),
        ("quantize", "-m", "{tmp}/model", "-i", "{tmp}/in", "-o", "{tmp}/model/int8", "--overwrite"),
        2,
        "lies inside the input",
        ("model", "in"),
        covers="quantize",
    ),
    SafetyCase(
        "quantize -o = -i",
        lambda tmp: (_user_files(tmp / "model"), _masks(tmp / "in")),
        ("quantize", "-m", "{tmp}/model", "-i", "{tmp}/in", "-o", "{tmp}/in", "--overwrite"),
        2,
        "input",
        ("model", "in"),
    ),
    # --overwrite replaces only what this project wrote
    SafetyCase(
        "quantize --overwrite of a user's folder",
        lambda tmp: (_user_files(tmp / "model"), _masks(tmp / "in"), _user_files(tmp / "mine")),
        ("quantize", "-m", "{tmp}/model", "-i", "{tmp}/in", "-o", "{tmp}/mine", "--overwrite"),
        2,
        NOT_OURS,
        ("model", "in", "mine"),
    ),
    SafetyCase(
        "predict --overwrite of a user's folder",
        lambda tmp: _user_files(tmp / "mine"),
        ("predict", "-m", "{tmp}/model", "-i", "{tmp}/in", "-o", "{tmp}/mine", "--overwrite"),
        2,
        NOT_OURS,
        ("mine",),
    ),
    SafetyCase(
        "evaluate --overwrite of a user's folder",
        _previous_output({"notes.txt": "mine"}, marker=False),
        (*EVALUATE, "-o", "{tmp}/out", "--overwrite"),
        2,
        NOT_OURS,
        ("out",),
    ),
    SafetyCase(
        "evaluate --overwrite of its own output",
        _previous_output({"summary.json": "{}"}, marker=True),
        (*EVALUATE, "-o", "{tmp}/out", "--overwrite"),
        0,
        "written:",
        ("pred", "ref"),
    ),
    SafetyCase(
        "evaluate --overwrite of an output without marker",
        _previous_output({"summary.json": "{}", "metrics.csv": "", "outliers.csv": ""}, marker=False),
        (*EVALUATE, "-o", "{tmp}/out", "--overwrite"),
        0,
        "written:",
        ("pred", "ref"),
    ),
    SafetyCase(
        "evaluate --overwrite of a marker-less output with extra files",
        _previous_output({"summary.json": "{}", "metrics.csv": "", "thesis.docx": "mine"}, marker=False),
        (*EVALUATE, "-o", "{tmp}/out", "--overwrite"),
        2,
        NOT_OURS,
        ("out",),
    ),
    SafetyCase(
        "ef --overwrite of a user's folder",
        lambda tmp: (_masks(tmp / "ref"), _user_files(tmp / "mine")),
        ("ef", "--ref", "{tmp}/ref", "-o", "{tmp}/mine", "--overwrite"),
        2,
        NOT_OURS,
        ("mine", "ref"),
    ),
    SafetyCase(
        "phantom --overwrite of a user's folder",
        lambda tmp: _user_files(tmp / "mine"),
        ("phantom", "{tmp}/mine", "-n", "2", "--size", "32", "--overwrite"),
        2,
        NOT_OURS,
        ("mine",),
        covers="phantom",
    ),
    SafetyCase(
        "phantom --overwrite of its own output",
        lambda tmp: _phantom(tmp / "ph"),
        ("phantom", "{tmp}/ph", "-n", "2", "--size", "32", "--overwrite"),
        0,
        "phantom: 2 patients",
    ),
    SafetyCase(
        "ablation run --overwrite of a user's folder",
        lambda tmp: (_preprocessed_dataset(tmp), _user_files(tmp / "mine")),
        ("ablation", "run", "-d", "Dataset555_Tiny", "-o", "{tmp}/mine", "--overwrite"),
        2,
        "holds no ablation",
        ("mine",),
    ),
    SafetyCase(
        "demo in a user's folder",
        lambda tmp: _user_files(tmp / "mine"),
        ("demo", "-o", "{tmp}/mine"),
        2,
        "is not a demo folder",
        ("mine",),
    ),
    # export-onnx writes a file: a folder, a file it did not write, a bad opset are refused before the export
    SafetyCase(
        "export-onnx -o DIR --overwrite",
        _folder_and_file,
        ("export-onnx", "-m", "{tmp}/model", "-o", "{tmp}/onnx_dir", "--overwrite"),
        2,
        "is a folder",
        ("onnx_dir",),
        covers="export-onnx",
    ),
    SafetyCase(
        "export-onnx --overwrite of a file it did not write",
        _folder_and_file,
        ("export-onnx", "-m", "{tmp}/model", "-o", "{tmp}/files/notes.txt", "--overwrite"),
        2,
        NOT_OURS,
        ("files",),
    ),
    SafetyCase(
        "export-onnx -o inside its model folder",
        _model_without_labels,
        ("export-onnx", "-m", "{tmp}/model", "-o", "{tmp}/model/fold_0/m.onnx"),
        2,
        INSIDE,
        ("model",),
    ),
    SafetyCase(
        "export-onnx --opset 8",
        _nothing,
        ("export-onnx", "-m", "{tmp}/model", "-o", "{tmp}/m.onnx", "--opset", "8"),
        2,
        "at least 9",
    ),
    SafetyCase(
        "benchmark --output-json onto the user's file",
        lambda tmp: _user_files(tmp / "mine"),
        ("benchmark", "--train", "--output-json", "{tmp}/mine/results.csv"),
        2,
        "exists (pass --overwrite to replace it)",
        ("mine",),
    ),
    # --overwrite replaces a file output only where lightecho wrote it
    SafetyCase(
        "benchmark --output-json --overwrite onto the user's file",
        lambda tmp: _user_files(tmp / "mine"),
        ("benchmark", "--train", "--output-json", "{tmp}/mine/results.csv", "--overwrite"),
        2,
        NOT_OURS,
        ("mine",),
    ),
    SafetyCase(
        "export-model --overwrite onto the user's zip",
        _users_zip,
        ("export-model", "-m", "{tmp}/model", "-o", "{tmp}/mine/photos.zip", "--overwrite"),
        2,
        NOT_OURS,
        ("mine",),
    ),
    SafetyCase(
        "convert --overlay --overwrite onto the user's PNG",
        _phantom_and_users_png,
        (
            "convert-camus",
            "{tmp}/ph",
            "-d",
            "9",
            "--raw",
            "{tmp}/raw",
            "--overlay",
            "{tmp}/mine/figure.png",
            "--overwrite",
        ),
        2,
        NOT_OURS,
        ("ph", "mine"),
    ),
    SafetyCase(
        "benchmark --output-json unwritable",
        _nothing,
        ("benchmark", "--output-json", "{unwritable}/bench.json"),
        2,
        "cannot write",
    ),
    # item 6: an output folder that cannot be written is one line, before any work
    SafetyCase(
        "evaluate -o unwritable",
        _pred_and_ref,
        (*EVALUATE, "-o", "{unwritable}/out"),
        2,
        "cannot write",
        ("pred", "ref"),
    ),
    SafetyCase(
        "convert --raw unwritable",
        lambda tmp: _phantom(tmp / "ph"),
        ("convert-camus", "{tmp}/ph", "-d", "9", "--raw", "{unwritable}/raw"),
        2,
        "cannot write",
        ("ph",),
    ),
    SafetyCase(
        "convert --overlay unwritable",
        lambda tmp: _phantom(tmp / "ph"),
        ("convert-camus", "{tmp}/ph", "-d", "9", "--raw", "{tmp}/raw", "--overlay", "{unwritable}/o.png"),
        2,
        "cannot write",
        ("ph",),
    ),
    SafetyCase(
        "export-onnx -o unwritable",
        _nothing,
        ("export-onnx", "-m", "{tmp}/model", "-o", "{unwritable}/m.onnx"),
        2,
        "cannot write",
    ),
    # item 6: bad inputs are one line, not a traceback
    SafetyCase(
        "convert-generic Latin-1 CSV",
        _latin1_csv,
        ("convert-generic", "{tmp}/raw/Dataset007_Echo/source/frames.csv", "-d", "9", "--raw", "{tmp}/out"),
        2,
        "is not UTF-8 text",
        ("raw",),
    ),
    SafetyCase(
        "convert-generic --label-map JSON list",
        _label_map_list,
        (
            "convert-generic",
            "{tmp}/raw/Dataset007_Echo/source/frames.csv",
            "-d",
            "9",
            "--raw",
            "{tmp}/out",
            "--label-map",
            "{tmp}/map.json",
        ),
        2,
        "must be a JSON object",
        ("raw", "map.json"),
    ),
    SafetyCase(
        "predict with a dataset.json without labels",
        _model_without_labels,
        ("predict", "-m", "{tmp}/model", "-i", "{tmp}/in", "-o", "{tmp}/out"),
        2,
        "lacks labels",
        ("in", "model"),
    ),
    SafetyCase(
        "plan with a dataset.json without labels",
        _raw_dataset_without_labels,
        ("plan", "-d", "9"),
        2,
        "lacks labels",
        ("nnUNet_raw",),
    ),
    SafetyCase(
        "plan --preset bogus",
        _raw_dataset_without_labels,
        ("plan", "-d", "9", "--preset", "bogus"),
        2,
        "unknown architecture preset 'bogus'",
        ("nnUNet_raw",),
    ),
    SafetyCase(
        "predict -o under a file",
        lambda tmp: _user_files(tmp / "files"),
        ("predict", "-m", "{tmp}/model", "-i", "{tmp}/in", "-o", "{tmp}/files/notes.txt/out"),
        2,
        "is not a folder",
        ("files",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_data_safety_case(case: SafetyCase, run_safety_case) -> None:
    run_safety_case(case)


def _folder_writing_commands() -> set[str]:
    """Every (sub)command of the parser with an output option (-o/--output, --raw or the positional `out`)."""
    import argparse

    from nnunet_lightweight.cli import build_parser

    found = set()

    def walk(parser: argparse.ArgumentParser, command: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, subparser in action.choices.items():
                    walk(subparser, f"{command} {name}".strip())
            elif command and action.dest in ("output", "out", "raw"):
                found.add(command)

    walk(build_parser(), "")
    return found


def test_every_output_is_guarded() -> None:
    commands = _folder_writing_commands()
    assert {"predict", "evaluate", "ef", "convert-camus", "phantom", "ablation run"} <= commands
    unguarded = commands - {case.covers for case in CASES}
    assert not unguarded, f"subcommands with an output folder but no guard case in CASES: {sorted(unguarded)}"


def test_outputs_follow_the_umask(tmp_path, capsys) -> None:
    """Staged outputs are made by mkdtemp (mode 0700); they must get the umask's permissions like any folder."""
    from nnunet_lightweight.cli import main

    _masks(tmp_path / "pred")
    previous = os.umask(0o027)
    try:
        assert main(["postprocess", "-i", str(tmp_path / "pred"), "-o", str(tmp_path / "out")]) == 0
    finally:
        os.umask(previous)
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o640}
    assert (out / OUTPUT_MARKER).is_file()


def test_overwrite_keeps_what_the_user_added_to_or_changed_in_a_lightecho_output(tmp_path, capsys) -> None:
    """The marker lists what the command wrote: a folder also holding the user's files, or one of its files edited,
    is not replaced by --overwrite (their work would be lost); unchanged, it is."""
    from nnunet_lightweight.cli import main

    _masks(tmp_path / "pred")
    argv = ["postprocess", "-i", str(tmp_path / "pred"), "-o", str(tmp_path / "out"), "--overwrite"]
    assert main(argv) == 0
    out = tmp_path / "out"
    written = sorted(p.name for p in out.iterdir())
    (out / "notes").mkdir()
    (out / "notes" / "mine.txt").write_text("my notes")
    assert main(argv) == 2
    assert "notes/mine.txt" in capsys.readouterr().err and (out / "notes" / "mine.txt").read_text() == "my notes"
    shutil.rmtree(out / "notes")
    edited = next(p for p in out.iterdir() if p.name.endswith(".nii.gz"))
    edited.write_bytes(edited.read_bytes() + b"edit")
    assert main(argv) == 2 and edited.read_bytes().endswith(b"edit")
    edited.write_bytes(edited.read_bytes()[:-4])
    assert main(argv) == 0 and sorted(p.name for p in out.iterdir()) == written


# --- real processes: Ctrl-C, and two conversions at once -----------------------------------------------------------

PAUSED_CLI = Path(__file__).with_name("paused_cli.py")


def _start_paused(function: str, argv: list[str], folder: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """`lightecho argv` in its own process, returned once it paused after `function` (MODULE:FUNCTION); touching
    the returned path lets it go on."""
    ready, go = folder / f"{name}.ready", folder / f"{name}.go"
    process = subprocess.Popen(
        [sys.executable, str(PAUSED_CLI), function, str(ready), str(go), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{argv} did not reach {function}: {process.communicate()}")
        time.sleep(0.05)
    return process, go


@pytest.mark.parametrize(
    "command, function, stop",
    [
        ("postprocess", "nnunet_lightweight.evaluation.postprocessing:postprocess_segmentation", signal.SIGINT),
        ("convert-camus", "nnunet_lightweight.conversion.dataset:_convert_frame", signal.SIGINT),
        # what SLURM sends at a job's time limit
        ("postprocess", "nnunet_lightweight.evaluation.postprocessing:postprocess_segmentation", signal.SIGTERM),
    ],
)
def test_ctrl_c_and_sigterm_remove_the_staged_output(command, function, stop, tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if command == "postprocess":
        _masks(tmp_path / "pred")
        argv = ["postprocess", "-i", str(tmp_path / "pred"), "-o", str(work / "out")]
    else:
        _phantom(tmp_path / "ph")
        argv = ["convert-camus", str(tmp_path / "ph"), "-d", "761", "--raw", str(work)]
    before = {kept: _snapshot_of(tmp_path / kept) for kept in ("pred", "ph") if (tmp_path / kept).exists()}
    process, _ = _start_paused(function, argv, tmp_path, "interrupted")
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    status, how = (130, "interrupted (Ctrl-C)") if stop == signal.SIGINT else (143, "terminated (SIGTERM)")
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"lightecho {command}: {how}: unfinished outputs were removed; inputs and outputs written before are kept"
    )
    assert list(work.iterdir()) == [], "staged output left behind"
    assert {kept: _snapshot_of(tmp_path / kept) for kept in before} == before


def test_forked_workers_keep_the_default_sigterm() -> None:
    """nnU-Net's multiprocessing pools end their workers with SIGTERM: a worker that unwound like the main process
    printed tracebacks and could die holding the pool's queue lock (a hang at the end of convert-camus)."""
    script = (
        "import os, signal\n"
        "from nnunet_lightweight.cli import Terminated, unwind_on_sigterm\n"
        "unwind_on_sigterm()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL else 1)\n"
        "assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0, 'the child unwinds on SIGTERM'\n"
        "try:\n"
        "    signal.raise_signal(signal.SIGTERM)\n"
        "except Terminated:\n"
        "    print('main unwinds')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "main unwinds", result.stderr


def _snapshot_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("second_name", ["B", "A"], ids=["other name, same id", "same name and id"])
def test_concurrent_conversions_cannot_both_take_a_dataset_id(second_name, tmp_path, capsys) -> None:
    """The first conversion pauses between its checks and its final rename while a second one runs to the end:
    the first must then refuse (before the fix: two datasets with one id, or the second's dataset replaced)."""
    from nnunet_lightweight.cli import main

    _phantom(tmp_path / "ph")
    raw = tmp_path / "raw"
    convert = ["convert-camus", str(tmp_path / "ph"), "-d", "760", "--raw", str(raw), "--no-verify"]
    first, go = _start_paused(
        "nnunet_lightweight.conversion.dataset:_patient_metadata", [*convert, "--name", "A"], tmp_path, "first"
    )
    assert main([*convert, "--name", second_name, "--seed", "1"]) == 0
    go.touch()
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 2, stderr
    assert "another run wrote it meanwhile" in stderr.strip().splitlines()[-1]
    assert [p.name for p in raw.iterdir()] == [f"Dataset760_{second_name}"]
    assert json.loads((raw / f"Dataset760_{second_name}" / "camus_metadata.json").read_text())["seed"] == 1
