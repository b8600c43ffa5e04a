"""Shared machinery of the converters: validated frame I/O, resizing, patient-level splits, atomic dataset writing.

Evaluation and clinical measurements use the same case-id parser, image reader, metadata-sidecar reader/finder and
staged output folders from here, so the format the converter writes is read in one place.

Every converter (CAMUS, generic, phantom) lists its frames as `FrameSource` records and hands them to
`build_dataset`, which writes an nnU-Net raw dataset:

    DatasetXXX_NAME/
      dataset.json              nnU-Net's (written by generate_dataset_json), channel "echo" -> z-score
      imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz     training patients
      imagesTs/, labelsTs/      held-out test patients (labelsTs only where labels exist)
      splits_final.json         patient-level folds; `install_splits` copies it to nnUNet_preprocessed
      camus_metadata.json       per patient: Info fields, source spacing, whether spacing is physical
      sequences/                optional half-sequences (one 2D file per frame) for sequence inference

Case identifiers are `<patient>_<2CH|4CH>_<ED|ES>`; every frame is a 2D NIfTI with spacing (col, row) in mm, so
nnU-Net's default 2d configuration applies. The dataset is built in a hidden temporary folder next to its final
place and moved there only after nnU-Net's integrity check passed: a failed conversion leaves nothing behind.
"""
from __future__ import annotations

import fnmatch
import gzip
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_lightweight import __version__
from nnunet_lightweight.errors import InputError

logger = logging.getLogger(__name__)

LABELS = {"background": 0, "LV": 1, "MYO": 2, "LA": 3}
VIEWS = ("2CH", "4CH")
PHASES = ("ED", "ES")
CHANNEL_NAMES = {0: "echo"}
FILE_ENDING = ".nii.gz"
METADATA_FILE = "camus_metadata.json"
SPLITS_FILE = "splits_final.json"
SEQUENCES_FOLDER = "sequences"
DEFAULT_SEED = 12345
# The one grammar of case ids; file-name patterns (e.g. the clinical mask finder) embed it.
CASE_ID_REGEX = r"(?P<patient>.+)_(?P<view>2CH|4CH)_(?P<phase>ED|ES)"
CASE_ID_PATTERN = re.compile(rf"^{CASE_ID_REGEX}$")
_CASE_ID_ANY_CASE = re.compile(CASE_ID_PATTERN.pattern, re.IGNORECASE)
UNKNOWN = "unknown"
PATIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
INTERPOLATION_ORDERS = {"linear": 1, "cubic": 3}


def case_id(patient: str, view: str, phase: str) -> str:
    """The nnU-Net case identifier of one frame, e.g. `patient0001_2CH_ED`."""
    return f"{patient}_{view}_{phase}"


@dataclass(frozen=True)
class CaseInfo:
    """What a case id says about a frame: patient, view (2CH/4CH) and phase (ED/ES), `unknown` where it says nothing."""

    case: str
    patient: str
    view: str
    phase: str


def parse_case_id(case: str) -> CaseInfo:
    """Split `<patient>_<2CH|4CH>_<ED|ES>` (view and phase in any letter case); other ids keep the whole id as
    patient and `unknown` view and phase."""
    match = _CASE_ID_ANY_CASE.match(case)
    if not match:
        return CaseInfo(case, case, UNKNOWN, UNKNOWN)
    return CaseInfo(case, match["patient"], match["view"].upper(), match["phase"].upper())


