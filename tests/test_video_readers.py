"""Clip readers: DICOM (uncompressed and JPEG Baseline, grey/RGB/YBR), AVI, GIF, NIfTI, still frame images; spacing,
fps, bad files."""

import warnings

import numpy as np
import pytest
import SimpleITK as sitk
from echo_clips import (
    ECG_GREEN,
    beat_weights,
    beating_loop,
    camus_phases,
    on_canvas,
    placed_box,
    sector_box_of,
    write_dicom,
    write_gif,
    write_video,
)

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.video_readers import (
    NO_SPACING,
    grey_from_rgb,
    is_still_image,
    open_clip,
    prefetched,
    read_clip,
    read_still,
)

FPS = 25


@pytest.fixture(scope="module")
def loop(camus_root):
    """12 frames of a beating 4CH loop from CAMUS patient0001, its masks and the sector box on the canvas."""
    phases = camus_phases(camus_root)
    frames, masks = beating_loop(phases, beat_weights(12, period=12))
    canvas, _ = on_canvas(frames)
    return {"frames": frames, "canvas": canvas, "box": placed_box(sector_box_of(phases["ED"]))}


def _sector_error(decoded: np.ndarray, expected: np.ndarray, box) -> float:
    return float(np.abs(decoded[(slice(None), *box)].astype(float) - expected[(slice(None), *box)]).mean())


@pytest.mark.parametrize(
    "photometric, jpeg", [("MONOCHROME2", False), ("RGB", False), ("YBR_FULL", False), ("YBR_FULL_422", True)]
)
def test_dicom_frames_spacing_and_frame_rate(loop, tmp_path, photometric, jpeg):
    pixels = grey_from_rgb(loop["canvas"]) if photometric == "MONOCHROME2" else loop["canvas"]
    path = write_dicom(
        tmp_path / "clip.dcm",
        pixels,
        fps=FPS,
        spacing_mm=(0.29, 0.31),
        photometric=photometric,
        jpeg=jpeg,
        sector_box=loop["box"],
    )
    clip = read_clip(path)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == loop["canvas"].shape[:3]
    assert clip.fps == pytest.approx(FPS)
    assert clip.spacing_mm == pytest.approx((0.29, 0.31))  # the tissue region, not the ECG strip's seconds/volts
    expected = grey_from_rgb(loop["canvas"])
    if jpeg:
        assert _sector_error(clip.frames, expected, loop["box"]) < 2.0  # JPEG at quality 95
    else:
        assert np.abs(clip.frames.astype(int) - expected).max() <= 1  # YBR_FULL round trip: one level at most
    if photometric == "MONOCHROME2":
        assert clip.coloured is None
    else:
        green = np.all(loop["canvas"][0] == ECG_GREEN, axis=-1)
        sector = np.zeros(green.shape, bool)
        sector[loop["box"]] = True
        assert clip.coloured[green].mean() > 0.9, "the ECG trace must read as coloured"
        assert clip.coloured[sector].mean() < 0.01, "grey speckle must not read as coloured"


@pytest.mark.parametrize("syntax", ["JPEGLSLossless", "RLELossless"])
def test_dicom_lossless_compressions(loop, tmp_path, syntax):
    """JPEG-LS (pyjpegls) and RLE, compressed by pydicom itself from an uncompressed grey clip: frames exact."""
    import pydicom
    import pydicom.uid

    grey = grey_from_rgb(loop["canvas"])
    dataset = pydicom.dcmread(write_dicom(tmp_path / "plain.dcm", grey, jpeg=False))
    dataset.compress(getattr(pydicom.uid, syntax))
    dataset.save_as(tmp_path / "compressed.dcm")
    clip = read_clip(tmp_path / "compressed.dcm")
    np.testing.assert_array_equal(clip.frames, grey)
    assert clip.fps == pytest.approx(FPS) and clip.spacing_mm == pytest.approx((0.29, 0.31))


def test_dicom_monochrome1_is_inverted(loop, tmp_path):
    import pydicom

    grey = grey_from_rgb(loop["canvas"])
    dataset = pydicom.dcmread(write_dicom(tmp_path / "plain.dcm", grey, jpeg=False))
    dataset.PhotometricInterpretation = "MONOCHROME1"  # the lowest value shows white
    dataset.save_as(tmp_path / "inverted.dcm")
    np.testing.assert_array_equal(read_clip(tmp_path / "inverted.dcm").frames, 255 - grey)


def test_dicom_chunks_are_the_whole_clip(loop, tmp_path):
    path = write_dicom(tmp_path / "clip", loop["canvas"], jpeg=True)  # no suffix: found by its DICM marker
    stream = open_clip(path)
    chunks = list(stream.chunks(5))
    assert [len(c) for c in chunks] == [5, 5, 2]
    np.testing.assert_array_equal(np.concatenate(chunks), read_clip(path).frames)
    named_by_uid = path.rename(tmp_path / "1.2.840.113619.2.1")  # PACS exports name files by their UID
    np.testing.assert_array_equal(read_clip(named_by_uid).frames, np.concatenate(chunks))
    assert "JPEG Baseline" in stream.source and "SequenceOfUltrasoundRegions" in stream.source


