"""The model's input convention: sector box found, frames of any size brought to it, masks back at input size."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.sector import sector_bounding_box
from nnunet_lightweight.evaluation.metrics import dice_score
from nnunet_lightweight.inference.input_convention import CONVENTION_FILE, InputConvention


def _fan(shape: tuple[int, int], box: tuple[slice, slice], seed: int = 0) -> np.ndarray:
    """Speckle inside a fan whose bounding box is `box`, zero elsewhere, plus thin overlay lines outside it."""
    rng = np.random.default_rng(seed)
    frame = np.zeros(shape, np.float32)
    rows, cols = np.mgrid[box[0], box[1]]
    height, centre = box[0].stop - box[0].start, (box[1].start + box[1].stop - 1) / 2
    half_width = (box[1].stop - box[1].start) / 2
    inside = np.abs(cols - centre) <= half_width * (rows - box[0].start + 1) / height
    frame[box] = np.where(inside, 40 + 150 * ndimage.gaussian_filter(rng.random(inside.shape), 1), 0)
    frame[2, :] = 255  # a one-pixel ECG-like line and a scale bar outside the sector
    frame[:, shape[1] - 3] = 200
    return frame


def test_sector_box_of_a_fan_with_overlays():
    box = (slice(20, 180), slice(40, 230))
    found = sector_bounding_box(_fan((200, 260), box))
    assert abs(found[0].start - box[0].start) <= 3 and abs(found[0].stop - box[0].stop) <= 2
    assert abs(found[1].start - box[1].start) <= 6 and abs(found[1].stop - box[1].stop) <= 6


def test_sector_box_of_the_real_example_loop(example_loop):
    frames = sitk.GetArrayFromImage(sitk.ReadImage(str(example_loop)))
    rows, cols = sector_bounding_box(frames)
    # The sector (seen in the loop): apex near row 24, arc bottom near row 412, sides near columns 98 and 462;
    # the logo, depth scale and grey bar outside it must not widen the box.
    assert 15 <= rows.start <= 35 and 395 <= rows.stop <= 425
    assert 85 <= cols.start <= 120 and 440 <= cols.stop <= 475


def test_placement_round_trip_and_frames_of_the_convention_size():
    convention = InputConvention((64, 64))
    assert convention.place(np.zeros((3, 64, 64))) is None  # already at the convention's size: taken as given
    frame = _fan((150, 200), (slice(10, 140), slice(20, 180)))
    placement = convention.place(frame[None])
    model_frame = placement.to_model(frame[None])
    assert model_frame.shape == (1, 64, 64)
    mask = np.zeros((1, 64, 64), np.uint8)
    mask[:, 40:60, 24:40] = 1  # inside the fan: masks outside the sector are background
    back = placement.to_input(mask)
    assert back.shape == (1, 150, 200)
    box = placement.box
    assert back[0][box].mean() == pytest.approx(mask.mean(), abs=0.02)
    outside = back.copy()
    outside[(slice(None), *box)] = 0
    assert not outside.any()
    assert not back[0][~placement.sector.mask].any()


def test_a_colour_ecg_trace_beside_the_sector_changes_neither_box_nor_masks():
    box = (slice(20, 180), slice(40, 230))
    clean = _fan((200, 260), box)[None].repeat(4, axis=0)
    clean += np.arange(4)[:, None, None] * (clean > 0)  # the sector moves, as a heart does
    with_ecg = clean.copy()
    coloured = np.zeros((200, 260), bool)
    coloured[180:189, :] = True  # a thick green ECG trace touching the sector's arc, across the whole frame
    with_ecg[:, coloured] = 150 + 20 * np.arange(4)[:, None]  # it changes from frame to frame, as a sweep does
    convention = InputConvention((64, 64))
    reference = convention.place(clean)
    assert convention.place(with_ecg).box != reference.box  # grey alone, the trace joins the sector
    placement = convention.place(with_ecg, coloured)
    assert placement.box == reference.box
    np.testing.assert_array_equal(placement.sector.mask, reference.sector.mask)
    np.testing.assert_allclose(placement.to_model(with_ecg), reference.to_model(clean))
    mask = np.zeros((4, 64, 64), np.uint8)
    mask[:, 40:60, 24:40] = 1
    np.testing.assert_array_equal(placement.to_input(mask), reference.to_input(mask))


@pytest.mark.parametrize("shape", [(112, 112), (480, 560), (97, 130), (300, 217)])
def test_resizes_are_scipys_zoom(shape):
    """to_model's resize is scipy's linear zoom (to float rounding), to_input's scipy's nearest zoom exactly."""
    rng = np.random.default_rng(1)
    frames = rng.random((2, *shape), dtype=np.float32) * 255
    placement = InputConvention((224, 224)).place(frames)
    crop = placement.sector.masked(frames)[(..., *placement.box)]
    factors = [1, *(224 / n for n in crop.shape[-2:])]
    expected = ndimage.zoom(crop, factors, order=1, mode="nearest", grid_mode=True)
    assert np.abs(placement.to_model(frames) - expected).max() < 0.01  # of 255 grey levels
    masks = rng.integers(0, 4, (2, 224, 224)).astype(np.uint8)
    box_shape = [s.stop - s.start for s in placement.box]
    pasted = np.zeros_like(frames, dtype=np.uint8)
    pasted[(..., *placement.box)] = ndimage.zoom(
        masks, [1, *(b / 224 for b in box_shape)], order=0, mode="nearest", grid_mode=True
    )
    np.testing.assert_array_equal(placement.to_input(masks), placement.sector.masked(pasted))


def test_convention_file_round_trip_and_bad_file(tmp_path):
    InputConvention((224, 224)).write(tmp_path)
    assert InputConvention.of_model_folder(tmp_path) == InputConvention((224, 224))
    assert InputConvention.of_model_folder(tmp_path / "absent") is None
    (tmp_path / CONVENTION_FILE).write_text(json.dumps({"kind": "spacing", "frame_size": [1, 1]}))
    with pytest.raises(InputError, match="input convention"):
        InputConvention.of_model_folder(tmp_path)


def test_predictor_brings_any_frame_size_to_the_convention(camus_root):
    """An unseen CAMUS frame shown larger, off-centre, with overlays: the shipped model's masks come back at the
    input's size and match its masks of the frame as trained (its own convention), mapped to the same place."""
    from nnunet_lightweight.inference.fast_predictor import FastPredictor
    from nnunet_lightweight.inference.model_folder import load_trained_model
    from nnunet_lightweight.inference.settings import PredictorSettings
    from nnunet_lightweight.pretrained import shipped_model_folder

    predictor = FastPredictor(load_trained_model(shipped_model_folder()), PredictorSettings(device="cpu"), log=None)
    patient = (camus_root / "database_split" / "subgroup_validation.txt").read_text().split()[5]
    case = camus_root / "database_nifti" / patient / f"{patient}_4CH_ED"
    frame = sitk.GetArrayFromImage(sitk.ReadImage(f"{case}.nii.gz")).squeeze().astype(np.float32)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(f"{case}_gt.nii.gz")).squeeze()
    as_trained = predictor(frame)[0]
    assert dice_score(as_trained == 1, reference == 1) >= 0.85
    # A frame of the convention's size is in it whatever spacing its header gives (no resampling by spacing).
    for spacing in ((0.3, 0.3), (3.0, 3.0), (0.6, 0.8)):
        np.testing.assert_array_equal(predictor(frame, spacing)[0], as_trained)

    canvas = np.zeros((330, 400), np.float32)
    box = (slice(40, 40 + 280), slice(70, 70 + 300))
    canvas[box] = ndimage.zoom(frame, (280 / 224, 300 / 224), order=1)
    canvas[5, :] = 250  # overlays outside the sector
    canvas[:, 395] = 180
    shown = predictor(canvas)[0]
    assert shown.shape == canvas.shape
    outside = shown.copy()
    outside[box] = 0
    assert (outside > 0).sum() < 0.002 * outside.size
    back = ndimage.zoom(shown[box], (224 / 280, 224 / 300), order=0)
    for label in (1, 2, 3):
        assert dice_score(back == label, as_trained == label) >= 0.85, label
    assert dice_score(back == 1, reference == 1) >= 0.85