def sequence_frame_id(patient: str, view: str, frame: int) -> str:
    """Id of a half-sequence frame, 1-based as in the CAMUS Info files, e.g. `patient0001_2CH_frame003`."""
    return f"{patient}_{view}_frame{frame:03d}"


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name for a dataset, e.g. `Dataset500_CAMUS`."""
    return f"Dataset{dataset_id:03d}_{name}"


def nnunet_folder(variable: str, override: str | os.PathLike | None = None) -> Path:
    """An nnU-Net base folder (`nnUNet_raw`, `nnUNet_preprocessed`) from the argument or the environment."""
    value = override if override is not None else os.environ.get(variable)
    if not value:
        raise InputError(f"{variable} is not set: export {variable}=/path/to/folder (see nnU-Net's setting_up_paths)")
    return Path(value)


# ---------------------------------------------------------------------------------------------------------------
# Frame I/O
# ---------------------------------------------------------------------------------------------------------------

def read_image(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Pixel array (singleton axes removed, numpy order) and its spacing per axis; InputError naming the file."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing file: {path}")
    try:
        image = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(image)
    except RuntimeError as error:
        # ITK's first line names its own source file; the lines after it say what went wrong
        reason = " ".join(line.strip() for line in str(error).splitlines()[1:] if line.strip()) or str(error)
        raise InputError(f"cannot read {path} (unreadable or truncated file): {reason}") from None
    check_image_content(path, array)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path} has {image.GetNumberOfComponentsPerPixel()} components per pixel; "
                         "expected a single-channel (grayscale) image")
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    # nnU-Net writes 2D cases either as 2D images or as 3D images with one slice; both mean the same frame.
    kept = [axis for axis, size in enumerate(array.shape) if size > 1] or [array.ndim - 1]
    return array.reshape([array.shape[axis] for axis in kept]), tuple(spacing[axis] for axis in kept)


def check_image_content(path: Path, array: np.ndarray) -> None:
    """InputError naming the file for what readers accept silently: a truncated NIfTI file (ITK fills the missing
    pixels with 0) and NaN or infinite pixel values (a network turns them into an all-background mask). Every image
    reader calls this, also where the pixels come from nnU-Net's or SimpleITK's own readers."""
    path = Path(path)
    if path.name.endswith((".nii", ".nii.gz")):
        _check_nifti_file(path)  # ITK's NIfTI reader turns NaN into 0, so the file itself is checked
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        _raise_not_finite(path, int(np.count_nonzero(~np.isfinite(array))))


def _raise_not_finite(path: Path, count: int) -> None:
    raise InputError(f"{path} has {count} NaN or infinite pixel value(s); expected finite intensities")


# NIfTI datatype codes of real floating-point pixels
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def _check_nifti_file(path: Path) -> None:
    """InputError for a NIfTI file shorter than its header's pixel data offset plus the size its header declares,
    or whose floating-point pixels hold NaN or infinity."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                content = handle.read()
        else:
            content = path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise InputError(f"cannot read {path} (unreadable or truncated file): {error}") from None
    offset, data_bytes, float_dtype = _nifti_layout(content[:540], path)
    if len(content) < offset + data_bytes:
        raise InputError(f"cannot read {path} (truncated file): it holds {len(content)} bytes, its header and "
                         f"pixel data need {offset + data_bytes}")
    if float_dtype is not None:
        pixels = np.frombuffer(content, dtype=float_dtype, count=data_bytes // np.dtype(float_dtype).itemsize,
                               offset=offset)
        if not np.isfinite(pixels).all():
            _raise_not_finite(path, int(np.count_nonzero(~np.isfinite(pixels))))


def _nifti_layout(header: bytes, path: Path) -> tuple[int, int, str | None]:
    """(vox_offset, bytes of pixel data, numpy dtype of floating-point pixels or None) of a NIfTI-1 or NIfTI-2
    header in either byte order. The size comes from the header's dim and bitpix, not from the array read: ITK
    returns scaled (scl_slope) integers as floats."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(f"{order}i", header[:4])[0] == 348:
            dims = struct.unpack(f"{order}8h", header[40:56])
            datatype, bitpix = struct.unpack(f"{order}2h", header[70:74])
            offset = int(struct.unpack(f"{order}f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(f"{order}i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(f"{order}2h", header[12:16])
            dims = struct.unpack(f"{order}8q", header[16:80])
            offset = struct.unpack(f"{order}q", header[168:176])[0]
            break
    else:
        raise InputError(f"cannot read {path} (truncated file or not a NIfTI file): no NIfTI-1/2 header")
    n_voxels = int(np.prod([max(int(d), 1) for d in dims[1:1 + max(min(int(dims[0]), 7), 1)]]))
    float_dtype = order + _NIFTI_FLOATS[datatype] if datatype in _NIFTI_FLOATS else None
    return offset, n_voxels * max(int(bitpix), 8) // 8, float_dtype


def read_frame(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """A 2D frame (rows, cols) and its (row, col) spacing; singleton axes are dropped, real 3D is rejected."""
    array, spacing = read_image(path)
    if array.ndim != 2:
        raise InputError(f"{path} is not a 2D frame: shape {array.shape} after removing singleton axes")
    return array, (spacing[0], spacing[1])


def read_sequence(path: Path) -> tuple[np.ndarray, tuple[float, float]]:
    """A half-sequence as (frames, rows, cols) with the in-plane (row, col) spacing."""
    array, spacing = read_image(path)
    if array.ndim == 2:
        return array[None], (spacing[0], spacing[1])
    if array.ndim != 3:
        raise InputError(f"{path} is not a sequence of 2D frames: shape {array.shape}")
    return array, (spacing[1], spacing[2])


def write_frame(array: np.ndarray, spacing: tuple[float, float], path: Path) -> None:
    """Write a 2D frame as NIfTI with SimpleITK spacing (col, row), origin 0 and identity direction."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing((float(spacing[1]), float(spacing[0])))
    sitk.WriteImage(image, str(path), True)


def map_labels(label: np.ndarray, label_map: Mapping[int, int], path: Path) -> np.ndarray:
    """Label array with source values replaced by target ids; InputError naming the file on unknown values."""
    if not np.issubdtype(label.dtype, np.integer):
        if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
            raise InputError(f"{path} has non-integer label values; labels must be integers")
        label = label.astype(np.int64)
    values = np.unique(label)
    unexpected = [int(v) for v in values if int(v) not in label_map]
    if unexpected:
        raise InputError(f"{path} has unexpected label values {unexpected}; expected only "
                         f"{sorted(label_map)}")
    mapped = np.zeros(label.shape, dtype=np.uint8)
    for value in values:
        mapped[label == value] = label_map[int(value)]
    return mapped


