"""FramePreprocessor: nnU-Net's DefaultPreprocessor results, to the bit, for every kind of frame and plan."""

import copy
import json

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_lightweight.inference.frame_preprocessing import FramePreprocessor
from nnunet_lightweight.pretrained import shipped_model_folder

FRAME_SPACING = [999.0, 1.0, 1.0]  # nnU-Net's 2D layout: a dummy first axis, the plans' in-plane spacing


def _plans(channels: int = 1, use_mask_for_norm: bool = False, transpose: list[int] | None = None) -> dict:
    """The shipped model's plans, with `channels` z-scored input channels."""
    plans = json.loads((shipped_model_folder() / "plans.json").read_text())
    configuration = plans["configurations"]["2d"]
    configuration["normalization_schemes"] = ["ZScoreNormalization"] * channels
    configuration["use_mask_for_norm"] = [use_mask_for_norm] * channels
    intensities = plans["foreground_intensity_properties_per_channel"]
    for channel in range(channels):
        intensities[str(channel)] = intensities["0"]
    if transpose is not None:
        plans["transpose_forward"] = transpose
        plans["transpose_backward"] = [transpose.index(axis) for axis in range(3)]
    return plans


def _both(data: np.ndarray, plans: dict, spacing: list[float] = FRAME_SPACING, seg: np.ndarray | None = None):
    """(nnU-Net's result, FramePreprocessor's result) for the same input, each on its own copy of everything."""
    results = []
    for preprocessor in (DefaultPreprocessor(verbose=False), FramePreprocessor(verbose=False)):
        manager = PlansManager(copy.deepcopy(plans))
        results.append(
            preprocessor.run_case_npy(
                data.copy(),
                None if seg is None else seg.copy(),
                {"spacing": list(spacing)},
                manager,
                manager.get_configuration("2d"),
                json.loads((shipped_model_folder() / "dataset.json").read_text()),
            )
        )
    return results


def _assert_same(expected, actual):
    for wanted, got in zip(expected[:2], actual[:2]):
        assert got.dtype == wanted.dtype and got.shape == wanted.shape
        np.testing.assert_array_equal(got, wanted)
    np.testing.assert_equal(actual[2], expected[2])  # dicts, lists and arrays alike


def _frames() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    speckle = rng.gamma(2.0, 30.0, (1, 1, 96, 80)).round().clip(0, 255)
    sector = speckle.copy()
    sector[..., :12, :] = 0  # zero rows above the sector, columns to its sides
    sector[..., :, :5] = 0
    sector[..., :, -9:] = 0
    holes = sector.copy()
    holes[..., 40:50, 30:38] = 0  # a zero blood pool inside the sector: a hole the 2D fill would close
    tiny = sector.astype(np.float64)
    tiny[..., 20, 20] = 1e-50  # nonzero in float64, zero in nnU-Net's float32
    return {
        "no zeros": speckle + 1,
        "sector": sector,
        "sector with holes": holes,
        "all zero": np.zeros((1, 1, 64, 64)),
        "one pixel": np.pad(np.ones((1, 1, 1, 1)) * 9, ((0, 0), (0, 0), (30, 20), (5, 40))),
        "uint8": sector.astype(np.uint8),
        "int16": (sector - 100).astype(np.int16),
        "float64 underflow": tiny,
    }


@pytest.mark.parametrize("name", list(_frames()))
@pytest.mark.parametrize("use_mask_for_norm", [False, True])
@pytest.mark.filterwarnings("ignore:.*(Degrees of freedom|invalid value|Mean of empty).*:RuntimeWarning")
def test_single_frames_equal_nnunets(name, use_mask_for_norm):
    data = _frames()[name]
    expected, actual = _both(data, _plans(use_mask_for_norm=use_mask_for_norm))
    _assert_same(expected, actual)


def test_several_channels_equal_nnunets():
    frames = _frames()
    data = np.concatenate([frames["sector"], frames["sector with holes"][:, :, :, ::-1]])
    expected, actual = _both(data, _plans(channels=2))
    _assert_same(expected, actual)


def test_real_camus_frames_equal_nnunets(camus_root):
    for case in ("patient0001/patient0001_4CH_ED", "patient0245/patient0245_2CH_ES"):
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(camus_root / "database_nifti" / f"{case}.nii.gz")))
        expected, actual = _both(image.reshape(1, 1, *image.shape[-2:]).astype(np.float32), _plans())
        _assert_same(expected, actual)


@pytest.mark.parametrize(
    "case",
    ["resampled", "several slices", "segmentation given", "transposed plan"],
)
def test_everything_else_is_nnunets_own(case):
    frame = _frames()["sector with holes"]
    plans, spacing, seg, data = _plans(), FRAME_SPACING, None, frame
    if case == "resampled":
        spacing = [999.0, 0.5, 0.7]
    elif case == "several slices":
        data = np.concatenate([frame, frame[:, :, ::-1]], axis=1)
    elif case == "segmentation given":
        seg = (frame > 100).astype(np.int8)
    else:
        plans = _plans(transpose=[0, 2, 1])
    expected, actual = _both(data, plans, spacing, seg)
    _assert_same(expected, actual)
    if case == "resampled":
        assert actual[0].shape[2:] != frame.shape[2:]


def test_plain_frames_never_reach_nnunets_path(monkeypatch):
    """The shortcut is taken (else the speed-up would be silently gone), and it leaves its input as it was."""
    data = _frames()["sector"]
    expected, _ = _both(data, _plans())

    def refuse(*args, **kwargs):
        raise AssertionError("DefaultPreprocessor.run_case_npy was called")

    monkeypatch.setattr(DefaultPreprocessor, "run_case_npy", refuse)
    manager = PlansManager(_plans())
    original = data.copy()
    actual = FramePreprocessor(verbose=False).run_case_npy(
        data, None, {"spacing": list(FRAME_SPACING)}, manager, manager.get_configuration("2d"), {}
    )
    _assert_same(expected, actual)
    np.testing.assert_array_equal(data, original)
