"""Validated reading and writing of 2D frames, 2D+t sequences (NIfTI/MHA/NRRD via SimpleITK) and globs of frame
files: truncated, damaged or non-finite files stop with an InputError naming the file. Videos and DICOM clips are
read by `core.video_readers`, which builds on this module (never the other way round).
"""

from __future__ import annotations

import glob
import gzip
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_lightweight.core.errors import InputError

FILE_ENDING = ".nii.gz"


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
    check_one_component(path, image.GetNumberOfComponentsPerPixel())
    spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    # nnU-Net writes 2D cases either as 2D images or as 3D images with one slice; both mean the same frame.
    kept = [axis for axis, size in enumerate(array.shape) if size > 1] or [array.ndim - 1]
    return array.reshape([array.shape[axis] for axis in kept]), tuple(spacing[axis] for axis in kept)


def check_one_component(path: Path, components: int) -> None:
    """InputError naming the file where an image has colour or other vector pixels (`components` per pixel)."""
    if components != 1:
        raise InputError(f"{path} has {components} components per pixel; expected a single-channel (grayscale) image")


def check_same_grid(first: Path, second: Path, first_role: str, second_role: str, placement: bool = True) -> None:
    """InputError unless two images lie on the same pixel grid: shape and spacing (singleton axes dropped, as
    `read_image` does) and, with `placement`, orientation and origin, so that pixel (i, j) of one is pixel (i, j)
    of the other.

    Read from the headers only. A mask stored flipped with an affine that compensates has the same shape and
    spacing, but comparing its pixels with another's by index would compare different places.
    """
    import SimpleITK as sitk

    grids = []
    for path in (first, second):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise InputError(f"cannot read {path} (unreadable or truncated file)") from None
        size, dimension = reader.GetSize(), reader.GetDimension()
        kept = [axis for axis in range(dimension) if size[axis] > 1] or [0]
        direction = np.reshape(reader.GetDirection(), (dimension, dimension))
        grids.append((size, kept, reader.GetSpacing(), np.array(reader.GetOrigin()), direction))
    (size_a, kept_a, spacing_a, origin_a, direction_a), (size_b, kept_b, spacing_b, origin_b, direction_b) = grids
    shape_a, shape_b = ([s[axis] for axis in reversed(k)] for s, k in ((size_a, kept_a), (size_b, kept_b)))
    roles = f"{first_role} {first}", f"{second_role} {second}"
    if shape_a != shape_b:
        raise InputError(f"shape mismatch: {roles[0]} is {tuple(shape_a)}, {roles[1]} is {tuple(shape_b)}")
    spacing_a, spacing_b = ([s[axis] for axis in reversed(k)] for s, k in ((spacing_a, kept_a), (spacing_b, kept_b)))
    if not np.allclose(spacing_a, spacing_b, rtol=1e-3, atol=1e-6):
        raise InputError(f"spacing mismatch: {roles[0]} has {tuple(spacing_a)}, {roles[1]} has {tuple(spacing_b)}")
    if not placement:
        return
    # Physical axes both images have (a 2D frame is also stored as a 3D image of one slice).
    rows = min(len(origin_a), len(origin_b))
    axes_a, axes_b = direction_a[:rows, kept_a], direction_b[:rows, kept_b]
    if not np.allclose(axes_a, axes_b, atol=1e-3):
        raise InputError(
            f"orientation mismatch: {roles[0]} and {roles[1]} store their pixels in different orders "
            "(their headers' directions differ); resample one onto the other's grid"
        )
    if not np.allclose(origin_a[:rows], origin_b[:rows], rtol=0, atol=1e-3 * min(spacing_a) + 1e-4):
        raise InputError(
            f"origin mismatch: {roles[0]} starts at {tuple(origin_a[:rows])}, {roles[1]} at {tuple(origin_b[:rows])}"
        )


def read_segmentation(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """A label map as an integer array (singleton axes of 2D NIfTIs dropped) and its spacing in array axis order."""
    array, spacing = read_image(path)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise InputError(f"{path} holds non-integer values; expected a label map")
        array = array.astype(np.int32)
    return array, spacing


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
        raise InputError(
            f"cannot read {path} (truncated file): it holds {len(content)} bytes, its header and "
            f"pixel data need {offset + data_bytes}"
        )
    if float_dtype is not None:
        pixels = np.frombuffer(
            content, dtype=float_dtype, count=data_bytes // np.dtype(float_dtype).itemsize, offset=offset
        )
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
    n_voxels = int(np.prod([max(int(d), 1) for d in dims[1 : 1 + max(min(int(dims[0]), 7), 1)]]))
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


@dataclass
class Sequence:
    """Frames (T, H, W), their (row, col) spacing, where the spacing came from, the frame rate if known, and the
    (H, W) pixels coloured in any frame where the source is colour (overlays, never ultrasound sector)."""

    frames: np.ndarray
    spacing: tuple[float, float]
    spacing_source: str
    frame_rate: float | None = None
    coloured: np.ndarray | None = None


def read_sequence_file(path: str | Path, min_frames: int = 2) -> Sequence:
    """A 2D+t sequence from a NIfTI/MHA/NRRD file or a glob of 2D frame files, with at least `min_frames` frames
    (a cine loop needs two; `predict` segments a single still frame too). `core.video_readers.read_loop` also
    reads videos and DICOM."""
    text = str(path)
    if any(character in text for character in "*?["):
        return _read_frame_files(sorted(glob.glob(text), key=_natural_order), text, min_frames)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"sequence not found: {path}")
    frames, spacing = read_sequence(path)
    if frames.shape[0] < min_frames:
        raise InputError(f"{path} holds {frames.shape[0]} frame(s); a cine loop needs at least {min_frames}")
    return Sequence(frames, (float(spacing[0]), float(spacing[1])), "header")


def _natural_order(name: str) -> list:
    """Sort key that orders numbers by value: frame2 before frame10 (as unpadded frame numbers are meant)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_frame_files(paths: list[str], pattern: str, min_frames: int) -> Sequence:
    if len(paths) < max(min_frames, 1):
        raise InputError(
            f"the pattern {pattern} matches {len(paths)} file(s); a cine loop needs at least "
            f"{max(min_frames, 1)} frames"
        )
    frames, spacings = zip(*(read_frame(Path(p)) for p in paths))
    if len({f.shape for f in frames}) > 1:
        raise InputError(f"the frames matching {pattern} differ in shape: {sorted({f.shape for f in frames})}")
    if not all(np.allclose(s, spacings[0], rtol=1e-3) for s in spacings):
        raise InputError(f"the frames matching {pattern} differ in spacing")
    return Sequence(np.stack(frames), (float(spacings[0][0]), float(spacings[0][1])), "header")