def resize_frame(array: np.ndarray, spacing: tuple[float, float], shape: tuple[int, int], *, is_label: bool,
                 interpolation: str = "linear") -> tuple[np.ndarray, tuple[float, float]]:
    """Resize a frame to `shape` keeping its physical extent: the spacing grows by the inverse factor.

    Pixel edges stay aligned (grid mode), labels use nearest neighbour, images linear or cubic interpolation with
    a Gaussian anti-aliasing filter when shrinking; images keep their dtype and value range.
    """
    from scipy import ndimage

    factors = (shape[0] / array.shape[0], shape[1] / array.shape[1])
    new_spacing = (spacing[0] / factors[0], spacing[1] / factors[1])
    if tuple(array.shape) == tuple(shape):
        return array, new_spacing
    if is_label:
        resized = ndimage.zoom(array, factors, order=0, mode="nearest", grid_mode=True)
    else:
        smoothing = [max(0.0, (1 / f - 1) / 2) for f in factors]
        source = array.astype(np.float32)
        if any(s > 0 for s in smoothing):
            source = ndimage.gaussian_filter(source, smoothing, mode="nearest")
        resized = ndimage.zoom(source, factors, order=INTERPOLATION_ORDERS[interpolation], mode="nearest",
                               grid_mode=True)
        resized = np.clip(resized, float(array.min()), float(array.max()))
        if np.issubdtype(array.dtype, np.integer):
            resized = np.round(resized)
        resized = resized.astype(array.dtype)
    if resized.shape != tuple(shape):
        raise AssertionError(f"resize produced {resized.shape}, expected {shape}")
    return resized, new_spacing


def normalize_resize(resize: int | Sequence[int] | None) -> tuple[int, int] | None:
    """`256`, `(256,)` or `(rows, cols)` as a (rows, cols) tuple of ints, or None."""
    if resize is None:
        return None
    shape = tuple(int(s) for s in np.atleast_1d(resize))
    shape = shape * 2 if len(shape) == 1 else shape
    if len(shape) != 2 or min(shape) < 8:
        raise InputError(f"--resize takes one or two sizes of at least 8 pixels, got {resize}")
    return shape


# ---------------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------------

_TEST_ONLY_HINT = "--split none converts every patient as a test set, without training cases"


def parse_split(split: str) -> tuple[str, int]:
    """('cv', folds) for 'cv5'/'cv10', ('paper', 1), ('official', 1) or ('none', 0); InputError otherwise."""
    match = re.fullmatch(r"cv(\d+)", split)
    if match and int(match[1]) >= 2:
        return "cv", int(match[1])
    if split in ("paper", "official"):
        return split, 1
    if split == "none":
        return "none", 0
    raise InputError(f"unknown split '{split}': use cv<N> (e.g. cv5), paper, official or none")


def patient_folds(patients: Iterable[str], n_folds: int = 5, seed: int = DEFAULT_SEED) -> list[list[str]]:
    """Patients shuffled with `seed` and dealt round-robin into `n_folds` folds whose sizes differ by at most 1."""
    ordered = sorted(set(patients))
    if len(ordered) < n_folds:
        raise InputError(f"{n_folds}-fold cross-validation needs at least {n_folds} patients, got "
                         f"{len(ordered)} labelled ({_TEST_ONLY_HINT})")
    order = np.random.RandomState(seed).permutation(len(ordered))
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for position, index in enumerate(order):
        folds[position % n_folds].append(ordered[index])
    return [sorted(fold) for fold in folds]


def holdout_split(patients: Iterable[str], val_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = DEFAULT_SEED) -> dict[str, list[str]]:
    """The paper's patient-level train/val/test split (80/10/10 by default), shuffled with `seed`."""
    ordered = sorted(set(patients))

    def sizes(n: int) -> tuple[int, int]:
        return int(round(test_fraction * n)), int(round(val_fraction * n))

    def feasible(n: int) -> bool:
        n_test, n_val = sizes(n)
        return n - n_test - n_val >= 1 and n_val >= 1

    if not feasible(len(ordered)):
        needed = next((n for n in range(len(ordered) + 1, 10_000) if feasible(n)), None)
        raise InputError(f"a train/val/test split with {val_fraction:.0%} validation and {test_fraction:.0%} test "
                         f"patients needs at least {needed} patients, got {len(ordered)} labelled "
                         f"({_TEST_ONLY_HINT})")
    n_test, n_val = sizes(len(ordered))
    shuffled = [ordered[i] for i in np.random.RandomState(seed).permutation(len(ordered))]
    return {"test": sorted(shuffled[:n_test]), "val": sorted(shuffled[n_test:n_test + n_val]),
            "train": sorted(shuffled[n_test + n_val:])}


