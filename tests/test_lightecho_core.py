"""Issue 2: the LightEcho network, its trainer and planner, driven by the stock nnU-Net commands."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from nnunet_lightweight import build_lightecho_network
from nnunet_lightweight.core.presets import load_preset
from nnunet_lightweight.network import LightEchoUNet, build_network_from_preset
from nnunet_lightweight.training.augmentation import RandomAffineTransform
from nnunet_lightweight.training.nnUNetTrainerLightEcho import PatienceExhausted, nnUNetTrainerLightEcho


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_default_network_size_and_logits():
    network = build_lightecho_network(1, 4).eval()
    assert 1_950_000 <= n_parameters(network) <= 2_050_000
    # Without normalization the paper's U-Net 1 has exactly 1,976,644 parameters; BN and the DS heads add the rest.
    preset = load_preset("lightecho")
    preset["arch_kwargs"].update(norm_op=None, norm_op_kwargs=None)
    plain = build_network_from_preset(preset, 1, 4)
    heads = sum(n_parameters(h) for h in plain.decoder.seg_layers[:-1])
    assert n_parameters(plain) - heads == 1_976_644
    with torch.no_grad():
        for size in (224, 256):
            logits = network(torch.randn(2, 1, size, size))
            assert logits.shape == (2, 4, size, size)
            assert not torch.allclose(logits.softmax(1).sum(1), logits.sum(1))  # raw logits, no softmax


def test_deep_supervision_switch():
    network = build_lightecho_network(1, 4, deep_supervision=True)
    outputs = network(torch.randn(1, 1, 224, 224))
    assert isinstance(outputs, list) and len(outputs) == 5
    assert all(o.shape == (1, 4, 224, 224) for o in outputs)  # auxiliary heads upscaled to full resolution
    network.decoder.deep_supervision = False
    assert network(torch.randn(1, 1, 224, 224)).shape == (1, 4, 224, 224)


@pytest.mark.parametrize(
    "overrides",
    [
        {"upsampling": "transpconv"},
        {"residual": True},
        {"norm_op": nn.InstanceNorm2d, "nonlin": nn.GELU, "nonlin_kwargs": {}},
    ],
)
def test_network_is_configured_not_rewritten(overrides):
    kwargs = {
        **load_preset("lightecho")["arch_kwargs"],
        "conv_op": nn.Conv2d,
        "norm_op": nn.BatchNorm2d,
        "nonlin": nn.Mish,
        **overrides,
    }
    network = LightEchoUNet(input_channels=1, num_classes=4, **kwargs)
    assert network(torch.randn(1, 1, 64, 64)).shape == (1, 4, 64, 64)
    assert n_parameters(network) != n_parameters(build_lightecho_network(1, 4)) or "norm_op" in overrides


def test_trainer_plans_use_lightecho_on_whole_frames():
    plans = {
        "configurations": {
            "2d": {
                "batch_size": 49,
                "patch_size": [224, 224],
                "median_image_size_in_voxels": [223, 250],
                "architecture": {"network_class_name": "PlainConvUNet"},
            }
        }
    }
    config = nnUNetTrainerLightEcho.lightecho_plans(plans, "2d")["configurations"]["2d"]
    assert config["batch_size"] == 32
    assert config["patch_size"] == [224, 256]
    assert config["architecture"]["network_class_name"] == "nnunet_lightweight.network.LightEchoUNet"
    assert plans["configurations"]["2d"]["batch_size"] == 49  # the caller's plans are not modified


def test_trainer_found_by_nnunet_lookup_in_clean_environment(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "nnUNet_raw": str(tmp_path),
        "nnUNet_preprocessed": str(tmp_path),
        "nnUNet_results": str(tmp_path),
    }
    code = (
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find;"
        "c = find('nnUNetTrainerLightEcho'); print(c.__module__, c.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == (
        "nnunet_lightweight.training.nnUNetTrainerLightEcho nnUNetTrainerLightEcho"
    )


def test_trainer_lookup_shortcut_agrees_with_nnunet():
    """The one shortcut (`find_trainer_class` takes this package's trainers from `discover_trainers`) gives the class
    nnU-Net's own recursive lookup finds, for every trainer of this package and for one of nnU-Net's tree."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_lightweight.inference.model_folder import find_trainer_class, package_trainer_names
    from nnunet_lightweight.training import discover_trainers

    trainers = discover_trainers()
    assert "nnUNetTrainerLightEcho_CPU1h" in trainers and len(trainers) > 20
    assert package_trainer_names() == set(trainers)  # the names read from the sources are the classes
    for name, cls in trainers.items():
        assert find_trainer_class(name) is cls is recursive_find_trainer_class_by_name(name), name
        # load_trained_model builds these trainers' networks with nnUNetTrainer's own get_network_from_plans call
        assert cls.build_network_architecture is nnUNetTrainer.build_network_architecture, name
    assert find_trainer_class("nnUNetTrainer_100epochs") is recursive_find_trainer_class_by_name(
        "nnUNetTrainer_100epochs"
    )


def test_fold_detection_agrees_with_nnunet(tmp_path):
    """`available_folds` finds the folds nnU-Net's predictor auto-detects: fold_X with the checkpoint, sorted, and
    neither fold_all, a fold without the checkpoint, nor a fold_ folder with another suffix."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_lightweight.inference.model_folder import DEFAULT_CHECKPOINT, available_folds

    for fold, has_checkpoint in [("10", True), ("2", True), ("all", True), ("1", False), ("x", True)]:
        (tmp_path / f"fold_{fold}").mkdir()
        if has_checkpoint:
            (tmp_path / f"fold_{fold}" / DEFAULT_CHECKPOINT).touch()
    (tmp_path / "fold_3").touch()  # a file, not a fold folder
    with pytest.raises(ValueError):  # nnU-Net's int() of the suffix: it would fail on fold_x, so leave it out there
        nnUNetPredictor.auto_detect_available_folds(str(tmp_path), DEFAULT_CHECKPOINT)
    (tmp_path / "fold_x" / DEFAULT_CHECKPOINT).unlink()
    expected = nnUNetPredictor.auto_detect_available_folds(str(tmp_path), DEFAULT_CHECKPOINT)
    assert available_folds(tmp_path) == sorted(expected) == [2, 10]


def _marker_sample() -> tuple[torch.Tensor, torch.Tensor]:
    """Three blobs in an asymmetric layout; the image intensity equals the label inside each blob."""
    seg = torch.zeros(1, 96, 96, dtype=torch.int16)
    seg[0, 20:40, 20:35] = 1
    seg[0, 20:40, 60:80] = 2
    seg[0, 62:82, 25:45] = 3
    return seg.float(), seg


def test_affine_augmentation_ranges_alignment_and_no_flips():
    torch.manual_seed(0)
    transform = RandomAffineTransform(p=1.0)
    for _ in range(100):
        image, seg = _marker_sample()
        params = transform.get_parameters(image=image)
        assert abs(math.degrees(params["angle"])) <= 10 and 0.8 <= params["scale"] <= 1.1
        assert params["shift_xy"].abs().max() <= 0.1
        out = transform.apply({"image": image, "segmentation": seg}, **params)
        warped_image, warped_seg = out["image"][0], out["segmentation"][0]
        centroids = {}
        for label in (1, 2, 3):
            mask = warped_seg == label
            assert mask.sum() > 100
            # image (bilinear) and labels (nearest) moved together: inside a label the image has its value
            assert abs(warped_image[mask].median().item() - label) < 0.05
            centroids[label] = torch.nonzero(mask).float().mean(0)
        # no mirroring: blob 1 stays left of blob 2 and above blob 3
        assert centroids[1][1] < centroids[2][1] and centroids[1][0] < centroids[3][0]


class _History:
    def __init__(self, ema):
        self.ema = ema

    def get_value(self, key, step):
        assert key == "ema_fg_dice" and step is None
        return self.ema


def test_early_stopping_state_comes_from_the_checkpointed_logs():
    trainer = object.__new__(nnUNetTrainerLightEcho)
    trainer.logger = _History([0.1, 0.4, 0.3, 0.35, 0.2])
    assert trainer.epochs_since_best() == 3
    trainer.patience = 3
    with pytest.raises(PatienceExhausted):
        trainer.on_train_epoch_start()


def test_nnunet_train_predict_and_resume(trained_lightecho):
    info, env = trained_lightecho, trained_lightecho["env"]
    fold = info["results_folder"] / "fold_0"
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["inference_allowed_mirroring_axes"] is None and checkpoint["current_epoch"] == 1
    saved_plans = json.loads((info["results_folder"] / "plans.json").read_text())
    assert (
        saved_plans["configurations"]["2d"]["architecture"]["network_class_name"]
        == "nnunet_lightweight.network.LightEchoUNet"
    )
    assert "Restored the weights of checkpoint_best.pth" in info["train_log"]
    assert len(list((fold / "validation").glob("*.nii.gz"))) == 8  # 2 held-out patients x 4 frames

    predict_in = info["results_folder"].parent / "predict_in"
    predict_in.mkdir()
    for image in sorted(info["images_dir"].glob("patient0007_*"))[:2]:
        (predict_in / image.name).symlink_to(image)
    predict_out = predict_in.parent / "predict_out"
    subprocess.run(
        [
            "nnUNetv2_predict",
            "-i",
            str(predict_in),
            "-o",
            str(predict_out),
            "-d",
            str(info["dataset_id"]),
            "-c",
            "2d",
            "-f",
            "0",
            "-tr",
            info["trainer"],
            "-device",
            "cpu",
            "-npp",
            "1",
            "-nps",
            "1",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    import SimpleITK as sitk

    for image in predict_in.iterdir():
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(predict_out / image.name.replace("_0000", ""))))
        assert mask.shape == sitk.GetArrayFromImage(sitk.ReadImage(str(image))).shape
        assert set(np.unique(mask)) <= {0, 1, 2, 3}

    resumed = subprocess.run(
        ["nnUNetv2_train", str(info["dataset_id"]), "2d", "0", "-tr", info["trainer"], "-device", "cpu", "--c"],
        env={**env, "LIGHTECHO_TEST_EPOCHS": "2"},
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 1" in resumed.stdout and "Epoch 0" not in resumed.stdout
    checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["current_epoch"] == 2 and len(checkpoint["logging"]["ema_fg_dice"]) == 2


def test_inference_logits_fit_nnunets_fp16_accumulation():
    network = build_lightecho_network(1, 4).eval()
    with torch.no_grad():
        network.decoder.seg_layers[-1].weight.mul_(1e5)  # logits far beyond fp16 range, as an unnormalized net
        x = torch.randn(2, 1, 64, 64)
        raw = network.decoder(network.encoder(x))
        logits = network(x)
    assert raw.abs().max() > 65504 / 10
    assert logits.max() == 0 and logits.min() >= -1000
    assert torch.equal(logits.argmax(1), raw.argmax(1))
