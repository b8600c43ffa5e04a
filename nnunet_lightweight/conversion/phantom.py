"""A synthetic echocardiography phantom in the CAMUS NIfTI layout, with analytically known LV volumes.

Geometry (all lengths in mm). The LV cavity is a prolate ellipsoid truncated at the mitral (base) plane:

    (u / a)^2 + (y / b)^2 + (w / c)^2 <= 1,    -a <= u <= h

with u the long-axis coordinate from the ellipsoid centre towards the base, a the long semi-axis, h the distance from
the centre to the base plane (the apex-to-base length is L = a + h), b the short semi-axis seen in the 2-chamber
plane and c the one seen in the 4-chamber plane. The 2CH and 4CH images are the two orthogonal long-axis planes
through the ellipsoid, so each image shows the truncated ellipse with semi-axes (a, b) resp. (a, c), and the
cross-section at every height u is an ellipse of area pi*b*c*(1 - u^2/a^2). Hence

    V = pi*b*c * integral_{-a}^{h} (1 - u^2/a^2) du = pi*b*c * (2a/3 + h - h^3/(3a^2)),

which Simpson's biplane method of disks recovers exactly in the limit of thin disks (pi/4 * d_2CH * d_4CH is the
area of an elliptic disk). The myocardium is the band between the cavity and an outer ellipse with semi-axes
(a + 0.9 t, b + t) around the same centre, truncated at the same base plane (t = wall thickness); the left atrium is
the part below the base plane of an ellipse centred just below it. The apex stays fixed through the cycle and the
base moves towards it, as in real hearts. End-systole is derived from end-diastole by a longitudinal shortening s
(a, h scaled by 1 - s) and a radial factor k on b and c chosen so that the volume ratio ESV/EDV = 1 - EF exactly.

Images: a 78-degree sector whose tip is the top-centre pixel, so the LV apex lies in the top rows as in CAMUS; the
long axis is tilted by a few degrees per view (volumes do not change). Default pixels are 160 mm / 256 = 0.625 mm.
Rendering: Rayleigh-like speckle (magnitude of low-pass filtered complex noise, elongated laterally), tissue reflectivity (blood pools dark,
myocardium bright, surroundings grey), depth attenuation and log compression to uint8. In 4CH views a right
ventricle and atrium (dark, labelled background) sit left of the septum.

Half-sequences run from ED (frame 1) through ES to NbFrame with a smooth (cosine) shape change; `volume_curve_ml`
gives the analytic LV volume of every frame, maximal at ED and minimal at ES.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.json_files import read_json_object
from nnunet_lightweight.core.labels import LABELS, PHASES, VIEWS
from nnunet_lightweight.core.output import OutputLayout, check_output_dir, staged_output

TRUTH_FILE = "phantom_truth.json"
# What `generate_phantom` writes: how a phantom of a version before the marker file is recognised.
PHANTOM_LAYOUT = OutputLayout(TRUTH_FILE, ("database_nifti", "database_split"))
SECTOR_HALF_ANGLE_DEG = 39.0
LA_CENTRE_OFFSET = 0.3  # LA ellipse centre below the base plane, in LA semi-axes: a wide, flat mitral junction
QUALITIES = {  # image quality -> (blood reflectivity, myocardium reflectivity, speckle-free noise floor)
    "Good": (0.05, 0.85, 0.02),
    "Medium": (0.09, 0.72, 0.04),
    "Poor": (0.14, 0.58, 0.07),
}


def truncated_ellipsoid_volume_mm3(a: float, b: float, c: float, h: float) -> float:
    """Volume of the ellipsoid (u/a)^2 + (y/b)^2 + (w/c)^2 <= 1 restricted to -a <= u <= h (|h| <= a)."""
    return math.pi * b * c * (2 * a / 3 + h - h**3 / (3 * a**2))


def truncated_ellipse_area_mm2(a: float, b: float, h: float) -> float:
    """Area of the ellipse (u/a)^2 + (y/b)^2 <= 1 restricted to -a <= u <= h (|h| <= a)."""
    phi = math.asin(h / a)
    return a * b * (phi + math.sin(phi) * math.cos(phi) + math.pi / 2)


@dataclass(frozen=True)
class HeartShape:
    """The phantom heart at one instant (mm)."""

    long_semi_axis: float  # a
    base_offset: float  # h: ellipsoid centre to base plane
    semi_axis_2ch: float  # b
    semi_axis_4ch: float  # c
    wall: float  # t: myocardial thickness
    la_semi_across: float
    la_semi_along: float

    @property
    def length_mm(self) -> float:
        """Apex-to-base length L = a + h."""
        return self.long_semi_axis + self.base_offset

    def semi_axis(self, view: str) -> float:
        """The short semi-axis visible in a view (b for 2CH, c for 4CH)."""
        return self.semi_axis_2ch if view == "2CH" else self.semi_axis_4ch

    def lv_volume_ml(self) -> float:
        """Analytic LV cavity volume in mL."""
        return (
            truncated_ellipsoid_volume_mm3(
                self.long_semi_axis, self.semi_axis_2ch, self.semi_axis_4ch, self.base_offset
            )
            / 1000.0
        )

    def lv_area_mm2(self, view: str) -> float:
        """Analytic LV cavity area in the view's image plane (mm^2)."""
        return truncated_ellipse_area_mm2(self.long_semi_axis, self.semi_axis(view), self.base_offset)

    def interpolate(self, other: "HeartShape", weight: float) -> "HeartShape":
        """Shape a fraction `weight` of the way from this one to `other` (every parameter linearly)."""
        mine, theirs = asdict(self), asdict(other)
        return HeartShape(**{k: (1 - weight) * mine[k] + weight * theirs[k] for k in mine})