def install_splits(dataset_id: int | str, raw_dir: str | os.PathLike | None = None,
                   preprocessed_dir: str | os.PathLike | None = None) -> Path:
    """Copy the dataset's `splits_final.json` from nnUNet_raw into nnUNet_preprocessed (where nnU-Net reads it)."""
    raw = nnunet_folder("nnUNet_raw", raw_dir)
    preprocessed = nnunet_folder("nnUNet_preprocessed", preprocessed_dir)
    name = str(dataset_id)
    if not name.startswith("Dataset"):
        prefix = f"Dataset{int(dataset_id):03d}_"
        candidates = sorted(p.name for p in raw.glob(f"{prefix}*") if p.is_dir())
        if len(candidates) != 1:
            raise InputError(f"expected one dataset {prefix}* in {raw}, found {candidates or 'none'}")
        name = candidates[0]
    source = raw / name / SPLITS_FILE
    if not source.is_file():
        raise InputError(f"missing file: {source} (convert the dataset with lightecho convert-camus/convert-generic)")
    target = preprocessed / name / SPLITS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


# ---------------------------------------------------------------------------------------------------------------
# Dataset building
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameSource:
    """One ED or ES frame of one view of one patient, with its label file (None where unlabelled)."""

    patient: str
    view: str
    phase: str
    image: Path
    label: Path | None
    spacing: tuple[float, float] | None = None  # (row, col) in mm; overrides the header where given

    @property
    def case(self) -> str:
        return case_id(self.patient, self.view, self.phase)


@dataclass(frozen=True)
class SequenceSource:
    """The half-sequence (all frames) of one view of one patient, with its per-frame labels where present."""

    patient: str
    view: str
    image: Path
    label: Path | None
    spacing: tuple[float, float] | None = None


@dataclass
class PatientPlan:
    """Where a patient goes: `train` (imagesTr), `test` (imagesTs + labelsTs) or `unlabelled` (imagesTs only)."""

    subset: str
    official_subgroup: str | None = None
    info: dict[str, dict] = field(default_factory=dict)  # view -> parsed Info file
    has_physical_spacing_evidence: bool = False  # Info files or explicit spacings: headers are trusted


def check_patient_ids(frames: Sequence[FrameSource]) -> None:
    """InputError on malformed patient ids, unknown views/phases or duplicate frames (naming both files)."""
    seen: dict[str, FrameSource] = {}
    for frame in frames:
        if not PATIENT_ID_PATTERN.match(frame.patient):
            raise InputError(f"patient id '{frame.patient}' ({frame.image}) may only contain letters, digits, "
                             "'_' and '-'")
        if frame.view not in VIEWS or frame.phase not in PHASES:
            raise InputError(f"{frame.image}: view must be one of {VIEWS} and phase one of {PHASES}, "
                             f"got {frame.view}/{frame.phase}")
        if frame.case in seen:
            raise InputError(f"duplicate patient frame {frame.case}: {seen[frame.case].image} and {frame.image}")
        seen[frame.case] = frame


def plan_subsets(patients: Mapping[str, PatientPlan], split: str, seed: int,
                 official_groups: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, list[str]]]:
    """Assign held-out patients to `test` (in place) and return patient-level folds [{train, val}, ...]."""
    mode, n_folds = parse_split(split)
    trainable = sorted(p for p, plan in patients.items() if plan.subset == "train")
    if mode == "none":
        # A test-only set (down to a single patient): every labelled patient to imagesTs/labelsTs, no folds.
        for patient in trainable:
            patients[patient].subset = "test"
        return []
    if mode == "cv":
        return [{"train": sorted(set(trainable) - set(fold)), "val": fold}
                for fold in patient_folds(trainable, n_folds, seed)]
    if mode == "paper":
        holdout = holdout_split(trainable, seed=seed)
        for patient in holdout["test"]:
            patients[patient].subset = "test"
        return [{"train": holdout["train"], "val": holdout["val"]}]
    if not official_groups or not official_groups.get("training") or not official_groups.get("validation"):
        raise InputError("--split official needs database_split/subgroup_training.txt and "
                         "subgroup_validation.txt (CAMUS NIfTI release)")
    grouped = set(official_groups["training"]) | set(official_groups["validation"])
    if grouped != set(trainable):
        stray = sorted(grouped.symmetric_difference(trainable))
        raise InputError(f"the official training/validation subgroups do not match the labelled patients: "
                         f"{stray[:5]}{' ...' if len(stray) > 5 else ''}")
    return [{"train": sorted(official_groups["training"]), "val": sorted(official_groups["validation"])}]


def _cases_of(patients: Iterable[str], cases_by_patient: Mapping[str, list[str]]) -> list[str]:
    return sorted(case for patient in patients for case in cases_by_patient[patient])


class OutputExistsError(InputError, FileExistsError):
    """An output folder that already holds files, and no permission to replace it."""


# Written into every output folder this project creates: `--overwrite` replaces only folders that hold it (or, from
# versions before it, nothing but the files the command writes), never a folder of the user's own files.
OUTPUT_MARKER = ".lightecho-output.json"
_GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class OutputLayout:
    """What a command writes into its output folder, to recognise a folder an earlier version wrote (no marker).

    `signature` is a file every such folder holds (None for a command that writes no such file); `entries` are the
    fnmatch patterns of its other top-level entries. A folder with anything else in it is not replaced.
    """

    signature: str | None
    entries: tuple[str, ...] = ()

    def matches(self, folder: Path) -> bool:
        """Whether `folder` holds the signature file (where there is one) and nothing but this layout's entries."""
        names = [entry.name for entry in folder.iterdir()]
        patterns = (*self.entries, self.signature) if self.signature else self.entries
        return ((self.signature is None or self.signature in names) and
                all(any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns) for name in names))


