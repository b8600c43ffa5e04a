"""Fast inference: CCA on device, BN folding, engines, model loading, FastPredictor against nnU-Net's own predictor.

A tiny synthetic model folder (LightEcho network, random weights, 64x64 patch) stands in for a trained model: the
question here is whether the fast path gives nnU-Net's answer, not whether the answer is good.
"""

import json
import os
import platform
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from nnunet_lightweight.core.deferred_imports import UNUSED_AT_START_UP
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.labels import keep_largest_component_per_label
from nnunet_lightweight.core.video_readers import read_loop
from nnunet_lightweight.evaluation.metrics import dice_score
from nnunet_lightweight.inference.components import keep_largest_component
from nnunet_lightweight.inference.engines import (
    OnnxEngine,
    OpenVinoEngine,
    TorchEngine,
    build_engine,
    fold_batch_norm,
    openvino_available,
    resolve_backend,
)
from nnunet_lightweight.inference.fast_predictor import FastPredictor, find_cases, first_max_channel, predict
from nnunet_lightweight.inference.model_folder import load_trained_model
from nnunet_lightweight.inference.onnx_export import onnxruntime_available
from nnunet_lightweight.inference.settings import PredictorSettings
from nnunet_lightweight.network import build_lightecho_network

# The plain PyTorch engine on CPU without CCA: raw network masks, comparable across code paths.
EAGER_CPU = PredictorSettings(device="cpu", backend="eager", cca=False)

LABELS = {"LV": 1, "MYO": 2, "LA": 3}
PATCH = 64
needs_onnx = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed")
needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino not installed")
ENGINE_CLASSES = {"eager": TorchEngine, "torch": TorchEngine, "onnx": OnnxEngine, "openvino": OpenVinoEngine}


def _blobs(seed: int, shape=(48, 56)) -> np.ndarray:
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 2)
    return np.digitize(noise, np.quantile(noise, [0.5, 0.65, 0.8])).astype(np.uint8)


@pytest.mark.parametrize("shape", [(48, 56), (4, 40, 44)])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_cpu_cca_matches_nnunets_function(shape, dtype):
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation

    for seed in range(4):
        segmentation = _blobs(seed, shape).astype(dtype)
        pixels = segmentation.reshape(-1)
        pixels[0], pixels[-2:] = 4, 4  # a label outside the filtered ones keeps both its components
        expected = segmentation
        for label in LABELS.values():
            expected = remove_all_but_largest_component_from_segmentation(expected, label)
        assert not np.array_equal(expected, segmentation)  # there are components to remove
        result = keep_largest_component_per_label(segmentation, LABELS)
        assert result.dtype == segmentation.dtype
        np.testing.assert_array_equal(result, expected)


def test_cpu_cca_keeps_a_map_with_one_component_per_structure():
    segmentation = np.zeros((20, 20), dtype=np.uint8)
    segmentation[2:8, 2:8], segmentation[10:14, 3:6], segmentation[15, 15] = 1, 2, 3
    np.testing.assert_array_equal(keep_largest_component_per_label(segmentation, LABELS), segmentation)
    segmentation[18, 2] = 1  # a second LV component, smaller: removed
    expected = segmentation.copy()
    expected[18, 2] = 0
    np.testing.assert_array_equal(keep_largest_component_per_label(segmentation, LABELS), expected)


def test_first_max_channel_is_argmax_with_its_tie_rule():
    # Small integers: many ties between channels, which the first maximum must win, as in torch and numpy.
    logits = np.random.default_rng(0).integers(0, 3, size=(2, 4, 16, 24)).astype(np.float32)
    labels = first_max_channel(logits)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, torch.from_numpy(logits).argmax(1).numpy())
    np.testing.assert_array_equal(labels, logits.argmax(1))