@dataclass(frozen=True)
class ViewAcquisition:
    """How one view was acquired: frame count, ES frame, probe pose relative to the heart."""

    n_frames: int
    es_frame: int
    tilt_deg: float  # long-axis tilt from the vertical, about the apex
    apex_lateral_mm: float  # cavity apex position, lateral offset from the sector axis
    apex_depth_mm: float  # cavity apex depth below the sector tip

    def systole_fraction(self, frame: int) -> float:
        """0 at ED (frame 1), 1 at ES, smooth cosine in between; after ES the LV refills part of the way."""
        if not 1 <= frame <= self.n_frames:
            raise ValueError(f"frame {frame} outside 1..{self.n_frames}")
        if frame <= self.es_frame:
            return 0.5 * (1 - math.cos(math.pi * (frame - 1) / max(self.es_frame - 1, 1)))
        return 1 - 0.3 * (1 - math.cos(math.pi * (frame - self.es_frame) / (self.n_frames - self.es_frame)))


@dataclass(frozen=True)
class PhantomPatient:
    """One synthetic patient: ED and ES heart shapes and the two acquisitions."""

    patient_id: str
    index: int
    ed: HeartShape
    es: HeartShape
    views: dict = field(hash=False)  # view -> ViewAcquisition
    age: int
    sex: str
    quality: str
    frame_rate: float

    def shape(self, view: str, frame: int) -> HeartShape:
        """Heart shape of a frame of a view's half-sequence."""
        return self.ed.interpolate(self.es, self.views[view].systole_fraction(frame))

    def volume_ml(self, view: str, frame: int) -> float:
        """Analytic LV volume (mL) at a frame of a view's half-sequence."""
        return self.shape(view, frame).lv_volume_ml()

    def volume_curve_ml(self, view: str) -> list[float]:
        """Analytic LV volume (mL) of every frame 1..NbFrame of a view."""
        return [self.volume_ml(view, f) for f in range(1, self.views[view].n_frames + 1)]

    @property
    def edv_ml(self) -> float:
        return self.ed.lv_volume_ml()

    @property
    def esv_ml(self) -> float:
        return self.es.lv_volume_ml()

    @property
    def ef_percent(self) -> float:
        return 100.0 * (self.edv_ml - self.esv_ml) / self.edv_ml