@dataclass(frozen=True)
class OutputTarget:
    """An output folder that passed `check_output_dir`; `staged_output` checks it again at the final rename."""

    path: Path
    overwrite: bool
    what: str = "output folder"
    layout: OutputLayout | None = None
    # Run again under the lock of the parent folder just before the rename (e.g. the dataset id is still free).
    recheck: Callable[[], object] | None = None


def _real(path: str | os.PathLike) -> Path:
    """`path` with symlinks resolved; for a glob pattern, the folder part before its first wildcard."""
    text = os.fspath(path)
    if any(character in text for character in _GLOB_CHARACTERS):
        text = os.path.dirname(text[:min(text.index(c) for c in _GLOB_CHARACTERS if c in text)]) or "."
    return Path(os.path.realpath(os.path.expanduser(text)))


def check_not_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                    what: str = "output folder") -> None:
    """InputError where the output is one of the inputs, contains one or lies inside one (symlinks resolved)."""
    real_out = _real(out)
    for source in inputs:
        if source is None:
            continue
        real_in = _real(source)
        if real_out == real_in:
            problem = f"is the input {source}"
        elif real_out in real_in.parents:
            problem = f"contains the input {source}"
        elif real_in in real_out.parents:
            problem = f"lies inside the input {source}"
        else:
            continue
        raise InputError(f"{what} {out} {problem}: choose an output outside the inputs (nothing was written)")


def check_writable(out: str | os.PathLike, what: str = "output folder") -> None:
    """InputError where the file or folder `out` cannot be created or replaced (checked before any work, not after
    it): the nearest existing folder above it, and an existing folder `out` itself, must be writable."""
    out = Path(out).expanduser().absolute()
    above = next(p for p in out.parents if p.exists())
    if not above.is_dir():
        raise InputError(f"cannot create {what} {out}: {above} is not a folder")
    for folder in ([out] if out.is_dir() else []) + [above]:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"cannot write {what} {out}: no permission to write in {folder}")


def check_output_dir(out_dir: str | os.PathLike, overwrite: bool, what: str = "output folder", *,
                     inputs: Iterable[str | os.PathLike | None], layout: OutputLayout | None = None,
                     recheck: Callable[[], object] | None = None) -> OutputTarget:
    """Check an output folder before any work is done; pass the result to `staged_output`.

    The output may never be an input, contain one or lie inside one, whatever `overwrite` says. A non-empty folder
    is refused without `overwrite`, and with it unless this project wrote it (its marker file, or `layout` for a
    folder from an earlier version).
    """
    out_dir = Path(out_dir)
    check_not_input(out_dir, inputs, what)
    target = OutputTarget(out_dir, overwrite, what, layout, recheck)
    _check_replaceable(target)
    check_writable(out_dir, what)
    return target


def _check_replaceable(target: OutputTarget) -> None:
    out_dir = target.path
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path {out_dir} exists and is not a folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not target.overwrite:
        raise OutputExistsError(f"{target.what} {out_dir} exists and is not empty (pass --overwrite to replace it)")
    if not (out_dir / OUTPUT_MARKER).is_file() and not (target.layout and target.layout.matches(out_dir)):
        raise InputError(f"{target.what} {out_dir} was not written by lightecho (no {OUTPUT_MARKER}), so "
                         "--overwrite does not replace it: choose another folder or empty it yourself")


