"""Simpson volumes on analytic shapes: truncated ellipsoids, rotations, anisotropic spacing, bad input."""

import numpy as np
import pytest
from clinical_shapes import section_mask, truncated_ellipsoid_volume_ml
from label_maps import synthetic_heart
from scipy import ndimage

from nnunet_lightweight.clinical.ejection_fraction import ejection_fraction
from nnunet_lightweight.clinical.volumes import (
    _base_from_la,
    find_long_axis,
    lv_outline,
    measure_disks,
    simpson_biplane_volume,
    simpson_single_plane_volume,
)
from nnunet_lightweight.core.errors import InputError

SPACING = (0.3, 0.3)


def _biplane(a, b, c, t, spacing=SPACING, labels=False, **kwargs):
    return simpson_biplane_volume(
        section_mask(a, b, t, spacing, labels), section_mask(a, c, t, spacing, labels), spacing, spacing, **kwargs
    )


@pytest.mark.parametrize(
    "a, b, c, t, spacing",
    [
        (45, 20, 20, 0, SPACING),  # half spheroid
        (80, 25, 22, 0, SPACING),  # slender, unequal short axes
        (60, 25, 22, 15, SPACING),  # cut below the centre: narrower base
        (60, 25, 22, 15, (0.4, 0.25)),  # anisotropic pixels
        (45, 20, 20, 0, (0.8, 0.8)),  # coarse pixels
    ],
)
@pytest.mark.parametrize("labels", [False, True], ids=["binary", "labelmap"])
def test_biplane_volume_matches_truncated_ellipsoid(a, b, c, t, spacing, labels):
    expected = truncated_ellipsoid_volume_ml(a, b, c, t)
    assert _biplane(a, b, c, t, spacing, labels) == pytest.approx(expected, rel=0.03)


def test_single_plane_volume_matches_spheroid():
    expected = truncated_ellipsoid_volume_ml(60, 22, 22, 10)
    assert simpson_single_plane_volume(section_mask(60, 22, 10), SPACING) == pytest.approx(expected, rel=0.03)


def test_ejection_fraction_of_two_ellipsoids_within_one_point():
    edv, esv = _biplane(80, 26, 24, 0, labels=True), _biplane(68, 18, 17, 0, labels=True)
    expected = ejection_fraction(truncated_ellipsoid_volume_ml(80, 26, 24), truncated_ellipsoid_volume_ml(68, 18, 17))
    assert ejection_fraction(edv, esv) == pytest.approx(expected, abs=1.0)


def test_long_axis_landmarks_of_an_upright_half_ellipse():
    axis = find_long_axis(section_mask(45, 20, 0, labels=True), SPACING)
    assert axis.base_source == "LA interface"
    assert axis.length == pytest.approx(45, rel=0.01)
    assert abs(axis.direction[0] + 1) < 1e-3  # straight up the image
    assert np.linalg.norm(axis.base_end - axis.base_start) == pytest.approx(40, rel=0.03)
    assert find_long_axis(section_mask(45, 20, 0), SPACING).base_source == "outline"


@pytest.mark.parametrize("labels", [False, True], ids=["binary", "labelmap"])
@pytest.mark.parametrize("angle", [15, 30, -25])
def test_rotating_the_masks_keeps_the_volume(angle, labels):
    spacing = (0.5, 0.5)
    mask_2ch, mask_4ch = section_mask(70, 24, 5, spacing, labels), section_mask(70, 20, 5, spacing, labels)
    upright = simpson_biplane_volume(mask_2ch, mask_4ch, spacing, spacing)
    rotated = simpson_biplane_volume(
        ndimage.rotate(mask_2ch, angle, order=0), ndimage.rotate(mask_4ch, angle, order=0), spacing, spacing
    )
    assert rotated == pytest.approx(upright, rel=0.02)


def test_camus_disk_placement_overestimates_by_about_four_percent():
    expected = truncated_ellipsoid_volume_ml(45, 20, 20)
    camus = _biplane(45, 20, 20, 0, placement="camus")
    # Diameters at the basal end of each disk: a left Riemann sum, +3.7 % on a half-ellipsoid with 20 disks.
    assert 1.02 < camus / expected < 1.05
    assert _biplane(45, 20, 20, 0) / expected == pytest.approx(1.0, abs=0.01)


def test_disk_diameters_follow_the_ellipse():
    disks = measure_disks(section_mask(45, 20, 0), SPACING)
    fractions = (np.arange(20) + 0.5) / 20
    np.testing.assert_allclose(disks.diameters, 40 * np.sqrt(1 - fractions**2), atol=0.7)


def test_binary_mask_uses_every_non_zero_value_as_lv():
    mask = section_mask(45, 20, 0)
    assert simpson_single_plane_volume(mask * 255, SPACING) == simpson_single_plane_volume(mask, SPACING)


def test_stray_lv_islands_and_holes_are_ignored():
    mask = section_mask(45, 20, 0, labels=True)
    clean = simpson_single_plane_volume(mask, SPACING)
    noisy = mask.copy()
    noisy[2:6, 2:6] = 1  # a separate island
    noisy[60:64, 60:64] = 0  # a hole inside the cavity
    assert simpson_single_plane_volume(noisy, SPACING) == pytest.approx(clean, rel=1e-6)


@pytest.mark.parametrize("spacing", [(0, 0.3), (-0.3, 0.3), (0.3,), (0.3, 0.3, 0.3), (np.nan, 0.3)])
def test_bad_spacing_is_an_input_error(spacing):
    with pytest.raises(InputError, match="spacing"):
        simpson_single_plane_volume(section_mask(45, 20, 0), spacing)


def test_no_lv_pixels_is_an_input_error_naming_the_view():
    empty = np.zeros((50, 50), dtype=np.uint8)
    empty[40:, :] = 3
    with pytest.raises(InputError, match="4CH mask has no LV pixels"):
        simpson_biplane_volume(section_mask(45, 20, 0), empty, SPACING, SPACING)


def test_three_dimensional_mask_is_an_input_error():
    with pytest.raises(InputError, match="2D"):
        simpson_single_plane_volume(np.ones((4, 4, 4), dtype=np.uint8), SPACING)


@pytest.mark.parametrize("la_shift", [0, 1, 2, 3])  # touching, one- and two-pixel gaps (contact up to 1.5 px), apart
@pytest.mark.parametrize("top_rows_cut", [0, 11])  # 11: the LV reaches the image's first row
def test_measuring_within_the_lv_box_finds_the_full_frame_landmarks(la_shift, top_rows_cut):
    mask = synthetic_heart()
    la = mask == 3
    mask[la] = 0
    mask[np.roll(la, la_shift, axis=0) & (mask == 0)] = 3
    mask = mask[top_rows_cut:]
    spacing = np.array([0.7, 0.45])
    # The same steps on the whole frame, without the box.
    outline = lv_outline(mask == 1)
    base = _base_from_la(outline, outline * spacing, mask == 3)
    measured = measure_disks(mask, spacing, lv_label=1)
    np.testing.assert_array_equal(measured.outline, outline * spacing)
    if base is None:
        assert measured.axis.base_source == "outline"
    else:
        assert measured.axis.base_source == "LA interface"
        np.testing.assert_array_equal(measured.axis.base_start, base[0])
        np.testing.assert_array_equal(measured.axis.base_end, base[1])
