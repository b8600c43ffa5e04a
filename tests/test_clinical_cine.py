"""Cine loops: volume curves of synthetic sequences with known volumes, ED/ES detection, segmenters, videos."""

import json

import numpy as np
import pytest
from clinical_shapes import sequence_axes, sequence_masks, truncated_ellipsoid_volume_ml, write_sequence

from nnunet_lightweight.cli import main
from nnunet_lightweight.clinical.cine import cine, segment_sequence
from nnunet_lightweight.clinical.ejection_fraction import ejection_fraction
from nnunet_lightweight.clinical.volume_curves import biplane_from_curves, cine_volume_curve
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.video_readers import read_loop
from nnunet_lightweight.inference.fast_predictor import FastPredictor
from nnunet_lightweight.inference.model_folder import load_trained_model
from nnunet_lightweight.inference.settings import PredictorSettings
from nnunet_lightweight.workflows.demo import REAL_LOOP

SPACING = (0.5, 0.5)
ED_AXES, ES_AXES = (78, 25, 23), (66, 18, 16)


def sitk_array(path):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _analytic(axes):
    return [truncated_ellipsoid_volume_ml(a, b, c) for a, b, c in axes]


def test_volume_curve_follows_the_known_volumes_and_finds_ed_and_es():
    axes = sequence_axes(12, ed_frame=3, ed_axes=ED_AXES, es_axes=ES_AXES)  # ES at frame 9
    curve = cine_volume_curve(sequence_masks(axes, "4CH", SPACING), SPACING, "4CH")
    assert (curve.ed_index, curve.es_index) == (3, 9)
    single_plane = [truncated_ellipsoid_volume_ml(a, c, c) for a, _, c in axes]
    np.testing.assert_allclose(curve.volumes, single_plane, rtol=0.03)
    assert curve.areas[3] == pytest.approx(np.pi * 78 * 23 / 2, rel=0.02)  # half-ellipse area, mm^2
    assert curve.ef == pytest.approx(ejection_fraction(single_plane[3], single_plane[9]), abs=1.0)


def test_biplane_ef_combines_each_views_own_ed_and_es_frames():
    axes_2ch = sequence_axes(10, ed_frame=0, ed_axes=ED_AXES, es_axes=ES_AXES)  # ES at frame 5
    axes_4ch = sequence_axes(14, ed_frame=5, ed_axes=ED_AXES, es_axes=ES_AXES)  # ES at frame 12
    curve_2ch = cine_volume_curve(sequence_masks(axes_2ch, "2CH", SPACING), SPACING, "2CH")
    curve_4ch = cine_volume_curve(sequence_masks(axes_4ch, "4CH", SPACING), SPACING, "4CH")
    assert (curve_2ch.ed_index, curve_2ch.es_index, curve_4ch.ed_index, curve_4ch.es_index) == (0, 5, 5, 12)
    biplane = biplane_from_curves(curve_2ch, curve_4ch)
    edv, esv = truncated_ellipsoid_volume_ml(*ED_AXES), truncated_ellipsoid_volume_ml(*ES_AXES)
    assert biplane["edv"] == pytest.approx(edv, rel=0.03) and biplane["esv"] == pytest.approx(esv, rel=0.03)
    assert biplane["ef"] == pytest.approx(ejection_fraction(edv, esv), abs=1.0)


def test_frames_without_lv_are_skipped_and_all_empty_is_an_error():
    axes = sequence_axes(8, ed_frame=0, ed_axes=ED_AXES, es_axes=ES_AXES)
    masks = sequence_masks(axes, "2CH", SPACING)
    masks[2][masks[2] == 1] = 0
    curve = cine_volume_curve(masks, SPACING, "2CH")
    assert np.isnan(curve.volumes[2]) and (curve.ed_index, curve.es_index) == (0, 4)
    assert "2CH frame 3" in curve.problems[0]
    with pytest.raises(InputError, match="fewer than two frames"):
        cine_volume_curve(np.zeros_like(masks), SPACING, "2CH")


def _dark_cavity_frames(masks):
    """Grey frames where the LV is dark and everything else bright, as a threshold segmenter can read them."""
    return np.where(masks == 1, 20, 200).astype(np.uint8)


def _threshold_segmenter(frames):
    return (np.asarray(frames) < 100).astype(np.uint8)