def sample_patient(index: int, seed: int = 0) -> PhantomPatient:
    """A random but reproducible patient (`seed`, `index`), with realistic EDV (~70-160 mL) and EF (30-70 %)."""
    rng = np.random.default_rng([seed, index])
    a = rng.uniform(44, 54)
    ed = HeartShape(
        long_semi_axis=a,
        base_offset=a * rng.uniform(0.45, 0.7),
        semi_axis_2ch=rng.uniform(19, 25),
        semi_axis_4ch=rng.uniform(19, 25),
        wall=rng.uniform(7, 10),
        la_semi_across=rng.uniform(14, 18),
        la_semi_along=rng.uniform(24, 30),
    )
    ef = rng.uniform(0.30, 0.70)
    shortening = rng.uniform(0.08, 0.15)
    # V scales with (1 - s) along the axis and k^2 across it: k chosen so that ESV = (1 - EF) * EDV exactly
    radial = math.sqrt((1 - ef) / (1 - shortening))
    es = HeartShape(
        long_semi_axis=ed.long_semi_axis * (1 - shortening),
        base_offset=ed.base_offset * (1 - shortening),
        semi_axis_2ch=ed.semi_axis_2ch * radial,
        semi_axis_4ch=ed.semi_axis_4ch * radial,
        wall=ed.wall * rng.uniform(1.2, 1.4),
        la_semi_across=ed.la_semi_across * 1.12,
        la_semi_along=ed.la_semi_along * 1.15,
    )
    views = {}
    for view in VIEWS:
        n_frames = int(rng.integers(14, 23))
        views[view] = ViewAcquisition(
            n_frames=n_frames,
            es_frame=n_frames - int(rng.integers(0, 3)),
            tilt_deg=rng.uniform(-8, 8),
            apex_lateral_mm=rng.uniform(-6, 6),
            apex_depth_mm=rng.uniform(18, 28),
        )
    return PhantomPatient(
        patient_id=f"patient{index:04d}",
        index=index,
        ed=ed,
        es=es,
        views=views,
        age=int(rng.integers(25, 90)),
        sex=str(rng.choice(["F", "M"])),
        quality=str(rng.choice(list(QUALITIES), p=[0.5, 0.35, 0.15])),
        frame_rate=float(rng.choice([25.0, 30.0, 40.0, 50.0])),
    )


def _ellipse(
    across: np.ndarray,
    along: np.ndarray,
    centre_along: float,
    semi_across: float,
    semi_along: float,
    centre_across: float = 0.0,
) -> np.ndarray:
    return ((across - centre_across) / semi_across) ** 2 + ((along - centre_along) / semi_along) ** 2 <= 1


def _anatomy(
    shape: HeartShape, acquisition: ViewAcquisition, view: str, size: int, spacing: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label map, extra blood pools (RV/RA), sector mask) of one frame."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    depth = (rows + 0.5) * spacing
    lateral = (cols + 0.5 - size / 2) * spacing
    sector = (np.hypot(depth, lateral) <= size * spacing) & (
        np.abs(np.degrees(np.arctan2(lateral, depth))) <= SECTOR_HALF_ANGLE_DEG
    )
    tilt = math.radians(acquisition.tilt_deg)
    dx, dz = lateral - acquisition.apex_lateral_mm, depth - acquisition.apex_depth_mm
    along = dx * math.sin(tilt) + dz * math.cos(tilt)  # from the cavity apex towards the base
    across = dx * math.cos(tilt) - dz * math.sin(tilt)  # positive towards the image's right
    a, b, t = shape.long_semi_axis, shape.semi_axis(view), shape.wall
    base = shape.length_mm
    above_base = along <= base
    lv = _ellipse(across, along, a, b, a) & above_base
    myo = _ellipse(across, along, a, b + t, a + 0.9 * t) & above_base & ~lv
    la = (
        _ellipse(
            across, along, base + LA_CENTRE_OFFSET * shape.la_semi_along, shape.la_semi_across, shape.la_semi_along
        )
        & (along > base)
        & ~myo
    )
    label = np.zeros((size, size), dtype=np.uint8)
    label[la] = LABELS["LA"]
    label[myo] = LABELS["MYO"]
    label[lv] = LABELS["LV"]
    label[~sector] = 0
    right_heart = np.zeros((size, size), dtype=bool)
    if view == "4CH":
        rv_across = -(b + t + 3 + 0.7 * b)
        right_heart = _ellipse(across, along, 0.55 * base, 0.7 * b, 0.5 * base, rv_across) & above_base
        la_centre = base + LA_CENTRE_OFFSET * shape.la_semi_along
        right_heart |= _ellipse(
            across, along, la_centre, 0.85 * shape.la_semi_across, shape.la_semi_along, rv_across - 2
        ) & (along > base + 3)
        right_heart &= (label == 0) & sector
    return label, right_heart, sector


