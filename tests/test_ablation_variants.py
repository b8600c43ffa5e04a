"""Issue 6: every ablation variant resolves through nnU-Net, builds, trains one step on CPU, and has the paper's size;
one variant goes through the real runner (training subprocess, evaluation, table, resume)."""

import json
from copy import deepcopy

import numpy as np
import pandas as pd
import pytest
import torch
from ablation_dataset import write_phantom_dataset, write_single_fold_split
from torch import nn

from nnunet_lightweight.core.presets import load_preset
from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho
from nnunet_lightweight.training.variants.lr_schedule.nnUNetTrainerLightEcho_ReduceLROnPlateau import (
    ValidationLossPlateau,
)
from nnunet_lightweight.workflows.ablation import fold_folder, run_ablation, training_state
from nnunet_lightweight.workflows.ablation_variants import (
    FINAL_TRAINER,
    LADDER,
    NNUNET_ABLATIONS,
    ablation_variants,
    count_variant_parameters,
    list_variants,
)

VARIANTS = list(ablation_variants())
DATASET_ID = 961


@pytest.fixture(scope="module")
def phantom_dataset(tmp_path_factory, nnunet_environment):
    """20 synthetic 64x64 frames preprocessed by nnU-Net (lightecho plan); fold 0 validates on 4 of them."""
    from nnunet_lightweight.planning.plan import plan

    base = tmp_path_factory.mktemp("ablation_variants")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in nnunet_environment(base, processes=1).items():
            patch.setenv(name, value)
        name, cases = write_phantom_dataset(base / "nnUNet_raw", DATASET_ID)
        write_single_fold_split(base / "nnUNet_preprocessed" / name, cases, n_val=4)
        plan(DATASET_ID, num_processes=1)
        preprocessed = base / "nnUNet_preprocessed" / name
        yield {
            "name": name,
            "base": base,
            "preprocessed": preprocessed,
            "plans": json.loads((preprocessed / "nnUNetPlans.json").read_text()),
            "dataset_json": json.loads((preprocessed / "dataset.json").read_text()),
        }


def test_every_variant_is_found_by_nnunet_trainer_lookup():
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    assert len(VARIANTS) >= 25
    assert VARIANTS[0] == "nnUNetTrainerLightEcho_UNet1Baseline"
    for name, cls in ablation_variants().items():
        assert recursive_find_trainer_class_by_name(name) is cls, name
    assert set(LADDER) - {"cca"} <= set(VARIANTS) and set(NNUNET_ABLATIONS) <= set(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_builds_and_trains_one_step_on_cpu(name, phantom_dataset):
    plans = {**deepcopy(phantom_dataset["plans"]), "continue_training": False}
    trainer = ablation_variants()[name](
        plans=plans,
        configuration="2d",
        fold=0,
        dataset_json=phantom_dataset["dataset_json"],
        device=torch.device("cpu"),
    )
    trainer.configuration_manager.configuration["batch_size"] = 2  # CPU-sized; U-Net 3 alone has 31M parameters
    trainer.initialize()
    assert sum(p.numel() for p in trainer.network.parameters()) == count_variant_parameters(
        name, phantom_dataset["plans"], phantom_dataset["dataset_json"]
    )
    dataloader, _ = trainer.get_dataloaders()
    batch = next(dataloader)  # the variant's own training transforms on real preprocessed frames
    assert isinstance(batch["target"], list) == trainer.enable_deep_supervision
    before = [p.detach().clone() for p in trainer.network.parameters()]
    loss = float(trainer.train_step(batch)["loss"])
    assert np.isfinite(loss)  # nnU-Net's Dice term is the negative soft Dice, so losses can be negative
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.network.parameters()))


def test_table_iii_parameter_counts_within_ten_percent():
    paper = {
        "nnUNetTrainerLightEcho_UNet0": 119e3,
        "nnUNetTrainerLightEcho_UNet1Baseline": 2e6,
        FINAL_TRAINER: 2e6,
        "nnUNetTrainerLightEcho_UNet2": 11e6,
        "nnUNetTrainerLightEcho_UNet3": 31e6,
        "nnUNetTrainer_100epochs": 33e6,
    }
    for name, expected in paper.items():
        assert abs(count_variant_parameters(name) / expected - 1) <= 0.10, name
    # U-Net 1 without normalization is CAMUS's 1,976,644 parameters plus LightEcho's four auxiliary 1x1 heads.
    heads = (128 + 128 + 64 + 32) * 4 + 4 * 4
    assert count_variant_parameters("nnUNetTrainerLightEcho_UNet1Baseline") == 1_976_644 + heads
    counts = dict(list_variants())
    assert list(counts) == VARIANTS and counts[FINAL_TRAINER] == count_variant_parameters(FINAL_TRAINER)


def test_table_iii_channels_lowest_resolution_batch_size_and_scheduler():
    table_iii = {
        "unet0": (16, 64, 16, 64, 64),
        "lightecho": (32, 128, 16, 8, 32),
        "unet2": (64, 512, 32, 8, 16),
        "unet3": (64, 1024, 64, 16, 8),
    }
    for preset, (start, deepest, final, lowest, batch) in table_iii.items():
        config = load_preset(preset)
        kwargs = config["arch_kwargs"]
        assert (
            kwargs["features_per_stage"][0],
            max(kwargs["features_per_stage"]),
            kwargs["features_per_stage_decoder"][-1],
        ) == (start, deepest, final), preset
        assert 256 // int(np.prod(kwargs["strides"], axis=0)[0]) == lowest, preset
        assert config["batch_size"] == batch, preset
    variants = ablation_variants()
    for size in ("UNet0", "UNet2", "UNet3"):
        cls = variants[f"nnUNetTrainerLightEcho_{size}"]
        assert cls.network_preset == size.lower()
        assert cls.configure_optimizers is not nnUNetTrainerLightEcho.configure_optimizers


