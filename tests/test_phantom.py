"""The synthetic echo phantom: analytic volumes, rendered cross-sections, sequences, and conversion like CAMUS."""

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import integrate

from nnunet_lightweight.conversion.camus import convert_camus, parse_info_file
from nnunet_lightweight.conversion.phantom import (
    HeartShape,
    ViewAcquisition,
    generate_phantom,
    load_phantom_truth,
    render_frame,
    sample_patient,
    truncated_ellipse_area_mm2,
    truncated_ellipsoid_volume_mm3,
)
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import read_frame
from nnunet_lightweight.core.metadata import read_dataset_metadata


@pytest.mark.parametrize("a, b, c, h", [(50, 22, 24, 30), (45, 15, 18, 0), (40, 20, 20, 40), (48, 20, 23, -10)])
def test_truncated_ellipsoid_formulas_match_numeric_integration(a, b, c, h):
    disks, _ = integrate.quad(lambda u: math.pi * b * c * (1 - u**2 / a**2), -a, h)
    assert truncated_ellipsoid_volume_mm3(a, b, c, h) == pytest.approx(disks, rel=1e-9)
    strip, _ = integrate.quad(lambda u: 2 * b * math.sqrt(max(0.0, 1 - u**2 / a**2)), -a, h)
    assert truncated_ellipse_area_mm2(a, b, h) == pytest.approx(strip, rel=1e-6)
    # independent check: count 0.5 mm voxels inside the truncated ellipsoid
    step = 0.5
    u = np.arange(-a, h, step) + step / 2
    y = np.arange(-b, b, step) + step / 2
    w = np.arange(-c, c, step) + step / 2
    inside = (u[:, None, None] / a) ** 2 + (y[None, :, None] / b) ** 2 + (w[None, None, :] / c) ** 2 <= 1
    assert inside.sum() * step**3 == pytest.approx(truncated_ellipsoid_volume_mm3(a, b, c, h), rel=0.01)


def test_patient_volumes_ef_and_volume_curve():
    patient = sample_patient(3, seed=7)
    assert 50 < patient.edv_ml < 200 and 30 <= patient.ef_percent <= 70
    assert patient.esv_ml == pytest.approx(patient.edv_ml * (1 - patient.ef_percent / 100))
    for view, acquisition in patient.views.items():
        curve = patient.volume_curve_ml(view)
        assert len(curve) == acquisition.n_frames
        assert curve[0] == pytest.approx(patient.edv_ml) and max(curve) == curve[0]
        assert curve[acquisition.es_frame - 1] == pytest.approx(patient.esv_ml) and min(curve) == pytest.approx(
            patient.esv_ml
        )
        assert all(x >= y for x, y in zip(curve[: acquisition.es_frame], curve[1 : acquisition.es_frame]))


def test_rendered_masks_are_the_analytic_cross_sections():
    """LV areas match the truncated ellipses, and a disk summation over both views gives the analytic volume."""
    patient = sample_patient(1)
    upright = {view: ViewAcquisition(acq.n_frames, acq.es_frame, 0.0, 0.0, 22.0) for view, acq in patient.views.items()}
    patient = type(patient)(**{**patient.__dict__, "views": upright})
    for frame_of in (lambda acq: 1, lambda acq: acq.es_frame):
        widths, spacing = {}, None
        for view in ("2CH", "4CH"):
            frame = frame_of(patient.views[view])
            _, label, spacing = render_frame(patient, view, frame, size=512, depth_mm=160)
            lv = label == 1
            shape = patient.shape(view, frame)
            assert lv.sum() * spacing**2 == pytest.approx(shape.lv_area_mm2(view), rel=0.01)
            widths[view] = lv.sum(axis=1) * spacing
            assert lv.any(axis=1).sum() * spacing == pytest.approx(shape.length_mm, abs=2 * spacing)
        disks = math.pi / 4 * np.sum(widths["2CH"] * widths["4CH"]) * spacing / 1000
        assert disks == pytest.approx(patient.shape("2CH", frame_of(patient.views["2CH"])).lv_volume_ml(), rel=0.02)


def test_rendered_frame_looks_like_echo():
    patient = sample_patient(2)
    image, label, spacing = render_frame(patient, "4CH", 1)
    assert image.dtype == np.uint8 and image.shape == (256, 256) and spacing == pytest.approx(160 / 256)
    assert image[0, 0] == 0 and image[5, 128] > 0  # outside / just below the tip of the sector
    means = {value: image[label == value].mean() for value in (1, 2, 3)}
    tissue = image[(label == 0) & (image > 0)].mean()
    assert means[1] < tissue - 40 and means[3] < tissue - 40 and means[2] > tissue + 30
    rows = np.nonzero((label == 1).any(axis=1))[0]
    assert rows.min() < np.nonzero((label == 3).any(axis=1))[0].min()  # apex on top, LA below the LV
    again, _, _ = render_frame(patient, "4CH", 1)
    assert np.array_equal(image, again)


def test_generate_phantom_writes_camus_layout_and_converts(tmp_path, nnunet_dirs):
    root = generate_phantom(tmp_path / "phantom", n_patients=10, size=96, sequences=True, seed=3, progress=False)
    truth = load_phantom_truth(root)["patients"]
    folder = root / "database_nifti" / "patient0002"
    info = parse_info_file(folder / "Info_4CH.cfg")
    assert info["EF"] == pytest.approx(truth["patient0002"]["EF"], abs=0.01)
    assert info["LVedv"] == pytest.approx(truth["patient0002"]["EDV_ml"], abs=0.01)
    assert info["ED"] == 1 and info["ES"] == truth["patient0002"]["views"]["4CH"]["ES"]
    sequence = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "patient0002_4CH_half_sequence.nii.gz")))
    assert sequence.shape == (info["NbFrame"], 96, 96)
    es, spacing = read_frame(folder / "patient0002_4CH_ES.nii.gz")
    assert np.array_equal(es, sequence[info["ES"] - 1]) and spacing == pytest.approx((160 / 96, 160 / 96))
    assert (
        len(truth["patient0002"]["views"]["2CH"]["volumes_ml"]) == parse_info_file(folder / "Info_2CH.cfg")["NbFrame"]
    )
    assert (root / "database_split" / "subgroup_testing.txt").read_text().count("patient") == 1

    out = convert_camus(root, 502, export_sequences=True, verify=False, progress=False)
    metadata = read_dataset_metadata(out)
    assert sum(m["subset"] == "test" for m in metadata["patients"].values()) == 1
    assert all(m["spacing_is_physical"] for m in metadata["patients"].values())
    assert metadata["sequences"]["patient0002_4CH"]["n_frames"] == info["NbFrame"]

    with pytest.raises(InputError, match="not empty"):
        generate_phantom(root, n_patients=2, size=64, progress=False)
    again = generate_phantom(root, n_patients=2, size=64, seed=3, overwrite=True, progress=False)
    assert sorted(p.name for p in (again / "database_nifti").iterdir()) == ["patient0001", "patient0002"]


def test_heart_shape_interpolation_is_linear_in_parameters():
    ed = HeartShape(50, 30, 22, 24, 9, 16, 26)
    es = HeartShape(44, 26, 15, 16, 12, 18, 30)
    middle = ed.interpolate(es, 0.5)
    assert middle.long_semi_axis == 47 and middle.semi_axis(view="4CH") == 20
    assert es.lv_volume_ml() < middle.lv_volume_ml() < ed.lv_volume_ml()