def render_frame(
    patient: PhantomPatient, view: str, frame: int, size: int = 256, depth_mm: float = 160.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, float]:
    """(uint8 image, uint8 label, isotropic spacing in mm) of one half-sequence frame; deterministic."""
    from scipy import ndimage

    spacing = depth_mm / size
    acquisition = patient.views[view]
    label, right_heart, sector = _anatomy(patient.shape(view, frame), acquisition, view, size, spacing)
    blood, myocardium, noise_floor = QUALITIES[patient.quality]
    view_rng = np.random.default_rng([seed, patient.index, VIEWS.index(view)])
    frame_rng = np.random.default_rng([seed, patient.index, VIEWS.index(view), frame])
    # tissue texture and speckle are fixed in the image for a view (the probe holds still); a fresh part per frame
    texture = ndimage.gaussian_filter(view_rng.standard_normal((size, size)), size / 32)
    texture /= np.abs(texture).max() + 1e-9
    reflectivity = 0.32 + 0.12 * texture
    reflectivity[label == LABELS["MYO"]] = myocardium + 0.08 * texture[label == LABELS["MYO"]]
    reflectivity[(label == LABELS["LV"]) | (label == LABELS["LA"]) | right_heart] = blood
    reflectivity = ndimage.gaussian_filter(reflectivity, 0.8)
    fixed = view_rng.standard_normal((2, size, size))
    fresh = frame_rng.standard_normal((2, size, size))
    field_ = 0.9 * fixed + 0.436 * fresh
    speckle = np.hypot(*(ndimage.gaussian_filter(f, (0.7, 1.6)) for f in field_))
    speckle /= np.sqrt(np.mean(speckle**2))
    radius = np.hypot(*np.mgrid[0:size, 0:size] - np.array([-0.5, size / 2 - 0.5])[:, None, None]) * spacing
    attenuation = np.exp(-radius / (1.5 * depth_mm))
    envelope = reflectivity * speckle * attenuation + noise_floor * np.abs(frame_rng.standard_normal((size, size)))
    image = np.log1p(12 * envelope) / np.log1p(12 * 1.6)
    image = np.clip(np.round(255 * image), 0, 255).astype(np.uint8)
    image[~sector] = 0
    return image, label, spacing


def _info_text(patient: PhantomPatient, view: str) -> str:
    acquisition = patient.views[view]
    entries = {
        "ED": 1,
        "ES": acquisition.es_frame,
        "NbFrame": acquisition.n_frames,
        "Sex": patient.sex,
        "Age": patient.age,
        "ImageQuality": patient.quality,
        "EF": round(patient.ef_percent, 2),
        "FrameRate": patient.frame_rate,
        "LVedv": round(patient.edv_ml, 2),
        "LVesv": round(patient.esv_ml, 2),
    }
    return "".join(f"{key}: {value}\n" for key, value in entries.items())


def _write(array: np.ndarray, spacing: tuple[float, ...], path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path), True)