def test_ladder_adds_one_component_per_step():
    variants = ablation_variants()
    steps = [variants[name] for name in LADDER if name != "cca"][:6]
    baseline = steps[0]
    assert (baseline.norm_op, baseline.nonlin, baseline.augmentation) == (nn.Identity, nn.ReLU, "none")
    assert (baseline.dice_weight, baseline.ce_weight, baseline.deep_supervision) == (1.0, 0.0, False)
    assert baseline.architecture()["arch_kwargs"]["norm_op"] == "torch.nn.modules.linear.Identity"
    knobs = ("norm_op", "nonlin", "augmentation", "dice_weight", "deep_supervision")
    changed = [[k for k in knobs if getattr(a, k) != getattr(b, k)] for a, b in zip(steps[:-1], steps[1:-1])]
    assert changed == [["norm_op"], ["nonlin"], ["augmentation"], ["dice_weight"]]
    # The last step is the final model itself: the same network (its preset's BN and Mish), plus deep supervision.
    assert steps[-1] is nnUNetTrainerLightEcho
    dice_ce = steps[-2]
    assert dice_ce.architecture() == nnUNetTrainerLightEcho.architecture()
    recipe = (
        "augmentation",
        "dice_weight",
        "ce_weight",
        "deep_supervision",
        "deep_supervision_weight",
        "plans_batch_size",
        "learning_rate",
        "max_epochs",
        "patience",
    )
    assert [k for k in recipe if getattr(dice_ce, k) != getattr(nnUNetTrainerLightEcho, k)] == ["deep_supervision"]


def test_plateau_schedule_ignores_epoch_calls_and_reduces_on_stalled_validation_loss():
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = ValidationLossPlateau(optimizer)
    for epoch in range(30):
        schedule.step(epoch)  # nnU-Net's epoch-start call
    assert optimizer.param_groups[0]["lr"] == 1e-3
    schedule.report(1.0)
    for _ in range(10):
        schedule.report(1.0)
    assert optimizer.param_groups[0]["lr"] == 1e-3  # 10 epochs without improvement: patience not yet exceeded
    schedule.report(1.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_size_variant_steps_plateau_with_logged_validation_loss(phantom_dataset):
    plans = {**deepcopy(phantom_dataset["plans"]), "continue_training": False}
    trainer = ablation_variants()["nnUNetTrainerLightEcho_UNet0"](
        plans=plans,
        configuration="2d",
        fold=0,
        dataset_json=phantom_dataset["dataset_json"],
        device=torch.device("cpu"),
    )
    trainer.initialize()
    assert isinstance(trainer.lr_scheduler, ValidationLossPlateau)
    trainer.logger.plot_progress_png = lambda folder: None  # nnU-Net's progress plot is not under test here
    learning_rates = []
    for epoch in range(13):
        trainer.on_epoch_start()
        trainer.on_train_epoch_start()
        learning_rates.append(trainer.optimizer.param_groups[0]["lr"])
        for key, value in (
            ("train_losses", 1.0),
            ("val_losses", 1.0),
            ("mean_fg_dice", 0.5),
            ("dice_per_class_or_region", [0.5, 0.5, 0.5]),
        ):
            trainer.logger.log(key, value, epoch)
        trainer.on_epoch_end()
    assert learning_rates[:12] == [1e-3] * 12 and learning_rates[12] == pytest.approx(1e-4)


def test_runner_trains_evaluates_and_resumes_a_real_variant(phantom_dataset, monkeypatch, tmp_path, nnunet_environment):
    for name, value in nnunet_environment(phantom_dataset["base"]).items():
        monkeypatch.setenv(name, value)
    trainer = "nnUNetTrainerLightEcho_UNet1Baseline"
    out = tmp_path / "ablation"
    table = run_ablation(DATASET_ID, 0, out, [trainer, "cca"], device="cpu", max_epochs=1)
    folder = fold_folder(phantom_dataset["name"], trainer, 0)
    assert training_state(folder) == "finished", (out / "logs" / f"{trainer}__fold_0.log").read_text()[-3000:]
    assert list(table["step"]) == ["Baseline", "Postprocessing", "Final"]
    assert table.loc[0, "decision"] == "reference" and table.loc[0, "epochs"] == 1
    assert table.loc[0, "params"] == count_variant_parameters(trainer) and table.loc[0, "frames"] == 4
    assert table.loc[1, "postprocessing"] == "cca" and table.loc[1, "decision"] in ("keep", "discard")
    assert 0 <= table.loc[0, "dice_LV"] <= 1 and table.loc[0, "hd_LV"] >= 0
    csv = pd.read_csv(out / "ablation.csv")
    assert list(csv.columns[:2]) == ["step", "trainer"] and {"p_dice", "p_hd", "outliers"} <= set(csv.columns)
    markdown = (out / "ablation.md").read_text()
    assert "smoke/test schedule" in markdown and trainer in markdown and (out / "ablation.png").stat().st_size > 0
    # A rerun finds the finished training and only re-evaluates: same numbers, no new training log entry.
    log = (out / "logs" / f"{trainer}__fold_0.log").read_text()
    again = run_ablation(DATASET_ID, 0, out, [trainer, "cca"], device="cpu", max_epochs=1)
    pd.testing.assert_frame_equal(table, again)
    assert (out / "logs" / f"{trainer}__fold_0.log").read_text() == log
