"""Int8 inference: `lightecho quantize` makes a model folder with int8 networks from the shipped model and real
CAMUS training frames; `--precision int8` runs it close to fp32 on unseen patients, and refuses what it cannot
run honestly (no int8 network, an int8 network of other weights, a GPU, a torch engine)."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_lightweight.cli import main
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.evaluation.metrics import dice_score
from nnunet_lightweight.inference.engines import resolve_precision
from nnunet_lightweight.inference.fast_predictor import FastPredictor
from nnunet_lightweight.inference.model_folder import load_trained_model
from nnunet_lightweight.inference.quantization import INT8_FOLDER, INT8_NETWORK
from nnunet_lightweight.inference.settings import PredictorSettings
from nnunet_lightweight.pretrained import export_model, shipped_model_folder


def _frames_of(camus_root, subgroup: str, patients: int, folder) -> list[str]:
    """The ED and ES frames of both views of the first `patients` patients of a CAMUS subgroup, as nnU-Net images
    in `folder`; returns the case names."""
    names = (camus_root / "database_split" / f"subgroup_{subgroup}.txt").read_text().split()[:patients]
    folder.mkdir(parents=True)
    cases = []
    for patient in names:
        for view in ("2CH", "4CH"):
            for phase in ("ED", "ES"):
                case = f"{patient}_{view}_{phase}"
                shutil.copy(camus_root / "database_nifti" / patient / f"{case}.nii.gz", folder / f"{case}_0000.nii.gz")
                cases.append(case)
    return cases


@pytest.fixture(scope="module")
def int8_model(camus_root, tmp_path_factory):
    """The shipped model with int8 networks, calibrated on 16 frames of 4 training-subgroup patients, written in
    nnU-Net's results layout (which `export-model` needs)."""
    work = tmp_path_factory.mktemp("int8")
    _frames_of(camus_root, "training", 4, work / "calibration")
    output = work / "results" / "Dataset500_CAMUS" / shipped_model_folder().name
    assert main(["quantize", "-i", str(work / "calibration"), "-o", str(output), "--frames", "16"]) == 0
    return output