def _truth(patient: PhantomPatient, spacing: float) -> dict:
    return {
        "EDV_ml": patient.edv_ml,
        "ESV_ml": patient.esv_ml,
        "EF": patient.ef_percent,
        "spacing_mm": spacing,
        "quality": patient.quality,
        "shapes": {"ED": asdict(patient.ed), "ES": asdict(patient.es)},
        "views": {
            view: {
                **asdict(acq),
                "ED": 1,
                "ES": acq.es_frame,
                "NbFrame": acq.n_frames,
                "volumes_ml": patient.volume_curve_ml(view),
            }
            for view, acq in patient.views.items()
        },
    }


def generate_phantom(
    out_dir: str | os.PathLike,
    n_patients: int = 20,
    size: int = 256,
    sequences: bool = False,
    seed: int = 0,
    overwrite: bool = False,
    depth_mm: float = 160.0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    progress: bool = True,
) -> Path:
    """Write a CAMUS-layout phantom (`database_nifti/`, `database_split/`, `phantom_truth.json`) into `out_dir`.

    Patients get official-style subgroups: floor(test_fraction * n) testing, at least one validation patient and
    the rest training. `phantom_truth.json` holds, per patient, EDV/ESV/EF, both shapes and every frame's volume.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir).expanduser().resolve()
    if n_patients < 1 or size < 32:
        raise InputError(f"need at least 1 patient and 32-pixel frames, got {n_patients} patients of {size} pixels")
    target = check_output_dir(out_dir, overwrite, inputs=(), layout=PHANTOM_LAYOUT)
    with staged_output(target) as staging:
        truth = {"seed": seed, "size": size, "depth_mm": depth_mm, "labels": LABELS, "patients": {}}
        patients = [sample_patient(i, seed) for i in range(1, n_patients + 1)]
        for patient in tqdm(patients, desc="phantom", unit="patient", disable=not progress):
            folder = staging / "database_nifti" / patient.patient_id
            folder.mkdir(parents=True)
            for view in VIEWS:
                acquisition = patient.views[view]
                (folder / f"Info_{view}.cfg").write_text(_info_text(patient, view))
                frames = range(1, acquisition.n_frames + 1) if sequences else (1, acquisition.es_frame)
                rendered = {f: render_frame(patient, view, f, size, depth_mm, seed) for f in frames}
                spacing = rendered[1][2]
                for phase, frame in zip(PHASES, (1, acquisition.es_frame)):
                    image, label, _ = rendered[frame]
                    _write(image, (spacing, spacing), folder / f"{patient.patient_id}_{view}_{phase}.nii.gz")
                    _write(label, (spacing, spacing), folder / f"{patient.patient_id}_{view}_{phase}_gt.nii.gz")
                if sequences:
                    stem = folder / f"{patient.patient_id}_{view}_half_sequence"
                    _write(np.stack([rendered[f][0] for f in frames]), (spacing, spacing, 1.0), Path(f"{stem}.nii.gz"))
                    _write(
                        np.stack([rendered[f][1] for f in frames]), (spacing, spacing, 1.0), Path(f"{stem}_gt.nii.gz")
                    )
            truth["patients"][patient.patient_id] = _truth(patient, depth_mm / size)
        ids = [p.patient_id for p in patients]
        order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
        n_test = int(test_fraction * len(ids))
        n_val = max(1, int(round(val_fraction * len(ids)))) if len(ids) - n_test > 1 else 0
        split_dir = staging / "database_split"
        split_dir.mkdir()
        groups = {
            "testing": order[:n_test],
            "validation": order[n_test : n_test + n_val],
            "training": order[n_test + n_val :],
        }
        for group, members in groups.items():
            if members:
                (split_dir / f"subgroup_{group}.txt").write_text("".join(f"{p}\n" for p in sorted(members)))
        (staging / TRUTH_FILE).write_text(json.dumps(truth, indent=1))
    return out_dir


def load_phantom_truth(phantom_dir: str | os.PathLike) -> dict:
    """The analytic ground truth (`phantom_truth.json`) of a generated phantom."""
    return read_json_object(
        Path(phantom_dir) / TRUTH_FILE, "phantom truth", "not a phantom generated by lightecho phantom"
    )