@contextmanager
def environment_variable(name: str, value: str) -> Iterator[None]:
    """`os.environ[name]` set to `value` inside the block and restored (or removed) after it: for settings that
    nnU-Net reads only from the environment (nnUNet_results, nnUNet_n_proc_DA)."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def current_umask() -> int:
    """The process umask (reading it means setting it; set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Give a file or folder made by `tempfile` (always private, 0600/0700) the permissions the umask asks for."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~current_umask())


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it: an interruption leaves no half file."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(text)
    follow_umask(handle.name)
    os.replace(handle.name, path)


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` (flock on the folder itself: released by the kernel if the process dies)."""
    import fcntl

    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


@contextmanager
def staged_output(target: OutputTarget) -> Iterator[Path]:
    """A hidden temporary sibling folder that becomes the output only when the block succeeds; removed on failure
    (Ctrl-C included).

    `target` comes from `check_output_dir`; its checks run again at the end, under a lock on the parent folder, so
    an output that another run wrote in the meantime is never replaced without `--overwrite`. The staging folder
    holds the marker file and follows the umask.
    """
    out_dir = target.path
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    except OSError as error:
        raise InputError(f"cannot write {target.what} {out_dir}: {error.strerror}") from None
    try:
        follow_umask(staging)
        (staging / OUTPUT_MARKER).write_text(json.dumps({"written_by": "lightecho", "version": __version__}) + "\n")
        yield staging
        with _folder_lock(out_dir.parent):
            try:
                if target.recheck is not None:
                    target.recheck()
                _check_replaceable(target)
            except InputError as error:
                raise type(error)(f"{error} (found at the end: another run wrote it meanwhile; this run's result "
                                  "was discarded)") from None
            if out_dir.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
                out_dir.rename(retired / out_dir.name)
                staging.rename(out_dir)
                shutil.rmtree(retired)
            else:
                staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# What `build_dataset` writes: how a dataset converted before the marker file existed is recognised.
DATASET_LAYOUT = OutputLayout(METADATA_FILE, ("dataset.json", SPLITS_FILE, "imagesTr", "labelsTr", "imagesTs",
                                              "labelsTs", SEQUENCES_FOLDER))


def check_dataset_id(raw: Path, dataset_id: int, name: str) -> Path:
    """The dataset folder for (id, name); InputError where another dataset already uses that id."""
    # nnU-Net names datasets DatasetXXX_NAME with exactly three digits: an id of 1000 or more is misread by it.
    if not isinstance(dataset_id, (int, np.integer)) or not 1 <= int(dataset_id) <= 999:
        raise InputError(f"dataset id must be an integer between 1 and 999 (nnU-Net's three-digit DatasetXXX "
                         f"names), got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise InputError(f"dataset name '{name}' may only contain letters, digits, '_' and '-'")
    folder = raw / dataset_folder_name(int(dataset_id), name)
    others = sorted(p.name for p in raw.glob(f"Dataset{int(dataset_id):03d}_*") if p.is_dir() and p != folder)
    if others:
        raise InputError(f"dataset id {dataset_id} is already used by {raw / others[0]}; pick another id or "
                         "remove that folder")
    return folder


def verify_dataset(folder: Path, num_processes: int) -> None:
    """nnU-Net's `verify_dataset_integrity`; its failures become an InputError naming the dataset folder."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    try:
        verify_dataset_integrity(str(folder), num_processes)
    except (AssertionError, RuntimeError, FileNotFoundError) as error:
        raise InputError(f"nnU-Net's dataset integrity check failed for {folder}: {error}") from None


def _convert_frame(frame: FrameSource, plan: PatientPlan, folder: Path, label_map: Mapping[int, int],
                   resize: tuple[int, int] | None, interpolation: str) -> dict:
    image, header_spacing = read_frame(frame.image)
    spacing = frame.spacing or header_spacing
    label = None
    if frame.label is not None:
        label, label_spacing = read_frame(frame.label)
        if label.shape != image.shape:
            raise InputError(f"shape mismatch: image {frame.image} is {image.shape}, label {frame.label} is "
                             f"{label.shape}")
        if frame.spacing is None and not np.allclose(label_spacing, header_spacing, rtol=1e-3):
            raise InputError(f"spacing mismatch: image {frame.image} has {header_spacing}, label {frame.label} "
                             f"has {label_spacing}")
        label = map_labels(label, label_map, frame.label)
    out_image, out_spacing = image, spacing
    if resize is not None:
        out_image, out_spacing = resize_frame(image, spacing, resize, is_label=False, interpolation=interpolation)
        if label is not None:
            label, _ = resize_frame(label, spacing, resize, is_label=True)
    images_dir, labels_dir = ("imagesTr", "labelsTr") if plan.subset == "train" else ("imagesTs", "labelsTs")
    image_rel = f"{images_dir}/{frame.case}_0000{FILE_ENDING}"
    write_frame(out_image, out_spacing, folder / image_rel)
    label_rel = None
    if label is not None:
        label_rel = f"{labels_dir}/{frame.case}{FILE_ENDING}"
        write_frame(label, out_spacing, folder / label_rel)
    return {"patient": frame.patient, "view": frame.view, "phase": frame.phase, "subset": plan.subset,
            "frame": (plan.info.get(frame.view) or {}).get(frame.phase), "image": image_rel, "label": label_rel,
            "source_image": str(frame.image), "source_shape": list(image.shape), "source_spacing_mm": list(spacing),
            "shape": list(out_image.shape), "spacing_mm": [float(s) for s in out_spacing]}


def _convert_sequence(sequence: SequenceSource, folder: Path, label_map: Mapping[int, int],
                      resize: tuple[int, int] | None, interpolation: str) -> dict:
    frames, header_spacing = read_sequence(sequence.image)
    spacing = sequence.spacing or header_spacing
    labels = None
    if sequence.label is not None:
        labels, _ = read_sequence(sequence.label)
        if labels.shape != frames.shape:
            raise InputError(f"shape mismatch: sequence {sequence.image} is {frames.shape}, labels "
                             f"{sequence.label} are {labels.shape}")
        labels = map_labels(labels, label_map, sequence.label)
    ids = []
    out_spacing = spacing
    for index in range(frames.shape[0]):
        frame_id = sequence_frame_id(sequence.patient, sequence.view, index + 1)
        image = frames[index]
        label = labels[index] if labels is not None else None
        if resize is not None:
            image, out_spacing = resize_frame(image, spacing, resize, is_label=False, interpolation=interpolation)
            if label is not None:
                label, _ = resize_frame(label, spacing, resize, is_label=True)
        write_frame(image, out_spacing, folder / SEQUENCES_FOLDER / "images" / f"{frame_id}_0000{FILE_ENDING}")
        if label is not None:
            write_frame(label, out_spacing, folder / SEQUENCES_FOLDER / "labels" / f"{frame_id}{FILE_ENDING}")
        ids.append(frame_id)
    return {"patient": sequence.patient, "view": sequence.view, "n_frames": len(ids), "frames": ids,
            "has_labels": labels is not None, "source_image": str(sequence.image),
            "spacing_mm": [float(s) for s in out_spacing]}


def build_dataset(frames: Sequence[FrameSource], patients: Mapping[str, PatientPlan], *, dataset_id: int,
                  name: str, raw_dir: str | os.PathLike | None = None, split: str = "cv5",
                  seed: int = DEFAULT_SEED, official_groups: Mapping[str, Sequence[str]] | None = None,
                  label_map: Mapping[int, int] | None = None, resize: int | Sequence[int] | None = None,
                  interpolation: str = "linear", spacing_units: str = "auto",
                  sequences: Sequence[SequenceSource] = (), overwrite: bool = False, verify: bool = True,
                  num_processes: int = 2, dataset_json_extra: Mapping | None = None,
                  metadata_extra: Mapping | None = None, progress: bool = True) -> Path:
    """Write the nnU-Net raw dataset for `frames` (see module docstring) and return its folder."""
    from tqdm import tqdm
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    if not frames:
        raise InputError("no frames to convert")
    if interpolation not in INTERPOLATION_ORDERS:
        raise InputError(f"interpolation must be one of {sorted(INTERPOLATION_ORDERS)}, got {interpolation}")
    if spacing_units not in ("auto", "mm", "pixel"):
        raise InputError(f"spacing_units must be auto, mm or pixel, got {spacing_units}")
    check_patient_ids(frames)
    shape = normalize_resize(resize)
    label_map = dict(label_map) if label_map is not None else {v: v for v in LABELS.values()}
    raw = nnunet_folder("nnUNet_raw", raw_dir)
    final_dir = check_dataset_id(raw, dataset_id, name)
    sources = [path for item in (*frames, *sequences) for path in (item.image, item.label)]
    # Rechecked under the lock on nnUNet_raw at the final rename: a concurrent conversion may have taken the id.
    target = check_output_dir(final_dir, overwrite, what="dataset", inputs=sources, layout=DATASET_LAYOUT,
                              recheck=lambda: check_dataset_id(raw, dataset_id, name))

    folds = plan_subsets(patients, split, seed, official_groups)
    cases_by_patient: dict[str, list[str]] = {}
    for frame in frames:
        cases_by_patient.setdefault(frame.patient, []).append(frame.case)

    with staged_output(target) as staging:
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (staging / sub).mkdir()
        if sequences:
            (staging / SEQUENCES_FOLDER / "images").mkdir(parents=True)
            (staging / SEQUENCES_FOLDER / "labels").mkdir()
        cases = {}
        for frame in tqdm(frames, desc=f"converting {final_dir.name}", unit="frame", disable=not progress):
            cases[frame.case] = _convert_frame(frame, patients[frame.patient], staging, label_map, shape,
                                               interpolation)
        sequence_records = {}
        for sequence in tqdm(sequences, desc="half-sequences", unit="sequence",
                             disable=not (progress and sequences)):
            record = _convert_sequence(sequence, staging, label_map, shape, interpolation)
            info = patients[sequence.patient].info.get(sequence.view) or {}
            record.update({"ED": info.get("ED"), "ES": info.get("ES")})
            sequence_records[f"{sequence.patient}_{sequence.view}"] = record
        if not any((staging / "labelsTs").iterdir()):
            (staging / "labelsTs").rmdir()
        if not any((staging / "imagesTs").iterdir()):
            (staging / "imagesTs").rmdir()
        if not sequence_records and (staging / SEQUENCES_FOLDER).exists():
            shutil.rmtree(staging / SEQUENCES_FOLDER)

        patient_meta = _patient_metadata(patients, cases, spacing_units)
        n_training = sum(1 for c in cases.values() if c["subset"] == "train")
        generate_dataset_json(
            str(staging), dict(CHANNEL_NAMES), dict(LABELS), n_training, FILE_ENDING, dataset_name=final_dir.name,
            **{"numTest": len(cases) - n_training, **(dataset_json_extra or {})})
        splits = [{subset: _cases_of(fold[subset], cases_by_patient) for subset in ("train", "val")}
                  for fold in folds]
        if splits:  # --split none: nothing to train on, so no splits for nnU-Net to find
            (staging / SPLITS_FILE).write_text(json.dumps(splits, indent=1))
        metadata = {"format_version": 1, "dataset": final_dir.name, "labels": LABELS,
                    "resize": list(shape) if shape else None, "interpolation": interpolation if shape else None,
                    "split": split, "seed": seed,
                    "folds": folds, "patients": patient_meta, "cases": cases, **(metadata_extra or {})}
        if sequence_records:
            metadata["sequences"] = sequence_records
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
        if verify and n_training:
            verify_dataset(staging, num_processes)
        elif verify:
            # nnU-Net's check reads the training cases only; each test frame was read and checked above
            logger.warning("no training cases (--split none): nnU-Net's dataset integrity check, which checks "
                           "imagesTr/labelsTr only, was skipped")
    preprocessed = os.environ.get("nnUNet_preprocessed")
    if overwrite and preprocessed and (Path(preprocessed) / final_dir.name).is_dir():
        logger.warning("%s was made from the replaced dataset: plan and preprocess again",
                       Path(preprocessed) / final_dir.name)
    return final_dir


def _patient_metadata(patients: Mapping[str, PatientPlan], cases: Mapping[str, dict],
                      spacing_units: str) -> dict[str, dict]:
    views: dict[str, dict[str, dict]] = {patient: {} for patient in patients}
    for record in cases.values():
        views[record["patient"]].setdefault(record["view"], {
            "info": patients[record["patient"]].info.get(record["view"]),
            "source_spacing_mm": record["source_spacing_mm"], "source_shape": record["source_shape"],
            "spacing_mm": record["spacing_mm"], "shape": record["shape"]})
    meta = {}
    for patient, plan in sorted(patients.items()):
        if spacing_units == "auto":
            unit_spacing = all(np.allclose(v["source_spacing_mm"], 1.0) for v in views[patient].values())
            physical = plan.has_physical_spacing_evidence or not unit_spacing
        else:
            physical = spacing_units == "mm"
        meta[patient] = {"subset": plan.subset, "official_subgroup": plan.official_subgroup,
                         "spacing_is_physical": bool(physical), "views": views[patient]}
    return meta


def read_json_object(path: str | os.PathLike, what: str, missing_hint: str = "") -> dict:
    """A JSON file holding an object; InputError naming the file where it is missing, unreadable or no object."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing file: {path}" + (f" ({missing_hint})" if missing_hint else ""))
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read {what} {path}: {error}") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} is not a JSON object")
    return data


def read_metadata(path: str | os.PathLike, missing_hint: str = "") -> dict:
    """The raw content of a metadata sidecar file (`camus_metadata.json`, written by `build_dataset`)."""
    return read_json_object(path, "metadata sidecar", missing_hint)


def load_metadata(dataset_dir: str | os.PathLike) -> dict:
    """The metadata sidecar (`camus_metadata.json`) of a converted dataset."""
    return read_metadata(Path(dataset_dir) / METADATA_FILE, "not a dataset converted by lightecho")


def find_metadata(*folders: str | os.PathLike | None, levels: int = 2) -> Path | None:
    """The metadata sidecar in the first of `folders` that has one in itself or up to `levels` folders above it
    (a raw dataset's labelsTr, or a prediction folder inside the dataset folder)."""
    for folder in folders:
        if folder is None:
            continue
        folder = Path(folder).resolve()
        for candidate in [folder, *folder.parents[:levels]]:
            if (candidate / METADATA_FILE).is_file():
                return candidate / METADATA_FILE
    return None


def metadata_patients(metadata: Mapping) -> dict[str, dict]:
    """{patient: entry} of a sidecar: the converter's `{"patients": {...}}`, or a plain dict keyed by patient id."""
    patients = metadata["patients"] if isinstance(metadata.get("patients"), dict) else metadata
    return {patient: entry for patient, entry in patients.items() if isinstance(entry, dict)}


def describe_dataset(dataset_dir: str | os.PathLike) -> str:
    """A few lines summarizing a converted dataset: frames and patients per subset, folds, spacing units."""
    metadata = load_metadata(dataset_dir)
    lines = [f"{Path(dataset_dir)}"]
    for subset, where in (("train", "imagesTr/labelsTr"), ("test", "imagesTs/labelsTs"),
                          ("unlabelled", "imagesTs, no labels")):
        patients = [p for p, m in metadata["patients"].items() if m["subset"] == subset]
        if patients:
            n_frames = sum(1 for c in metadata["cases"].values() if c["patient"] in set(patients))
            lines.append(f"  {subset:<10} {n_frames:5d} frames of {len(patients):4d} patients ({where})")
    folds = metadata["folds"]
    if folds:
        sizes = "/".join(str(len(f["val"])) for f in folds)
        lines.append(f"  split {metadata['split']}: {len(folds)} fold(s), validation patients per fold {sizes}")
    else:
        lines.append(f"  split {metadata['split']}: no training cases, every patient held out in imagesTs")
    physical = {m["spacing_is_physical"] for m in metadata["patients"].values()}
    lines.append("  spacing: " + {frozenset({True}): "physical (mm)", frozenset({False}): "pixel units (no physical "
                                  "spacing known)"}.get(frozenset(physical), "mixed: see camus_metadata.json"))
    if "sequences" in metadata:
        lines.append(f"  half-sequences: {len(metadata['sequences'])} in {SEQUENCES_FOLDER}/")
    return "\n".join(lines)
