"""Issue 8: the published ResNet34 U-Net + SCSE and Improved ResUNet models as nnU-Net trainer variants."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.presets import load_preset
from nnunet_lightweight.network import build_network_from_preset
from nnunet_lightweight.network.improved_resunet import CLAHE
from nnunet_lightweight.training import discover_trainers
from nnunet_lightweight.training.published.cosine_annealing import CosineAnnealingEpochLR
from nnunet_lightweight.training.published.nnUNetTrainerImprovedResUNet import nnUNetTrainerImprovedResUNet
from nnunet_lightweight.training.published.nnUNetTrainerResNet34UNetSCSE import (
    ENCODER_WEIGHTS_ENV,
    nnUNetTrainerResNet34UNetSCSE,
)

SYNTHETIC_ID = 931
SIZE = 64


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_resnet34_unet_scse_size_and_deep_supervision():
    network = build_network_from_preset(load_preset("resnet34_unet_scse"), 1, 4, deep_supervision=True)
    # Published: 24.5M. smp's ResNet34 encoder on one channel is torchvision's ResNet34 without its classifier.
    assert abs(n_parameters(network) - 24.5e6) <= 0.05 * 24.5e6
    assert n_parameters(network.encoder) == 21_278_400
    x = torch.randn(2, 1, SIZE, SIZE)
    outputs = network(x)
    assert isinstance(outputs, list) and len(outputs) == len(
        load_preset("resnet34_unet_scse")["arch_kwargs"]["features_per_stage_decoder"]
    )
    assert all(o.shape == (2, 4, SIZE, SIZE) for o in outputs)  # auxiliary logits upsampled to full size
    network.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
    network.eval()
    with torch.no_grad():
        single = network(x)
        assert torch.equal(single, network(x))
    assert single.shape == (2, 4, SIZE, SIZE)


def test_improved_resunet_follows_table_1():
    network = build_network_from_preset(load_preset("improved_resunet"), 1, 4)
    # Documented count (README): 52.2M with the assumptions in network/improved_resunet.py.
    assert n_parameters(network) == 52_201_392
    assert n_parameters(network.clahe) == 0
    skips = network.encoder(torch.randn(1, 1, SIZE, SIZE))
    assert [tuple(s.shape[1:]) for s in skips] == [
        (64, 64, 64),
        (128, 32, 32),
        (256, 16, 16),
        (512, 8, 8),
        (1024, 4, 4),
    ]
    activations = {type(m) for m in network.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Mish, nn.GELU))}
    assert activations == {nn.LeakyReLU}
    x = torch.randn(2, 1, SIZE, SIZE)
    assert network(x).shape == (2, 4, SIZE, SIZE)
    network.decoder.deep_supervision = True  # nnU-Net switches it on after its final validation
    outputs = network(x)
    assert isinstance(outputs, list) and len(outputs) == 1 and outputs[0].shape == (2, 4, SIZE, SIZE)


def test_clahe_close_to_scikit_image():
    from skimage.exposure import equalize_adapthist

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    # Speckle over a bright blob: strong local contrast differences for CLAHE to even out.
    image = rng.gamma(2.0, 1.0, (256, 256)) * (0.2 + 0.8 * np.exp(-((yy - 128) ** 2 + (xx - 85) ** 2) / 4700))
    ours = CLAHE(clip_limit=2.0, grid_size=(8, 8))(torch.from_numpy(image).float()[None, None])[0, 0].numpy()
    rescaled = (image - image.min()) / (image.max() - image.min())
    # The same limit in counts: OpenCV/kornia clip 2.0 on 256 bins is scikit-image's 2 / 256.
    reference = equalize_adapthist(rescaled, kernel_size=(32, 32), clip_limit=2 / 256, nbins=256)
    # The libraries redistribute clipped counts and interpolate between tiles differently (mean difference
    # about 0.04 on [0, 1]), yet both change the image far more than they differ from each other.
    difference = np.abs(ours - reference).mean()
    assert difference < 0.05
    assert np.corrcoef(ours.ravel(), reference.ravel())[0, 1] > 0.99
    assert np.abs(ours - rescaled).mean() > 2 * difference


def test_cosine_schedule_driven_by_epoch_calls():
    parameters = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.AdamW([{"params": parameters[:1], "lr": 3e-4}, {"params": parameters[1:], "lr": 3e-5}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scheduler = CosineAnnealingEpochLR(optimizer, max_epochs=100, min_lr=1e-6)
        lrs = {}
        for epoch in (0, 50, 100, 25):  # nnU-Net passes the epoch; a resumed run starts anywhere
            scheduler.step(epoch)
            lrs[epoch] = [g["lr"] for g in optimizer.param_groups]
    assert lrs[0] == pytest.approx([3e-4, 3e-5])
    assert lrs[50] == pytest.approx([(3e-4 + 1e-6) / 2, (3e-5 + 1e-6) / 2])
    assert lrs[100] == pytest.approx([1e-6, 1e-6])
    torch_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=3e-4), T_max=100, eta_min=1e-6
    )
    for _ in range(25):
        torch_scheduler.optimizer.step()
        torch_scheduler.step()
    assert lrs[25][0] == pytest.approx(torch_scheduler.get_last_lr()[0])


def test_trainers_registered_with_complete_architectures():
    trainers = discover_trainers()
    plans = {
        "configurations": {
            "2d": {
                "batch_size": 49,
                "patch_size": [224, 224],
                "median_image_size_in_voxels": [223, 223],
                "architecture": {"network_class_name": "PlainConvUNet"},
            }
        }
    }
    for trainer, batch in ((nnUNetTrainerResNet34UNetSCSE, 4), (nnUNetTrainerImprovedResUNet, 16)):
        assert trainers[trainer.__name__] is trainer
        config = trainer.lightecho_plans(plans, "2d")["configurations"]["2d"]
        assert config["patch_size"] == [224, 224] and config["batch_size"] == batch
        network = build_network_from_preset(trainer.architecture(), 1, 4)  # what the benchmark builds
        assert type(network).__module__ + "." + type(network).__name__ == trainer.architecture()["network_class_name"]


def test_encoder_weights_from_local_file(tmp_path):
    from torchvision.models import resnet34

    network = build_network_from_preset(load_preset("resnet34_unet_scse"), 1, 4)
    reference = resnet34(weights=None).state_dict()  # the layout of torchvision's ImageNet file
    path = tmp_path / "resnet34.pth"
    torch.save(reference, path)
    network.load_encoder_weights(path)
    encoder = network.encoder.state_dict()
    assert torch.equal(encoder["layer3.2.conv1.weight"], reference["layer3.2.conv1.weight"])
    assert torch.allclose(encoder["conv1.weight"], reference["conv1.weight"].sum(1, keepdim=True))

    wrong = tmp_path / "resnet18.pth"
    torch.save({k: v for k, v in reference.items() if not k.startswith("layer4")}, wrong)
    with pytest.raises(InputError, match="resnet18.pth"):
        network.load_encoder_weights(wrong)
    with pytest.raises(FileNotFoundError):
        network.load_encoder_weights(tmp_path / "missing.pth")


# --- Training and prediction through nnU-Net on a tiny synthetic dataset -------------------------------------


def _synthetic_frame(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 64x64 'apical view': LV ellipse inside a myocardium ring, LA below, speckle-like intensities."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(float)
    cy, cx = 26 + rng.integers(-3, 4), 32 + rng.integers(-3, 4)
    r = ((yy - cy) / 16) ** 2 + ((xx - cx) / 9) ** 2
    seg = np.zeros((SIZE, SIZE), np.uint8)
    seg[r < 1.6] = 2
    seg[r < 1] = 1
    seg[((yy - cy - 26) / 7) ** 2 + ((xx - cx) / 8) ** 2 < 1] = 3
    brightness = np.array([0.3, 0.1, 1.0, 0.15])[seg]
    return (rng.gamma(2.0, 40.0, seg.shape) * brightness).astype(np.float32), seg


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory, nnunet_environment):
    """Six synthetic frames planned and preprocessed by nnU-Net (default 2d plans), fold 0 = 4 train / 2 val."""
    import SimpleITK as sitk
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    from nnunet_lightweight.planning.plan import plan

    base = tmp_path_factory.mktemp("published_models")
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in nnunet_environment(base).items():
            monkeypatch.setenv(name, value)
        raw = base / "nnUNet_raw" / f"Dataset{SYNTHETIC_ID}_Synthetic"
        (raw / "imagesTr").mkdir(parents=True)
        (raw / "labelsTr").mkdir()
        rng = np.random.default_rng(0)
        cases = [f"case{i}" for i in range(6)]
        for case in cases:
            image, seg = _synthetic_frame(rng)
            sitk.WriteImage(sitk.GetImageFromArray(image), str(raw / "imagesTr" / f"{case}_0000.nii.gz"))
            sitk.WriteImage(sitk.GetImageFromArray(seg), str(raw / "labelsTr" / f"{case}.nii.gz"))
        generate_dataset_json(
            str(raw),
            {0: "echo"},
            {"background": 0, "LV": 1, "MYO": 2, "LA": 3},
            len(cases),
            ".nii.gz",
            dataset_name=raw.name,
        )
        preprocessed = base / "nnUNet_preprocessed" / raw.name
        preprocessed.mkdir()
        (preprocessed / "splits_final.json").write_text(json.dumps([{"train": cases[:4], "val": cases[4:]}]))
        plan(SYNTHETIC_ID, num_processes=1)
        yield {
            "raw": raw,
            "preprocessed": preprocessed,
            "monkeypatch": monkeypatch,
            "plans": json.loads((preprocessed / "nnUNetPlans.json").read_text()),
            "dataset_json": json.loads((preprocessed / "dataset.json").read_text()),
        }


class _ResNet34UNetSCSE_Tiny(nnUNetTrainerResNet34UNetSCSE):
    plans_batch_size = 2


class _ImprovedResUNet_Tiny(nnUNetTrainerImprovedResUNet):
    plans_batch_size = 2


def _initialized_trainer(trainer_class, dataset):
    plans = {**dataset["plans"], "continue_training": False}  # as nnUNetv2_train's get_trainer_from_args sets it
    trainer = trainer_class(plans, "2d", 0, dataset["dataset_json"], device=torch.device("cpu"))
    trainer.initialize()
    return trainer


def test_resnet34_training_step(synthetic_dataset, tmp_path):
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from torchvision.models import resnet34

    weights = tmp_path / "encoder.pth"
    torch.save(resnet34(weights=None).state_dict(), weights)
    synthetic_dataset["monkeypatch"].setenv(ENCODER_WEIGHTS_ENV, str(weights))
    try:
        trainer = _initialized_trainer(_ResNet34UNetSCSE_Tiny, synthetic_dataset)
    finally:
        synthetic_dataset["monkeypatch"].delenv(ENCODER_WEIGHTS_ENV)
    saved = torch.load(weights, weights_only=True)
    assert torch.equal(trainer.network.encoder.layer2[0].conv1.weight, saved["layer2.0.conv1.weight"])

    optimizer = trainer.optimizer
    assert isinstance(optimizer, torch.optim.AdamW)
    decoder_group, encoder_group = optimizer.param_groups
    assert (decoder_group["lr"], encoder_group["lr"]) == (3e-4, 3e-5)
    assert decoder_group["weight_decay"] == encoder_group["weight_decay"] == 1e-4
    assert {id(p) for p in encoder_group["params"]} == {id(p) for p in trainer.network.encoder.parameters()}
    assert isinstance(trainer.loss, DeepSupervisionWrapper)
    assert list(trainer.loss.weight_factors) == [1.0, 0.1, 0.1, 0.1, 0.1]
    assert (trainer.loss.loss.weight_dice, trainer.loss.loss.weight_ce) == (0.7, 0.3)
    _check_training_step(trainer)


def test_improved_resunet_training_step(synthetic_dataset):
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss

    trainer = _initialized_trainer(_ImprovedResUNet_Tiny, synthetic_dataset)
    assert isinstance(trainer.optimizer, torch.optim.Adam) and trainer.optimizer.param_groups[0]["lr"] == 1e-4
    assert isinstance(trainer.loss, DC_and_CE_loss)
    assert (trainer.loss.weight_dice, trainer.loss.weight_ce) == (1.0, 1.0)
    _check_training_step(trainer)


def _check_training_step(trainer) -> None:
    """One nnU-Net training step on a batch of its own data loader changes the weights with a finite loss."""
    loader, _ = trainer.get_dataloaders()
    batch = next(loader)
    assert tuple(batch["data"].shape) == (2, 1, SIZE, SIZE)
    trainer.network.train()
    before = [p.detach().clone() for p in trainer.network.parameters()]
    loss = trainer.train_step(batch)["loss"]
    assert np.isfinite(loss) and loss > 0
    changed = [not torch.equal(b, p) for b, p in zip(before, trainer.network.parameters())]
    assert sum(changed) > 0.9 * len(changed)


def test_clahe_identical_in_training_and_prediction(synthetic_dataset):
    """The frame nnU-Net preprocessed for training and the raw file nnUNetPredictor reads get the same CLAHE."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    trainer = _initialized_trainer(_ImprovedResUNet_Tiny, synthetic_dataset)
    network = trainer.network
    seen = []
    network.clahe.register_forward_hook(lambda module, args, output: seen.append((args[0].clone(), output.clone())))

    dataset_tr, _ = trainer.get_tr_and_val_datasets()
    data = dataset_tr.load_case("case0")[0]
    network.train()
    network(torch.from_numpy(np.asarray(data[:, 0]))[None].float())  # 2d: (channels, 1, y, x) on disk

    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=False,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        trainer.plans_manager,
        trainer.configuration_manager,
        [network.state_dict()],
        trainer.dataset_json,
        type(trainer).__name__,
        None,
    )
    image, properties = SimpleITKIO().read_images([str(synthetic_dataset["raw"] / "imagesTr" / "case0_0000.nii.gz")])
    segmentation = predictor.predict_single_npy_array(image, {"spacing": properties["spacing"]})
    assert segmentation.shape == image.shape[1:]
    assert not network.training

    (train_input, train_clahe), (predict_input, predict_clahe) = seen
    torch.testing.assert_close(predict_input, train_input, atol=1e-5, rtol=1e-5)  # same nnU-Net preprocessing
    torch.testing.assert_close(predict_clahe, train_clahe, atol=1e-5, rtol=1e-5)
    assert (
        train_clahe - (train_input - train_input.min()) / (train_input.max() - train_input.min())
    ).abs().mean() > 0.05  # CLAHE changes the frame, it is not an identity