def test_segment_sequence_accepts_any_callable_and_checks_its_output():
    masks = sequence_masks(sequence_axes(6, 0, ED_AXES, ES_AXES), "2CH", SPACING)
    frames = _dark_cavity_frames(masks)
    np.testing.assert_array_equal(segment_sequence(frames, _threshold_segmenter), masks == 1)
    seen = {}

    def with_spacing(frames, spacing=None):
        seen["spacing"] = spacing
        return _threshold_segmenter(frames)

    segment_sequence(frames, with_spacing, spacing=(0.7, 0.6))
    assert seen["spacing"] == (0.7, 0.6)
    with pytest.raises(InputError, match="returned shape"):
        segment_sequence(frames, lambda f: f[:, :10])


def test_cine_writes_curves_report_and_plot(tmp_path):
    axes = sequence_axes(10, ed_frame=2, ed_axes=ED_AXES, es_axes=ES_AXES)  # ES at frame 7
    for view in ("2CH", "4CH"):
        write_sequence(
            tmp_path / f"patient0001_{view}_half_sequence_gt.nii.gz", sequence_masks(axes, view, SPACING), SPACING
        )
    (tmp_path / "Info_2CH.cfg").write_text("ED: 3\nES: 8\nNbFrame: 10\nEF: 50\nFrameRate: 25\n")
    assert (
        main(
            [
                "cine",
                "--2ch",
                str(tmp_path / "patient0001_2CH_half_sequence_gt.nii.gz"),
                "--4ch",
                str(tmp_path / "patient0001_4CH_half_sequence_gt.nii.gz"),
                "-o",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "out" / "cine.json").read_text())
    two = report["views"]["2CH"]
    assert (two["ed_frame"], two["es_frame"]) == (3, 8) == (two["reference_ed_frame"], two["reference_es_frame"])
    assert two["frame_rate"] == 25 and two["volume_unit"] == "mL"
    expected = ejection_fraction(truncated_ellipsoid_volume_ml(*ED_AXES), truncated_ellipsoid_volume_ml(*ES_AXES))
    assert report["biplane"]["ef"] == pytest.approx(expected, abs=1.0)
    curves = (tmp_path / "out" / "curves.csv").read_text().splitlines()
    assert len(curves) == 21 and curves[0].startswith("view,frame,time_s,lv_area")
    assert (tmp_path / "out" / "volume_curve.png").stat().st_size > 0
    assert (
        main(["cine", "--2ch", str(tmp_path / "patient0001_2CH_half_sequence_gt.nii.gz"), "-o", str(tmp_path / "out")])
        == 2
    )  # exists


def test_a_still_loop_has_no_ef(tmp_path):
    """A clip whose frames do not change has no beat: its max/min volumes would give EF 0 % as a number."""
    frames = _dark_cavity_frames(sequence_masks(sequence_axes(6, 0, ED_AXES, ED_AXES), "4CH", SPACING))
    write_sequence(tmp_path / "still.nii.gz", frames, SPACING)
    with pytest.raises(InputError, match="still.nii.gz: 4CH EF not measurable: flat volume curve"):
        cine(tmp_path / "out", sequence_4ch=tmp_path / "still.nii.gz", segmenter=_threshold_segmenter)
    assert not (tmp_path / "out").exists()


def test_image_sequence_without_a_model_is_an_error(tmp_path):
    frames = _dark_cavity_frames(sequence_masks(sequence_axes(4, 0, ED_AXES, ES_AXES), "2CH", SPACING))
    write_sequence(tmp_path / "loop.nii.gz", frames, SPACING)
    with pytest.raises(InputError, match="give a model"):
        cine(tmp_path / "out", sequence_2ch=tmp_path / "loop.nii.gz")


def test_video_loop_with_a_plugged_in_segmenter(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("av")
    axes = sequence_axes(10, ed_frame=1, ed_axes=(60, 22, 20), es_axes=(50, 15, 13))  # ES at frame 6
    masks = sequence_masks(axes, "4CH", (1.0, 1.0))
    frames = _dark_cavity_frames(masks)[:, : masks.shape[1] // 16 * 16, : masks.shape[2] // 16 * 16]
    iio.imwrite(tmp_path / "loop.mp4", np.repeat(frames[..., None], 3, axis=-1), plugin="pyav", codec="libx264", fps=30)
    sequence = read_loop(tmp_path / "loop.mp4")
    assert sequence.frames.shape == frames.shape and sequence.frame_rate == 30
    report = cine(tmp_path / "out", sequence_4ch=tmp_path / "loop.mp4", segmenter=_threshold_segmenter)
    view = report["views"]["4CH"]
    assert (view["ed_frame"], view["es_frame"]) == (2, 7) and view["volume_unit"] == "px^3"
    assert (tmp_path / "out" / "4CH_masks.nii.gz").is_file()
    seen = []

    def recording_segmenter(frames, spacing=None):
        seen.append(tuple(spacing))
        return _threshold_segmenter(frames)

    in_mm = cine(
        tmp_path / "mm", sequence_4ch=tmp_path / "loop.mp4", segmenter=recording_segmenter, spacing=(0.5, 0.5)
    )["views"]["4CH"]
    assert seen == [(1.0, 1.0)]  # the model sees the video's own pixels; the given spacing is for measuring
    assert in_mm["volume_unit"] == "mL" and in_mm["edv"] == pytest.approx(view["edv"] * 0.5**3 / 1000)


def test_phantom_half_sequences_give_the_phantom_ed_es_and_ef(tmp_path):
    from nnunet_lightweight.conversion import phantom

    folder = phantom.generate_phantom(tmp_path / "phantom", n_patients=1, size=128, sequences=True, progress=False)
    truth = phantom.load_phantom_truth(folder)["patients"]["patient0001"]
    patient_dir = folder / "database_nifti" / "patient0001"
    report = cine(
        tmp_path / "out",
        patient_dir / "patient0001_2CH_half_sequence_gt.nii.gz",
        patient_dir / "patient0001_4CH_half_sequence_gt.nii.gz",
    )
    for view in ("2CH", "4CH"):
        # the phantom's cosine cycle is nearly flat at ED and ES: neighbouring frames differ by < 1 % in volume
        assert abs(report["views"][view]["ed_frame"] - truth["views"][view]["ED"]) <= 1
        assert abs(report["views"][view]["es_frame"] - truth["views"][view]["ES"]) <= 1
    assert report["biplane"]["ef"] == pytest.approx(truth["EF"], abs=2.0)
    assert report["biplane"]["edv"] == pytest.approx(truth["EDV_ml"], rel=0.05)


def test_cine_model_masks_are_nnunets_own_prediction_of_each_frame(trained_lightecho, monkeypatch):
    """`cine --model` segments through the fast predictor; its masks are those of nnU-Net's own predictor."""
    import SimpleITK as sitk
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    for name, value in trained_lightecho["env"].items():
        if name.startswith("nnUNet"):
            monkeypatch.setenv(name, value)
    images = sorted(trained_lightecho["images_dir"].glob("patient0001_4CH_*"))
    frames = np.stack([sitk.GetArrayFromImage(sitk.ReadImage(str(path))) for path in images]).astype(np.float32)
    model = load_trained_model(trained_lightecho["results_folder"], [0])
    predictor = FastPredictor(
        model, PredictorSettings(device="cpu", backend="eager", precision="fp32", cca=False), log=None
    )
    masks = segment_sequence(frames, predictor, spacing=(1.0, 1.0))
    nnunet = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False)
    nnunet.initialize_from_trained_model_folder(str(trained_lightecho["results_folder"]), use_folds=(0,))
    expected = np.stack(
        [nnunet.predict_single_npy_array(frame[None, None], {"spacing": [999.0, 1.0, 1.0]})[0] for frame in frames]
    )
    assert masks.shape == frames.shape
    # nnU-Net keeps its logits in fp16 on the way: an argmax tie may fall differently in a pixel or two.
    assert np.mean(masks == expected) > 0.999
    # Another frame order gives the masks in that order: each mask belongs to its own frame.
    np.testing.assert_array_equal(segment_sequence(frames[::-1], predictor, spacing=(1.0, 1.0)), masks[::-1])


def test_cine_and_predict_give_identical_masks_of_a_video(tmp_path):
    """One inference stack: `lightecho cine` on a video and `lightecho predict` on the same video, with the same
    engine and precision, write the same masks."""
    import imageio.v3 as iio

    loop = read_loop(REAL_LOOP).frames[:6]
    grey = np.clip(loop, 0, 255).astype(np.uint8)
    iio.imwrite(tmp_path / "loop.avi", np.repeat(grey[..., None], 3, axis=-1), plugin="pyav", codec="ffv1", fps=25)
    engine = ["--device", "cpu", "--backend", "torch", "--precision", "fp32"]
    assert main(["predict", "-i", str(tmp_path / "loop.avi"), "-o", str(tmp_path / "predict"), *engine]) == 0
    assert main(["cine", "--4ch", str(tmp_path / "loop.avi"), "-o", str(tmp_path / "cine"), *engine]) == 0
    predicted = sitk_array(tmp_path / "predict" / "loop.nii.gz")
    cine_masks = sitk_array(tmp_path / "cine" / "4CH_masks.nii.gz")
    assert predicted.shape == (6, *grey.shape[1:]) and (predicted == 1).any()  # the LV is found
    np.testing.assert_array_equal(cine_masks, predicted)


def test_dicom_loop_is_measured_with_its_ultrasound_region_spacing(tmp_path):
    pytest.importorskip("pydicom")
    from echo_clips import write_dicom

    axes = sequence_axes(10, ed_frame=1, ed_axes=(60, 22, 20), es_axes=(50, 15, 13))
    frames = _dark_cavity_frames(sequence_masks(axes, "4CH", (1.0, 1.0)))
    # A scanner's DICOM has no suffix: the DICM marker says what it is.
    dicom = write_dicom(tmp_path / "1.2.840.1", frames, spacing_mm=(0.3, 0.3), photometric="MONOCHROME2", jpeg=False)
    seen = []

    def recording_segmenter(frames, spacing=None):
        seen.append(tuple(spacing))
        return _threshold_segmenter(frames)

    view = cine(tmp_path / "mm", sequence_4ch=dicom, segmenter=recording_segmenter)["views"]["4CH"]
    assert seen == [pytest.approx((0.3, 0.3))] and view["volume_unit"] == "mL" and view["frame_rate"] == 25
    px_view = cine(tmp_path / "px", sequence_4ch=dicom, segmenter=_threshold_segmenter, units="px")["views"]["4CH"]
    assert (view["ed_frame"], view["es_frame"]) == (px_view["ed_frame"], px_view["es_frame"])
    assert view["edv"] == pytest.approx(px_view["edv"] * 0.3**3 / 1000, rel=0.02)


def test_ed_and_es_come_beat_by_beat_from_the_representative_beat(tmp_path):
    # Five beats (ED at frames 6, 16, ... 46, ES five frames later, 1-based) whose ES deepens beat by beat: the
    # global minimum is in the last beat, the representative beat (EF nearest the median) is the third.
    es_per_beat = [(66, 19 - k / 2, 17 - k / 2) for k in range(5)]
    fractions = (1 - np.cos(2 * np.pi * (np.arange(55) - 5) / 10)) / 2
    axes = [
        tuple(np.add(ED_AXES, f * np.subtract(es_per_beat[min(max(t - 5, 0) // 10, 4)], ED_AXES)))
        for t, f in enumerate(fractions)
    ]
    write_sequence(tmp_path / "loop.nii.gz", sequence_masks(axes, "4CH", SPACING), SPACING)
    view = cine(tmp_path / "out", sequence_4ch=tmp_path / "loop.nii.gz")["views"]["4CH"]
    assert view["n_beats"] == 5
    # beats.detect_beats smooths with a 3-frame median: where one beat's ED meets the next, a peak may move a frame.
    assert all(abs(b["ed_frame"] - ed) <= 1 for b, ed in zip(view["beats"], (6, 16, 26, 36, 46)))
    typical = view["beats"][2]
    assert (view["ed_frame"], view["es_frame"]) == (typical["ed_frame"], typical["es_frame"])
    assert abs(view["es_frame"] - 31) <= 1  # not the global minimum at frame 51
    efs = [b["ef"] for b in view["beats"]]
    assert view["ef_beat_median"] == pytest.approx(efs[2]) == pytest.approx(view["ef_single_plane"])
    assert view["ef_beat_mean"] == pytest.approx(np.mean(efs))