def test_int8_masks_match_fp32_on_unseen_patients(int8_model, camus_root, tmp_path):
    """Validation-subgroup frames (never calibrated on): int8 and fp32 masks, both after CCA, nearly coincide."""
    cases = _frames_of(camus_root, "validation", 2, tmp_path / "in")
    masks = {}
    for precision in ("fp32", "int8"):
        out = tmp_path / precision
        argv = ["predict", "-m", str(int8_model), "-i", str(tmp_path / "in"), "-o", str(out), "--precision", precision]
        assert main([*argv, "--device", "cpu"]) == 0
        masks[precision] = [sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz"))) for case in cases]
    for label in (1, 2, 3):
        agreement = [dice_score(a == label, b == label) for a, b in zip(masks["fp32"], masks["int8"])]
        assert min(agreement) >= 0.95, (label, agreement)


def test_int8_model_folder_is_a_copy_with_int8_networks(int8_model):
    shipped = shipped_model_folder()
    assert (int8_model / "fold_0" / INT8_FOLDER / INT8_NETWORK).is_file()
    assert not (shipped / "fold_0" / INT8_FOLDER).exists()  # the input model folder is not written to
    for name in ("plans.json", "dataset.json", "input_convention.json", "MODEL_CARD.md"):
        assert (int8_model / name).read_bytes() == (shipped / name).read_bytes(), name
    copied, original = (
        torch.load(folder / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        for folder in (int8_model, shipped)
    )
    assert all(torch.equal(copied["network_weights"][k], v) for k, v in original["network_weights"].items())


def test_int8_network_of_other_weights_is_refused(int8_model, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(int8_model, changed)
    checkpoint_path = changed / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    # Every float tensor: the network holds some parameters under two names (a layer and its container).
    weights = checkpoint["network_weights"]
    checkpoint["network_weights"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}
    torch.save(checkpoint, checkpoint_path)
    with pytest.raises(InputError, match="other weights"):
        FastPredictor(load_trained_model(changed), PredictorSettings(device="cpu", precision="int8"), log=None)


def test_int8_needs_an_int8_network_the_openvino_engine_and_a_cpu(int8_model):
    with pytest.raises(InputError, match="lightecho quantize"):
        FastPredictor(load_trained_model(shipped_model_folder()), PredictorSettings("cpu", precision="int8"), log=None)
    with pytest.raises(InputError, match="openvino backend"):
        FastPredictor(load_trained_model(int8_model), PredictorSettings("cpu", "torch", "int8"), log=None)
    with pytest.raises(InputError, match="runs on CPU"):
        resolve_precision("int8", torch.device("cuda"))


def test_int8_predictor_describes_its_engine(int8_model):
    predictor = FastPredictor(load_trained_model(int8_model), PredictorSettings("cpu", precision="int8"), log=None)
    assert "openvino int8" in predictor.describe()
    logits = predictor.logits(torch.zeros((2, 1, *predictor.patch)))
    assert logits.shape == (2, 4, *predictor.patch) and np.isfinite(logits.numpy()).all()


def test_cli_calibration_default_is_the_library_default():
    from nnunet_lightweight.cli.quantize import DEFAULT_CALIBRATION_FRAMES as cli_default
    from nnunet_lightweight.workflows.quantize import DEFAULT_CALIBRATION_FRAMES

    assert cli_default == DEFAULT_CALIBRATION_FRAMES


def test_export_model_carries_the_int8_networks(int8_model, tmp_path):
    names = zipfile.ZipFile(export_model(tmp_path / "int8.zip", int8_model)).namelist()
    for name in ("network.xml", "network.bin"):
        assert any(n.endswith(f"/fold_0/{INT8_FOLDER}/{name}") for n in names), name


def test_video_benchmark_picks_the_fastest_precision_it_measured(camus_root, tmp_path):
    """scripts/benchmark_video.py on one short clip: it times the network in every precision it can run here (int8
    from a copy of the shipped model that it quantizes itself) and benchmarks the one it found fastest. No speed is
    asserted: the figures vary with the machine."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_video.py"
    argv = [sys.executable, str(script), "--camus", str(camus_root), "--clips", "1", "--frames", "12", "--repeats", "1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = next(line for line in result.stdout.splitlines() if line.startswith("network alone, frames/s:"))
    rates = dict(part.split() for part in measured.split(":", 1)[1].split(","))
    assert {"fp32", "int8"} <= set(rates) and set(rates) <= {"fp32", "bf16", "int8"}
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["precision"] == max(rates, key=lambda precision: float(rates[precision]))
    assert report["frames"] == 12 and report["measured"] == 1
    assert report["end_to_end_frames_per_second"] > 0 and report["network_alone_frames_per_second"] > 0


def test_ef_from_images_runs_the_int8_network(int8_model, camus_root, tmp_path):
    """`ef --images --precision int8` measures the masks of the int8 networks (close to fp32's); the predictor
    options belong to --images and are refused without it."""
    import pandas as pd

    from nnunet_lightweight.clinical.ejection_fraction import ef_from_images

    _frames_of(camus_root, "validation", 2, tmp_path / "in")
    ef_of = {}
    for precision in ("fp32", "int8"):
        out = tmp_path / f"ef_{precision}"
        argv = ["ef", "--images", str(tmp_path / "in"), "--model", str(int8_model), "--precision", precision]
        assert main([*argv, "-o", str(out)]) == 0
        ef_of[precision] = pd.read_csv(out / "ef.csv").set_index("patient")["ef"]
    assert len(ef_of["int8"]) == 2 and (ef_of["int8"] - ef_of["fp32"]).abs().max() < 2.0
    assert main(["ef", "--pred", str(tmp_path / "in"), "--precision", "int8", "-o", str(tmp_path / "x")]) == 2
    with pytest.raises(InputError, match="int8"):
        ef_from_images(
            tmp_path / "y", tmp_path / "in", shipped_model_folder(), settings=PredictorSettings("cpu", precision="int8")
        )