def test_device_cca_matches_nnunet():
    segmentations = np.stack([_blobs(seed) for seed in range(4)])
    expected = np.stack([keep_largest_component_per_label(s, LABELS) for s in segmentations])
    assert not np.array_equal(expected, segmentations)  # the blobs do have small components to remove
    result = keep_largest_component(torch.from_numpy(segmentations), list(LABELS.values())).numpy()
    np.testing.assert_array_equal(result, expected)


def test_device_cca_diagonal_connectivity_and_ties():
    segmentation = np.zeros((1, 8, 8), dtype=np.uint8)
    segmentation[0, 0, 0] = segmentation[0, 1, 1] = 1  # diagonal neighbours: one 8-connected component
    segmentation[0, 5, 5] = 1  # smaller component: removed
    segmentation[0, 0, 6] = segmentation[0, 6, 0] = 2  # two components of equal size: both kept, as nnU-Net does
    result = keep_largest_component(torch.from_numpy(segmentation), [1, 2]).numpy()
    expected = segmentation.copy()
    expected[0, 5, 5] = 0
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(result[0], keep_largest_component_per_label(segmentation[0], {"a": 1, "b": 2}))


def _network_with_batch_statistics(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    network = build_lightecho_network().eval()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    return network


@needs_openvino
def test_openvino_batches_queued_together_return_their_own_logits():
    engine = build_engine(
        _network_with_batch_statistics(), "openvino", torch.device("cpu"), "fp32", (2, 1, PATCH, PATCH), 2, log=None
    )
    first_images, second_images = torch.randn(2, 2, 1, PATCH, PATCH, generator=torch.Generator().manual_seed(0))
    first, second = engine.submit(first_images), engine.submit(second_images)  # both on the engine at once
    first_logits, second_logits = first(), second()
    assert first.seconds > 0 and second.seconds > 0
    assert not torch.equal(first_logits, second_logits)
    torch.testing.assert_close(first_logits, engine(first_images))
    torch.testing.assert_close(second_logits, engine(second_images))


def test_fold_batch_norm_keeps_the_function():
    network = _network_with_batch_statistics()
    folded = fold_batch_norm(network)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules())  # the original is untouched
    images = torch.randn(2, 1, PATCH, PATCH)
    with torch.inference_mode():
        torch.testing.assert_close(folded(images), network(images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "backend",
    ["eager", "torch", pytest.param("onnx", marks=needs_onnx), pytest.param("openvino", marks=needs_openvino)],
)
def test_engines_give_the_network_logits(backend):
    network = _network_with_batch_statistics(1)
    images = torch.randn(3, 1, PATCH, PATCH)
    with torch.inference_mode():
        expected = network(images)
    engine = build_engine(network, backend, torch.device("cpu"), "fp32", (1, 1, PATCH, PATCH), 2, log=None)
    assert isinstance(engine, ENGINE_CLASSES[backend])
    torch.testing.assert_close(engine(images), expected, rtol=1e-4, atol=1e-4)
    # Dynamic batch and frame size.
    torch.testing.assert_close(
        engine(images[:1, :, :32, :32]), network(images[:1, :, :32, :32]).detach(), rtol=1e-4, atol=1e-4
    )


def test_onnx_export_is_cached_per_network(tmp_path, monkeypatch):
    """The engines' ONNX export is done once per network: a second build reads it back (no export), changed weights
    miss, a damaged entry is exported again and replaced, and an unwritable or disabled cache only costs the export."""
    from nnunet_lightweight.inference import onnx_export

    cache = tmp_path / "cache"
    monkeypatch.setenv("LIGHTECHO_CACHE_DIR", str(cache))
    network, shape = _network_with_batch_statistics(2), (1, 1, PATCH, PATCH)
    exported = onnx_export.cached_network_onnx(network, shape)
    (entry,) = cache.glob("*.onnx")
    assert not list(cache.glob(".*"))  # no partial file left
    export = onnx_export.network_to_onnx

    def forbidden(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_export, "network_to_onnx", forbidden)
    assert onnx_export.cached_network_onnx(network, shape) == exported
    with torch.no_grad():
        next(network.parameters()).add_(1.0)
    with pytest.raises(AssertionError, match="exported again"):
        onnx_export.cached_network_onnx(network, shape)
    with pytest.raises(AssertionError, match="exported again"):  # same weights, another example shape
        onnx_export.cached_network_onnx(_network_with_batch_statistics(2), (1, 1, PATCH, 32))
    monkeypatch.setattr(onnx_export, "network_to_onnx", export)
    network = _network_with_batch_statistics(2)
    entry.write_bytes(entry.read_bytes()[:1000])  # damaged
    assert onnx_export.cached_network_onnx(network, shape) == exported
    assert entry.read_bytes()[:-32] == exported
    (tmp_path / "file").write_text("not a folder")
    for setting in (str(tmp_path / "file" / "cache"), "off"):
        monkeypatch.setenv("LIGHTECHO_CACHE_DIR", setting)
        assert onnx_export.cached_network_onnx(network, shape) == exported
    assert (tmp_path / "file").read_text() == "not a folder" and [p.name for p in cache.iterdir()] == [entry.name]


def test_onnx_fingerprint_covers_the_files_beside_the_network_classes(tmp_path, monkeypatch):
    """A helper module of the network's package (LightEcho's decoder calls network/upsampled_convolution.py)
    changes what is exported, so editing it must miss the cache."""
    import inspect

    from nnunet_lightweight.inference import onnx_export
    from nnunet_lightweight.network import build_lightecho_network

    network, shape = build_lightecho_network(), (1, 1, PATCH, PATCH)
    (tmp_path / "network.py").write_text("class LightEchoUNet: ...")
    helper = tmp_path / "helper.py"
    helper.write_text("def convolve(): ...")
    monkeypatch.setattr(inspect, "getfile", lambda cls: str(tmp_path / "network.py"))
    fingerprint = onnx_export.network_fingerprint(network, shape)
    assert onnx_export.network_fingerprint(network, shape) == fingerprint
    helper.write_text("def convolve(): return None")
    assert onnx_export.network_fingerprint(network, shape) != fingerprint


def test_one_exponential_mish_is_mish():
    from nnunet_lightweight.network.activations import ExpMish, replace_mish

    x = torch.cat((torch.linspace(-60, 60, 2001), torch.tensor([-1e4, 19.99, 20.0, 20.01, 1e4])))
    torch.testing.assert_close(ExpMish()(x), torch.nn.functional.mish(x), rtol=1e-5, atol=1e-6)
    network = replace_mish(build_lightecho_network())
    assert not any(isinstance(m, torch.nn.Mish) for m in network.modules())
    assert any(isinstance(m, ExpMish) for m in network.modules())


@pytest.mark.parametrize("backend", ["torch", pytest.param("openvino", marks=needs_openvino)])
def test_bf16_engine_mostly_agrees(backend):
    network = _network_with_batch_statistics(2)
    images = torch.randn(2, 1, PATCH, PATCH)
    with torch.inference_mode():
        expected = network(images).argmax(1)
    logits = build_engine(network, backend, torch.device("cpu"), "bf16", (1, 1, PATCH, PATCH), log=None)(images)
    assert logits.dtype == torch.float32
    assert (logits.argmax(1) == expected).float().mean() > 0.9


@needs_openvino
def test_openvino_engine_refuses_what_it_cannot_run():
    network = _network_with_batch_statistics(3)
    with pytest.raises(InputError, match="fp32, bf16 or int8"):
        build_engine(network, "openvino", torch.device("cpu"), "fp16", (1, 1, PATCH, PATCH), log=None)
    with pytest.raises(InputError, match="runs on CPU"):
        OpenVinoEngine(network, (1, 1, PATCH, PATCH), torch.device("cuda"))


def test_auto_backend_is_openvino_on_cpu_where_installed():
    assert resolve_backend("auto", torch.device("cpu")) == ("openvino" if openvino_available() else "torch")
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    assert resolve_backend("onnx", torch.device("cpu")) == "onnx"
    with pytest.raises(InputError, match="backend must be one of"):
        resolve_backend("tensorrt")


_PAGE_FAULTS_PER_STEP = """
import resource, sys
import torch
if sys.argv[1] == "retain":
    from nnunet_lightweight.core.allocator import retain_freed_memory
    assert retain_freed_memory()
torch.set_num_threads(1)
conv = torch.nn.Conv2d(1, 32, 3, padding=1)
frames = torch.randn(8, 1, 256, 256)  # activations of 64 MB: above glibc's largest mmap threshold
def step():
    conv(frames).square().mean().backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_buffers_are_reused_without_page_faults():
    """A training-like step page-faults its 64 MB activations in afresh by default, rarely once memory is kept.

    Where the heap can grow in place every buffer is reused (0 faults); where another mapping is in its way, glibc
    extends it elsewhere and one buffer of a step may still fault in (measured: 0 to 16,390 faults per step against
    131,080 by default)."""

    def faults_per_step(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", _PAGE_FAULTS_PER_STEP, mode], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    activation_pages = 8 * 32 * 256 * 256 * 4 // 4096
    default = faults_per_step("default")
    assert default > activation_pages
    assert faults_per_step("retain") < default // 4


def test_engine_output_is_not_overwritten_by_the_next_call():
    # An OpenVINO request reuses its output buffer between calls; the engine must hand out a copy.
    network = _network_with_batch_statistics(4)
    engine = build_engine(
        network,
        resolve_backend("auto", torch.device("cpu")),
        torch.device("cpu"),
        "fp32",
        (1, 1, PATCH, PATCH),
        log=None,
    )
    first_images, second_images = torch.randn(1, 1, PATCH, PATCH), torch.randn(1, 1, PATCH, PATCH)
    first = engine(first_images)
    kept = first.clone()
    engine(second_images)
    torch.testing.assert_close(first, kept)


# --- a synthetic trained model folder -------------------------------------------------------------------------------


def _plans() -> dict:
    from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho

    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    configuration = {
        "data_identifier": "nnUNetPlans_2d",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2,
        "patch_size": [PATCH, PATCH],
        "median_image_size_in_voxels": [PATCH, PATCH],
        "spacing": [1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": resampling,
        "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
        "batch_dice": True,
    }
    plans = {
        "dataset_name": "Dataset990_Synthetic",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [999.0, 1.0, 1.0],
        "original_median_shape_after_transp": [1, PATCH, PATCH],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"2d": configuration},
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 255.0,
                "mean": 90.0,
                "median": 88.0,
                "min": 0.0,
                "percentile_00_5": 0.0,
                "percentile_99_5": 250.0,
                "std": 50.0,
            }
        },
    }
    return nnUNetTrainerLightEcho.lightecho_plans(plans, "2d")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """`nnUNetTrainerLightEcho__nnUNetPlans__2d` with two folds of random weights (BN statistics randomised)."""
    from nnunet_lightweight.network import build_network_from_preset

    folder = tmp_path_factory.mktemp("results") / "Dataset990_Synthetic" / "nnUNetTrainerLightEcho__nnUNetPlans__2d"
    plans = _plans()
    dataset_json = {
        "channel_names": {"0": "echo"},
        "labels": {"background": 0, **LABELS},
        "numTraining": 4,
        "file_ending": ".nii.gz",
    }
    for fold in (0, 1):
        (folder / f"fold_{fold}").mkdir(parents=True)
        torch.manual_seed(fold)
        network = build_network_from_preset(plans["configurations"]["2d"]["architecture"], 1, 4).eval()
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
        torch.save(
            {
                "network_weights": network.state_dict(),
                "trainer_name": "nnUNetTrainerLightEcho",
                "init_args": {"configuration": "2d", "fold": fold},
                "inference_allowed_mirroring_axes": None,
            },
            folder / f"fold_{fold}" / "checkpoint_final.pth",
        )
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    return folder


def _echo_frame(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """A grey-level frame with a zero background around a cone, like an ultrasound sector (crop-to-nonzero bites)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    cone = np.abs(cols - shape[1] / 2) < 0.45 * rows + 3
    image = ndimage.gaussian_filter(rng.uniform(0, 255, shape), 1.5) * 3 - 200
    return np.where(cone, np.clip(image, 1, 255), 0).astype(np.float32)


def _write_frame(path: Path, image: np.ndarray, spacing=(1.0, 1.0), origin=(3.0, -2.0)) -> None:
    itk = sitk.GetImageFromArray(image)
    itk.SetSpacing(spacing)
    itk.SetOrigin(origin)
    sitk.WriteImage(itk, str(path))


@pytest.fixture(scope="module")
def frames_folder(tmp_path_factory) -> Path:
    """Frames smaller than, equal to and larger than the patch (sliding window), and one at another spacing
    (resampled to 48x51, so batched, then exported by nnU-Net's resampling)."""
    folder = tmp_path_factory.mktemp("frames")
    for index, shape in enumerate([(60, 64), (64, 64), (64, 52), (80, 72)]):
        _write_frame(folder / f"case{index}_0000.nii.gz", _echo_frame(index, shape))
    _write_frame(folder / "case4_0000.nii.gz", _echo_frame(4, (60, 64)), spacing=(0.8, 0.8))
    return folder


def _nnunet_reference(model_folder: Path, frames_folder: Path, output: Path, folds=(0,)) -> Path:
    """nnU-Net's own predictor in-process, sequentially, without mirroring: what nnUNetv2_predict --disable_tta does."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_folder), folds)
    output.mkdir()
    predictor.predict_from_files_sequential(str(frames_folder), str(output), overwrite=True)
    return output


def _assert_same_masks(expected_folder: Path, actual_folder: Path, cases: list[str]) -> None:
    """Same geometry; at most 0.5 % of pixels differ (argmax near-ties: nnU-Net keeps logits in fp16) and Dice >= 0.99
    for every structure of at least 100 pixels (random weights leave some structures tiny)."""
    for case in cases:
        expected = sitk.ReadImage(str(expected_folder / f"{case}.nii.gz"))
        actual = sitk.ReadImage(str(actual_folder / f"{case}.nii.gz"))
        assert actual.GetSize() == expected.GetSize(), case
        assert actual.GetSpacing() == expected.GetSpacing() and actual.GetOrigin() == expected.GetOrigin(), case
        a, e = sitk.GetArrayFromImage(actual), sitk.GetArrayFromImage(expected)
        assert (a != e).mean() <= 0.005, case
        for label in LABELS.values():
            if (e == label).sum() >= 100:
                assert dice_score(a == label, e == label) >= 0.99, (case, label)


def test_load_trained_model(model_folder):
    model = load_trained_model(model_folder)
    assert model.folds == [0, 1] and model.trainer_name == "nnUNetTrainerLightEcho"
    assert model.patch_size == (PATCH, PATCH) and model.num_classes == 4
    assert not model.network.training
    assert load_trained_model(model_folder, ["1"]).folds == [1]
    with pytest.raises(InputError, match="missing checkpoint"):
        load_trained_model(model_folder, [3])
    with pytest.raises(InputError, match="fold.* 0 given more than once"):
        load_trained_model(model_folder, ["0", "0"])
    with pytest.raises(InputError, match="plans.json is missing"):
        load_trained_model(model_folder / "fold_0")


@pytest.mark.parametrize(
    "backend", ["torch", pytest.param("onnx", marks=needs_onnx), pytest.param("openvino", marks=needs_openvino)]
)
def test_fast_predictor_matches_nnunet(model_folder, frames_folder, tmp_path, backend):
    reference = _nnunet_reference(model_folder, frames_folder, tmp_path / "nnunet")
    summary = predict(
        model_folder,
        frames_folder,
        tmp_path / "fast",
        PredictorSettings(device="cpu", backend=backend, batch_size=3, cca=False),
        folds=[0],
        verbose=False,
    )
    assert summary["timing"]["frames"] == 5 and summary["backend"] == backend
    cases = [f"case{i}" for i in range(5)]
    _assert_same_masks(reference, tmp_path / "fast", cases)
    for name in ("dataset.json", "plans.json", "prediction_summary.json"):
        assert (tmp_path / "fast" / name).is_file()


def test_fold_ensemble_and_cca_match_nnunet(model_folder, frames_folder, tmp_path):
    reference = _nnunet_reference(model_folder, frames_folder, tmp_path / "nnunet", folds=(0, 1))
    predict(
        model_folder,
        frames_folder,
        tmp_path / "fast",
        PredictorSettings(device="cpu", backend="torch", cca=True),
        verbose=False,
    )
    cca_reference = tmp_path / "nnunet_cca"
    cca_reference.mkdir()
    for path in sorted(reference.glob("*.nii.gz")):
        image = sitk.ReadImage(str(path))
        filtered = sitk.GetImageFromArray(keep_largest_component_per_label(sitk.GetArrayFromImage(image), LABELS))
        filtered.CopyInformation(image)
        sitk.WriteImage(filtered, str(cca_reference / path.name))
    _assert_same_masks(cca_reference, tmp_path / "fast", [f"case{i}" for i in range(5)])


def test_cine_loop_is_segmented_frame_by_frame(model_folder, tmp_path):
    frames = np.stack([_echo_frame(10 + t, (64, 60)) for t in range(5)])
    cine = sitk.GetImageFromArray(frames)
    cine.SetSpacing((1.0, 1.0, 0.04))
    cine.SetOrigin((1.0, 2.0, 0.0))
    sitk.WriteImage(cine, str(tmp_path / "loop.nii.gz"))
    cine = sitk.ReadImage(str(tmp_path / "loop.nii.gz"))  # NIfTI stores spacing as float32
    predict(model_folder, tmp_path / "loop.nii.gz", tmp_path / "out", EAGER_CPU, folds=[0], verbose=False)
    masks = sitk.ReadImage(str(tmp_path / "out" / "loop.nii.gz"))
    assert masks.GetSize() == cine.GetSize() and masks.GetSpacing() == cine.GetSpacing()
    assert masks.GetOrigin() == cine.GetOrigin()
    # Each frame gets what the in-memory segmenter (one frame at a time) gives it.
    predictor = FastPredictor(load_trained_model(model_folder, [0]), EAGER_CPU, log=None)
    expected = np.stack([predictor(frame[None])[0] for frame in frames])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(masks), expected)
    np.testing.assert_array_equal(predictor(frames), expected)


@needs_openvino
def test_openvino_predictor_runs_short_batches_unpadded(model_folder):
    # One compiled model serves every batch size; only torch.compile and CUDA graphs need a fixed batch.
    predictor = FastPredictor(
        load_trained_model(model_folder, [0]), PredictorSettings(device="cpu", batch_size=4, cca=False), log=None
    )
    assert predictor.backend == "openvino" and not predictor.fixed_batch
    frames = np.random.default_rng(0).uniform(0, 255, (3, 48, 56)).astype(np.float32)
    reference = FastPredictor(load_trained_model(model_folder, [0]), EAGER_CPU, log=None)
    masks = predictor(frames)
    assert masks.shape == (3, 48, 56)
    assert (masks != reference(frames)).mean() <= 0.001  # other kernels, other rounding: near-ties may flip


def test_find_cases(tmp_path):
    for name in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "notes.txt"):
        (tmp_path / name).touch()
    with pytest.raises(InputError, match="case 'b'"):
        find_cases(tmp_path, ".nii.gz", num_channels=2)
    (tmp_path / "b_0001.nii.gz").touch()
    cases = find_cases(tmp_path, ".nii.gz", num_channels=2)
    assert [(c.name, [p.name for p in c.files]) for c in cases] == [
        ("a", ["a_0000.nii.gz", "a_0001.nii.gz"]),
        ("b", ["b_0000.nii.gz", "b_0001.nii.gz"]),
    ]
    single = find_cases(tmp_path / "a_0000.nii.gz", ".nii.gz")
    assert [(c.name, len(c.files)) for c in single] == [("a", 1)]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "patient0001_2CH_ED.nii.gz").touch()
    assert [c.name for c in find_cases(plain, ".nii.gz")] == ["patient0001_2CH_ED"]
    with pytest.raises(InputError, match="not an image"):
        find_cases(tmp_path / "notes.txt", ".nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        find_cases(tmp_path / "empty", ".nii.gz")
    with pytest.raises(FileNotFoundError):
        find_cases(tmp_path / "missing", ".nii.gz")
    # Two files of one channel, and a link to nothing, are errors rather than a case silently left out.
    (plain / "patient0001_2CH_ED_0000.nii.gz").touch()
    with pytest.raises(InputError, match="patient0001_2CH_ED.nii.gz and .*patient0001_2CH_ED_0000.nii.gz"):
        find_cases(plain, ".nii.gz")
    (plain / "patient0001_2CH_ED_0000.nii.gz").unlink()
    (plain / "patient0001_2CH_ES.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    with pytest.raises(InputError, match="missing file: .*patient0001_2CH_ES.nii.gz is a link"):
        find_cases(plain, ".nii.gz")
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a.mp4", "a.avi", "b.png"):
        (clips / name).touch()
    with pytest.raises(InputError, match="a.avi and .*a.mp4 share the case name 'a'"):
        find_cases(clips, ".nii.gz")


def test_predict_refuses_existing_output_and_bad_input(model_folder, frames_folder, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        predict(model_folder, frames_folder, tmp_path / "out", PredictorSettings(device="cpu"), verbose=False)
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken_0000.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="broken_0000.nii.gz"):
        predict(model_folder, tmp_path / "bad", tmp_path / "out2", EAGER_CPU, verbose=False)
    assert not (tmp_path / "out2").exists()


@needs_onnx
def test_export_onnx(model_folder, tmp_path):
    import onnx

    from nnunet_lightweight.inference.onnx_export import export_onnx

    previous = os.umask(0o022)
    try:
        result = export_onnx(model_folder, tmp_path / "model.onnx", fold=1)
    finally:
        os.umask(previous)
    assert result["fold"] == 1 and result["argmax_agreement"] > 0.999 and result["max_rel_diff"] < 1e-4
    # written through mkstemp (0600), the file must still get the umask's permissions like any output
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o644
    metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert metadata["trainer"] == "nnUNetTrainerLightEcho" and json.loads(metadata["patch_size"]) == [PATCH, PATCH]
    with pytest.raises(FileExistsError):
        export_onnx(model_folder, tmp_path / "model.onnx")
    # --overwrite replaces an export of ours, never a file of the user's
    export_onnx(model_folder, tmp_path / "model.onnx", fold=0, overwrite=True)
    (tmp_path / "notes.onnx").write_text("not a model")
    with pytest.raises(InputError, match="was not written by lightecho"):
        export_onnx(model_folder, tmp_path / "notes.onnx", overwrite=True)
    assert (tmp_path / "notes.onnx").read_text() == "not a model"


def test_cli_predict(model_folder, frames_folder, tmp_path, capsys):
    from nnunet_lightweight.cli import main

    argv = [
        "predict",
        "-m",
        str(model_folder),
        "-i",
        str(frames_folder),
        "-o",
        str(tmp_path / "out"),
        "-f",
        "0",
        "--device",
        "cpu",
        "--backend",
        "eager",
        "--batch-size",
        "2",
    ]
    assert main(argv) == 0
    assert len(list((tmp_path / "out").glob("case*.nii.gz"))) == 5
    assert main(argv) == 2  # existing output without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_video_input(model_folder, tmp_path):
    import imageio.v3 as iio

    pytest.importorskip("av")
    frames = np.stack([_echo_frame(20 + t, (64, 64)) for t in range(4)]).clip(0, 255).astype(np.uint8)
    iio.imwrite(tmp_path / "loop.avi", np.repeat(frames[..., None], 3, axis=-1), plugin="pyav", codec="mpeg4", fps=25)
    predict(model_folder, tmp_path / "loop.avi", tmp_path / "out", EAGER_CPU, folds=[0], verbose=False)
    masks = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "loop.nii.gz")))
    predictor = FastPredictor(load_trained_model(model_folder, [0]), EAGER_CPU, log=None)
    np.testing.assert_array_equal(masks, predictor(read_loop(tmp_path / "loop.avi").frames))


def test_dicom_clip_input(model_folder, tmp_path):
    pytest.importorskip("pydicom")
    from echo_clips import write_dicom

    frames = np.stack([_echo_frame(20 + t, (64, 64)) for t in range(3)]).clip(0, 255).astype(np.uint8)
    (tmp_path / "in").mkdir()
    write_dicom(tmp_path / "in" / "1.2.840.7", frames, photometric="MONOCHROME2", jpeg=False)  # no suffix: DICM
    assert [(c.name, c.video) for c in find_cases(tmp_path / "in", ".nii.gz")] == [("1.2.840.7", True)]
    predict(model_folder, tmp_path / "in", tmp_path / "out", EAGER_CPU, folds=[0], verbose=False)
    masks = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "1.2.840.7.nii.gz")))
    predictor = FastPredictor(load_trained_model(model_folder, [0]), EAGER_CPU, log=None)
    sequence = read_loop(tmp_path / "in" / "1.2.840.7")
    np.testing.assert_array_equal(masks, predictor(sequence.frames, spacing=sequence.spacing))


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_prediction_start_up_imports_no_trainer_dynamo_or_plotting(backend: str):
    """What `lightecho predict` loads before its first frame: torch and nnU-Net's inference pieces, not nnU-Net's
    trainer module and what it drags in (torch._dynamo, seaborn, matplotlib), which cost seconds per start; and
    the modules the command defers (pandas, scikit-image's io, ...) are still waiting after that frame."""
    code = (
        "import sys, numpy as np\n"
        "from nnunet_lightweight.core.deferred_imports import DeferredModule, defer_imports\n"
        "deferred = defer_imports()\n"
        "from nnunet_lightweight.cli import build_parser\n"
        "from nnunet_lightweight.inference.fast_predictor import FastPredictor\n"
        "from nnunet_lightweight.inference.model_folder import load_trained_model\n"
        "from nnunet_lightweight.inference.settings import PredictorSettings\n"
        "from nnunet_lightweight.pretrained import shipped_model_folder\n"
        "build_parser()\n"
        "predictor = FastPredictor(load_trained_model(shipped_model_folder()),"
        f" PredictorSettings(device='cpu', backend={backend!r}), log=None)\n"
        "predictor(np.random.default_rng(0).random((1, 64, 64), dtype=np.float32))\n"
        "heavy = ('torch._dynamo', 'seaborn', 'matplotlib', 'nnunetv2.training.nnUNetTrainer.nnUNetTrainer')\n"
        "print([name for name in heavy if name in sys.modules])\n"
        "print(sorted(deferred), [name for name in deferred if not isinstance(sys.modules[name], DeferredModule)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, deferred = out.stdout.strip().splitlines()[-2:]
    assert heavy == "[]", out.stdout[-2000:]
    assert deferred == f"{sorted(UNUSED_AT_START_UP)} []", out.stdout[-2000:]
