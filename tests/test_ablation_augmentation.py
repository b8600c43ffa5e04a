"""Issue 6: the Table II augmentation configurations sample within the paper's ranges (checked on sampled values)."""

import math

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform

from nnunet_lightweight.training.augmentation import AUGMENTATIONS, TABLE_II, RandomAffineTransform, table2_transforms
from nnunet_lightweight.training.intensity_augmentation import (
    BlackLevelBrightnessTransform,
    BlackoutRectangleTransform,
    grey_level,
)

N_DRAWS = 1500


def z_scored_frame(size: int = 96, seed: int = 0) -> torch.Tensor:
    """An 8-bit-like frame (black sector surround, full 0..255 range) z-scored as nnU-Net does."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (1, size, size)).astype(np.float32)
    frame[:, : size // 4] = 0
    frame[0, 0, -1], frame[0, -1, -1] = 0, 255
    return torch.from_numpy((frame - frame.mean()) / frame.std())


def components(config: str) -> dict[type, tuple[object, float]]:
    """The transforms of a config by type, each with the probability that wraps it."""
    found = {}
    for transform in AUGMENTATIONS[f"config_{config}"]():
        probability = 1.0
        if isinstance(transform, RandomTransform):
            probability, transform = transform.apply_probability, transform.transform
        inner = transform.transforms if isinstance(transform, ComposeTransforms) else [transform]
        for item in inner:
            found[type(item)] = (item, probability)
    return found


def test_table2_rows_as_printed_in_the_paper():
    assert list(TABLE_II) == ["I", "II", "III", "IV", "V"]
    assert [c.rotate_limit for c in TABLE_II.values()] == [5, 10, 15, 20, 30]
    assert [c.gamma_limit for c in TABLE_II.values()] == [(90, 110), (85, 115), (80, 120), (70, 130), (60, 140)]
    assert [c.var_limit for c in TABLE_II.values()] == [(5, 10), (10, 25), (20, 35), (30, 45), (40, 50)]
    assert all(c.blackout_p == 0.25 for c in TABLE_II.values())
    assert TABLE_II["III"].scale_limit == (-0.3, 0.15) and TABLE_II["V"].jitter == (0.75, 1.25)
    for name in TABLE_II:
        assert f"config_{name}" in AUGMENTATIONS
    assert AUGMENTATIONS["none"]() == []


@pytest.mark.parametrize("name", list(TABLE_II))
def test_geometry_samples_within_shift_scale_rotation(name):
    config = TABLE_II[name]
    affine, probability = components(name)[RandomAffineTransform]
    assert probability == 1.0  # RandomAffineTransform draws its own p
    image = z_scored_frame()
    draws = [affine.get_parameters(image=image) for _ in range(N_DRAWS)]
    applied = [d for d in draws if d["theta"] is not None]
    assert abs(len(applied) / N_DRAWS - 0.5) < 0.06
    angles = np.degrees([d["angle"] for d in applied])
    scales = np.array([d["scale"] for d in applied])
    shifts = np.array([d["shift_xy"].numpy() for d in applied])
    assert angles.min() >= -config.rotate_limit and angles.max() <= config.rotate_limit
    assert angles.min() < -0.9 * config.rotate_limit and angles.max() > 0.9 * config.rotate_limit
    low, high = 1 + config.scale_limit[0], 1 + config.scale_limit[1]
    assert scales.min() >= low and scales.max() <= high
    assert scales.min() < low + 0.05 * (high - low) and scales.max() > high - 0.05 * (high - low)
    assert np.abs(shifts).max() <= config.shift_limit and np.abs(shifts).max() > 0.95 * config.shift_limit


@pytest.mark.parametrize("name", list(TABLE_II))
def test_intensity_parameters_within_gamma_noise_brightness_contrast(name):
    config = TABLE_II[name]
    found = components(name)
    image = z_scored_frame()
    gamma, p_gamma = found[GammaTransform]
    noise, p_noise = found[GaussianNoiseTransform]
    brightness, p_jitter = found[BlackLevelBrightnessTransform]
    contrast, p_contrast = found[ContrastTransform]
    assert p_gamma == p_noise == p_jitter == p_contrast == 0.5  # Albumentations' default p
    assert gamma.p_invert_image == 0 and gamma.p_retain_stats == 0 and contrast.preserve_range

    gammas = np.array([float(gamma.get_parameters(image=image)["gamma"][0]) for _ in range(N_DRAWS)])
    assert gammas.min() >= config.gamma_limit[0] / 100 and gammas.max() <= config.gamma_limit[1] / 100
    assert np.ptp(gammas) > 0.9 * (config.gamma_limit[1] - config.gamma_limit[0]) / 100

    # GaussNoise's variance is in squared grey levels; the sampled std is converted to the frame's z-units.
    stds = np.array([noise.get_parameters(image=image)["sigmas"] for _ in range(N_DRAWS)]) / grey_level(image)
    assert stds.min() >= math.sqrt(config.var_limit[0]) - 1e-6 and stds.max() <= math.sqrt(config.var_limit[1]) + 1e-6
    assert np.ptp(stds**2) > 0.9 * (config.var_limit[1] - config.var_limit[0])

    for transform in (brightness, contrast):
        factors = np.array([float(transform.get_parameters(image=image)["multipliers"][0]) for _ in range(N_DRAWS)])
        assert factors.min() >= config.jitter[0] and factors.max() <= config.jitter[1]
        assert np.ptp(factors) > 0.9 * (config.jitter[1] - config.jitter[0])


def test_noise_added_to_frame_has_the_sampled_grey_level_std():
    torch.manual_seed(0)
    np.random.seed(0)
    image = z_scored_frame(size=160)
    noise = components("IV")[GaussianNoiseTransform][0]
    stds = [float((noise(image=image.clone())["image"] - image).std()) / grey_level(image) for _ in range(30)]
    low, high = (math.sqrt(v) for v in TABLE_II["IV"].var_limit)
    assert low * 0.97 <= min(stds) and max(stds) <= high * 1.03


def test_brightness_scales_about_black_and_saturates_at_white():
    image = z_scored_frame()
    black, white = float(image.min()), float(image.max())
    transform = BlackLevelBrightnessTransform((1.2, 1.2), synchronize_channels=True)
    brighter = transform(image=image.clone())["image"]
    expected = torch.clamp(black + 1.2 * (image - black), max=white)
    assert torch.allclose(brighter, expected, atol=1e-5)
    assert float(brighter.min()) == pytest.approx(black)
    darker = BlackLevelBrightnessTransform((0.8, 0.8), synchronize_channels=True)(image=image.clone())["image"]
    assert float(darker.min()) == pytest.approx(black) and float(darker.max()) < white


def test_blackout_rectangle_probability_size_and_fill():
    torch.manual_seed(0)
    blackout = components("II")[BlackoutRectangleTransform][0]
    image = z_scored_frame(size=224)
    draws = [blackout.get_parameters(image=image)["rectangle"] for _ in range(4000)]
    rectangles = np.array([r for r in draws if r is not None])
    assert abs(len(rectangles) / len(draws) - 0.25) < 0.03
    sides = rectangles[:, 2:]
    assert sides.min() == 25 and sides.max() == 65  # integer sides U{25..65}, both ends reached
    assert (rectangles[:, 0] + rectangles[:, 2] <= 224).all() and (rectangles[:, 1] + rectangles[:, 3] <= 224).all()
    segmentation = torch.randint(0, 4, (1, 224, 224), dtype=torch.int16)
    out = blackout.apply({"image": image.clone(), "segmentation": segmentation.clone()}, rectangle=(10, 20, 30, 40))
    assert (out["image"][0, 10:40, 20:60] == image.min()).all()
    assert torch.equal(out["image"][0, 40:], image[0, 40:])
    assert torch.equal(out["segmentation"], segmentation)  # labels keep the occluded anatomy


def test_blackout_fits_frames_smaller_than_its_sides():
    blackout = BlackoutRectangleTransform((25, 65), p=1.0)
    image = z_scored_frame(size=32)
    for _ in range(50):
        top, left, height, width = blackout.get_parameters(image=image)["rectangle"]
        assert 25 <= height <= 32 and 25 <= width <= 32 and top + height <= 32 and left + width <= 32


@pytest.mark.parametrize("name", list(TABLE_II))
def test_config_pipeline_keeps_labels_valid_and_changes_images(name):
    torch.manual_seed(1)
    np.random.seed(1)
    pipeline = ComposeTransforms(table2_transforms(TABLE_II[name]))
    image = z_scored_frame(size=64)
    segmentation = torch.zeros((1, 64, 64), dtype=torch.int16)
    segmentation[0, 20:44, 20:44] = 1
    changed = 0
    for _ in range(10):
        out = pipeline(image=image.clone(), segmentation=segmentation.clone())
        assert out["image"].shape == image.shape and torch.isfinite(out["image"]).all()
        assert set(out["segmentation"].unique().tolist()) <= {0, 1}
        changed += not torch.allclose(out["image"], image)
    assert changed >= 8  # 1 - 0.5^4 * 0.75 of the samples get at least one transform
