"""Sector search: found despite colour and grey overlays, in loops, short loops and still frames, and in a real loop."""

import numpy as np
import pytest
from echo_clips import beat_weights, beating_loop, camus_phases, on_canvas, placed_box, sector_box_of, write_dicom
from skimage.morphology import convex_hull_image

from nnunet_lightweight.core.sector import find_sector, sector_bounding_box
from nnunet_lightweight.core.video_readers import grey_from_rgb, read_clip


@pytest.fixture(scope="module")
def canvas_loop(camus_root):
    phases = camus_phases(camus_root)
    frames, _ = beating_loop(phases, beat_weights(10, period=10))
    canvas, _ = on_canvas(frames)
    return canvas, placed_box(sector_box_of(phases["ED"]))


@pytest.fixture(scope="module")
def true_fan(camus_root, canvas_loop):
    """The convex hull of the CAMUS frame's non-zero pixels, on the canvas."""
    canvas, box = canvas_loop
    ed = camus_phases(camus_root)["ED"]
    fan = np.zeros(canvas.shape[1:3], bool)
    fan[box] = convex_hull_image(ed > 0)[sector_box_of(ed)]
    return fan


def _assert_box_near(found, expected, tolerance=3):
    for axis in range(2):
        assert abs(found[axis].start - expected[axis].start) <= tolerance, (found, expected)
        assert abs(found[axis].stop - expected[axis].stop) <= tolerance, (found, expected)


def test_sector_of_a_jpeg_dicom_with_colour_overlays(canvas_loop, true_fan, tmp_path):
    canvas, box = canvas_loop
    clip = read_clip(write_dicom(tmp_path / "clip.dcm", canvas, jpeg=True))
    sector = find_sector(clip.frames, clip.coloured)
    _assert_box_near(sector.box, box)
    overlap = (sector.mask & true_fan).sum() / (sector.mask | true_fan).sum()
    assert overlap > 0.95, f"sector mask IoU {overlap:.3f} with the CAMUS frame's fan"
    masked = sector.masked(clip.frames)
    assert masked[:, 8:22, 10:70].max() == 0 and masked[:, 40:260, -30:-24].max() == 0  # text and scale gone


@pytest.mark.parametrize("frames", [10, 2, 1], ids=["loop", "two-frame loop", "still frame"])
def test_sector_of_grey_overlays_in_loops_and_still_frames(canvas_loop, frames):
    """Without colour: motion (when there are frames enough) and shape tell the sector from the grey overlays,
    which after grey conversion include a bright text block and the ECG trace."""
    canvas, box = canvas_loop
    grey = grey_from_rgb(canvas[:frames])
    _assert_box_near(sector_bounding_box(grey if frames > 1 else grey[0]), box)


def test_blank_frame_is_used_whole():
    found = find_sector(np.zeros((40, 50), np.uint8))
    assert found.box == (slice(0, 40), slice(0, 50)) and found.mask.all()


def test_sector_of_the_real_example_loop(example_loop):
    clip = read_clip(example_loop)
    rows, cols = sector_bounding_box(clip.frames)
    # The sector (seen in the loop): apex near row 24, arc bottom near row 412, sides near columns 98 and 462;
    # the logo, depth scale and grey bar outside it must not widen the box.
    assert 15 <= rows.start <= 35 and 395 <= rows.stop <= 425
    assert 85 <= cols.start <= 120 and 440 <= cols.stop <= 475
    sector = find_sector(clip.frames)
    assert not sector.mask[60:160, 5:35].any(), "the grey bar at the left is not sector"
    assert sector.mask[200, 280] and sector.mask[380, 280], "the fan's middle and lower part are sector"