def test_dicom_without_pixel_data_without_spacing_still_and_truncated(loop, tmp_path):
    no_pixels = write_dicom(tmp_path / "report.dcm", loop["canvas"], pixel_data=False)
    with pytest.raises(InputError, match="report.dcm: DICOM without pixel data"):
        read_clip(no_pixels)
    no_spacing = read_clip(write_dicom(tmp_path / "plain.dcm", loop["canvas"], fps=None, spacing_mm=None))
    assert no_spacing.spacing_mm is None and no_spacing.fps is None
    still = write_dicom(tmp_path / "still.dcm", loop["canvas"][:1])
    with pytest.raises(InputError, match="still.dcm holds a still frame"):
        read_clip(still)
    assert read_clip(still, min_frames=1).frames.shape[0] == 1
    whole = write_dicom(tmp_path / "whole.dcm", loop["canvas"], jpeg=False, photometric="RGB").read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="truncated.dcm"):
        read_clip(truncated)
    # An encapsulated (JPEG) file cut short: one error line saying so, no pydicom warning printed before it.
    whole_jpeg = write_dicom(tmp_path / "whole_jpeg.dcm", loop["canvas"], jpeg=True).read_bytes()
    truncated.write_bytes(whole_jpeg[: len(whole_jpeg) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match="truncated.dcm: truncated DICOM"):
            read_clip(truncated)


# MPEG-4 Part 2 at its best quality still loses ~5 grey levels on speckle; FFV1 is lossless in YUV.
@pytest.mark.parametrize("codec, tolerance", [("mpeg4", 6.0), ("ffv1", 0.5)])
def test_avi_frames_and_frame_rate(loop, tmp_path, codec, tolerance):
    frames = loop["frames"]
    box = sector_box_of(frames[0])
    avi = read_clip(write_video(tmp_path / "clip.avi", frames, FPS, codec))
    assert avi.frames.shape == frames.shape and avi.fps == pytest.approx(FPS) and avi.spacing_mm is None
    stream = open_clip(tmp_path / "clip.avi")
    assert [len(chunk) for chunk in stream.chunks(5)] == [5, 5, 2] and stream.fps == pytest.approx(FPS)
    # Limited-range YUV is stretched back to 0-255: the decoded grey levels match the source's.
    assert _sector_error(avi.frames, frames, box) < tolerance
    assert abs(float(avi.frames[(slice(None), *box)].mean()) - float(frames[(slice(None), *box)].mean())) < 1.0


def test_gif_frames(loop, tmp_path):
    frames = loop["frames"]
    gif = read_clip(write_gif(tmp_path / "clip.gif", frames, FPS))
    np.testing.assert_array_equal(gif.frames, frames)  # a palette of exact greys


def test_truncated_video_and_unknown_files(loop, tmp_path):
    whole = write_video(tmp_path / "whole.avi", np.concatenate([loop["frames"]] * 4), FPS).read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="truncated.avi.*(truncated|damaged)"):
        read_clip(truncated)
    (tmp_path / "notes.txt").write_text("no clip")
    with pytest.raises(InputError, match="notes.txt: not a clip"):
        read_clip(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="clip not found"):
        read_clip(tmp_path / "missing.avi")


def test_still_frames_grey_colour_16_bit_jpeg_and_truncated(loop, tmp_path):
    """Screenshots and exported frames: grey levels as stored, an overlay marked as coloured, no frame rate."""
    frame = loop["frames"][0]
    sitk.WriteImage(sitk.GetImageFromArray(frame), str(tmp_path / "grey.PNG"))
    grey = read_still(tmp_path / "grey.PNG")
    assert is_still_image(tmp_path / "grey.PNG") and not is_still_image(tmp_path / "clip.avi")
    np.testing.assert_array_equal(grey.frames, frame[None])
    assert grey.frame_rate is None and grey.spacing == (1.0, 1.0) and grey.spacing_source == NO_SPACING
    assert grey.coloured is None or not grey.coloured.any()

    rgb = np.repeat(frame[..., None], 3, axis=-1)
    bar = (slice(2, 9), slice(10, 60))
    rgb[bar] = ECG_GREEN
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "overlay.png"))
    coloured = read_still(tmp_path / "overlay.png")
    expected = np.zeros(frame.shape, bool)
    expected[bar] = True
    np.testing.assert_array_equal(coloured.coloured, expected)
    np.testing.assert_array_equal(coloured.frames[0][~expected], frame[~expected])

    sitk.WriteImage(sitk.GetImageFromArray(frame.astype(np.uint16) * 257), str(tmp_path / "deep.png"))
    assert np.abs(read_still(tmp_path / "deep.png").frames[0].astype(int) - frame).max() <= 1
    sitk.WriteImage(sitk.GetImageFromArray(frame), str(tmp_path / "lossy.jpg"))
    assert _sector_error(read_still(tmp_path / "lossy.jpg").frames, frame[None], sector_box_of(frame)) < 4.0

    whole = (tmp_path / "overlay.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="cut.png.*(damaged|truncated)"):
        read_still(tmp_path / "cut.png")
    with pytest.raises(InputError, match="image not found"):
        read_still(tmp_path / "missing.png")


def test_real_a4c_loop_nifti(example_loop):
    clip = read_clip(example_loop)
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(example_loop)))
    assert clip.frames.shape == (20, 480, 560) and clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(clip.frames, np.round(original).astype(np.uint8))  # 0-254 kept as they are
    assert clip.spacing_mm == pytest.approx((0.4, 0.4)) and clip.fps is None


def test_prefetched_keeps_order_and_reraises():
    assert list(prefetched(iter(range(7)), depth=2)) == list(range(7))

    def failing():
        yield 1
        raise InputError("bad clip")

    with pytest.raises(InputError, match="bad clip"):
        list(prefetched(failing()))
