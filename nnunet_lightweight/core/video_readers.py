"""Echo clips as users have them, read as grey uint8 frames (T, H, W) with their frame rate and pixel size.

Formats (one suffix list, `CLIP_SUFFIXES`):
- multi-frame ultrasound DICOM through pydicom (uncompressed, JPEG Baseline, JPEG-LS, RLE; MONOCHROME, RGB,
  YBR_FULL, YBR_FULL_422, PALETTE COLOR), also files of any other name that carry DICOM's "DICM" marker;
- AVI/MP4/MOV/MKV/WEBM/GIF through PyAV;
- NIfTI/MHA/NRRD 2D+t grey sequences through `core.image_io` (time on the first array axis, as CAMUS
  half-sequences).

Still frames (PNG, JPEG, BMP, TIFF, WebP: screenshots and exported frames, `STILL_IMAGE_SUFFIXES`) are no clips,
but `read_still` decodes them through PyAV like a video's frames, for `predict`.

Colour never goes through a per-frame colour conversion: YBR data (DICOM YBR, the YUV planes of a video) gives
its Y plane, which is the grey level; RGB data a BT.601 weighted sum in integer arithmetic over a whole chunk of
frames. The same pass marks the pixels that are coloured in any frame (ECG traces, markers, colour Doppler), which
`core.sector` uses to tell overlays from the grey ultrasound sector.

`open_clip` reads the header and decodes lazily in chunks (decoding can overlap the network); `read_clip` decodes
everything; `read_loop` is the one reader of `cine --2ch/--4ch` and `predict`, which also take globs of frame files;
`prefetched` runs any reading loop in a background thread.
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import Sequence, read_sequence, read_sequence_file

# Containers PyAV decodes (GIF included).
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".gif")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
IMAGE_SEQUENCE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
CLIP_SUFFIXES = VIDEO_SUFFIXES + DICOM_SUFFIXES + IMAGE_SEQUENCE_SUFFIXES
# Still frames FFmpeg's image demuxers decode: colour, palette and 16-bit files as well as grey ones. Not clips
# (`cine` needs a moving heart, and a folder of clips may hold thumbnails), but frames `predict` segments.
STILL_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_CHUNK_FRAMES = 32
# `Sequence.spacing_source` of a clip whose file gives no pixel size (videos, DICOM without it): measured in pixels.
NO_SPACING = "none in the file"

# BT.601 luma weights in 1/256 (they sum to 256): Y = (77 R + 150 G + 29 B + 128) >> 8 fits in uint16.
_LUMA_WEIGHTS = (77, 150, 29)
# A pixel is coloured where its chroma departs from grey by more than this (0-255 scale): above JPEG's chroma
# noise on grey speckle (a few levels), below any overlay colour meant to be seen.
_CHROMA_THRESHOLD = 24
# A video decoding to fewer frames than this share of the count its container declares is truncated or damaged
# (declared counts of intact files can be off by a frame or two, never by a tenth).
_MIN_DECODED_SHARE = 0.9
# Planar YUV formats whose first plane is the 8-bit luma (the "j" formats are full range, the others limited).
_PLANAR_YUV = {"yuv420p", "yuv422p", "yuv444p", "yuv411p", "yuv410p", "yuvj420p", "yuvj422p", "yuvj444p", "gray"}
# Limited-range ("MPEG") luma 16-235 stretched to the full 0-255 range the grey frames were encoded from.
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_DICOM_MARKER_OFFSET = 128
# SequenceOfUltrasoundRegions codes (DICOM PS3.3 C.8.5.5): spatial format 1 = 2D tissue image, unit 3 = cm.
_REGION_2D, _UNIT_CM = 1, 3

Chunks = Iterator[tuple[np.ndarray, np.ndarray | None]]
Item = TypeVar("Item")


@dataclass
class Clip:
    """A decoded clip: grey frames (T, H, W) uint8, frames per second and (row, col) pixel size in mm where the
    file says, what it was read from, and the pixels coloured in any frame (None for grey sources)."""

    frames: np.ndarray
    fps: float | None
    spacing_mm: tuple[float, float] | None
    source: str
    coloured: np.ndarray | None = None


@dataclass
class ClipStream:
    """An opened clip: its header facts now, its frames decoded chunk by chunk by `chunks`."""

    path: Path
    fps: float | None
    spacing_mm: tuple[float, float] | None
    source: str
    _decode: Callable[[int], Chunks]
    min_frames: int = 2
    coloured: np.ndarray | None = field(default=None, init=False)
    frames_decoded: int = field(default=0, init=False)

    def chunks(self, frames_per_chunk: int = DEFAULT_CHUNK_FRAMES) -> Iterator[np.ndarray]:
        """Grey frames (t, H, W) uint8, `frames_per_chunk` at a time; `coloured` grows as they are decoded.

        InputError (naming the file) for undecodable or truncated data and, at the end, for fewer than
        `min_frames` frames."""
        for grey, coloured in self._decode(max(1, int(frames_per_chunk))):
            if coloured is not None:
                self.coloured = coloured if self.coloured is None else self.coloured | coloured
            self.frames_decoded += len(grey)
            yield grey
        if self.frames_decoded < self.min_frames:
            what = "a still frame" if self.frames_decoded == 1 else f"{self.frames_decoded} frames"
            raise InputError(f"{self.path} holds {what}; a cine clip needs at least {self.min_frames} frames")

    def read(self) -> Clip:
        """All frames decoded into one `Clip`."""
        frames = np.concatenate(list(self.chunks()))
        return Clip(frames, self.fps, self.spacing_mm, self.source, self.coloured)


def clip_kind(path: str | Path) -> str | None:
    """ "video", "dicom" or "sequence" for a file this module reads, None otherwise."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(VIDEO_SUFFIXES):
        return "video"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(IMAGE_SEQUENCE_SUFFIXES):
        return "sequence"
    if path.is_file():  # scanners and PACS write DICOM without a suffix, or named by UID (1.2.840....)
        with open(path, "rb") as handle:
            handle.seek(_DICOM_MARKER_OFFSET)
            if handle.read(4) == b"DICM":
                return "dicom"
    return None


def open_clip(path: str | Path, min_frames: int = 2) -> ClipStream:
    """Open a DICOM, video or 2D+t image file for chunked decoding; InputError naming the file if it cannot be."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"clip not found: {path}")
    kind = clip_kind(path)
    if kind is None:
        raise InputError(f"{path}: not a clip this reader handles ({', '.join(CLIP_SUFFIXES)}, or DICOM)")
    opener = {"video": _open_video, "dicom": _open_dicom, "sequence": _open_image_sequence}[kind]
    stream = opener(path)
    stream.min_frames = min_frames
    return stream


def read_clip(path: str | Path, min_frames: int = 2) -> Clip:
    """The whole clip at `path` decoded: grey uint8 frames, fps, spacing in mm (or None) and its source."""
    return open_clip(path, min_frames).read()


def read_loop(path: str | Path, min_frames: int = 2) -> Sequence:
    """A cine loop as a `Sequence`: videos and DICOM decoded by this module (grey uint8, coloured pixels marked),
    2D+t images and globs of frame files by `core.image_io` (their pixel values as stored, for label maps too)."""
    is_pattern = any(character in str(path) for character in "*?[")
    if is_pattern or clip_kind(path) not in ("video", "dicom"):
        return read_sequence_file(path, min_frames)
    clip = read_clip(path, min_frames)
    spacing, source = (clip.spacing_mm, "header") if clip.spacing_mm else ((1.0, 1.0), NO_SPACING)
    return Sequence(clip.frames, (float(spacing[0]), float(spacing[1])), source, clip.fps, clip.coloured)


def is_still_image(path: str | Path) -> bool:
    """Whether `path` names a still frame file (`STILL_IMAGE_SUFFIXES`, any case)."""
    return Path(path).name.lower().endswith(STILL_IMAGE_SUFFIXES)


def read_still(path: str | Path) -> Sequence:
    """A still frame file as a `Sequence` of its frames (one, or each page of an animated or multi-page file):
    grey uint8 and coloured pixels as for videos, no spacing (pixels)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    stream = _open_video(path, "image")
    stream.min_frames = 1
    clip = stream.read()
    # No frame rate: FFmpeg's image demuxers report a nominal 25 frames/s for any still.
    return Sequence(clip.frames, (1.0, 1.0), NO_SPACING, None, clip.coloured)


def grey_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of (..., 3) uint8 RGB as uint8, in integer arithmetic over the whole array."""
    rgb = np.asarray(rgb)
    red, green, blue = (rgb[..., channel].astype(np.uint16) for channel in range(3))
    weighted = red * _LUMA_WEIGHTS[0] + green * _LUMA_WEIGHTS[1] + blue * _LUMA_WEIGHTS[2] + 128
    return (weighted >> 8).astype(np.uint8)


def _coloured_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W) pixels whose channels differ by more than the chroma threshold in any frame of (T, H, W, 3)."""
    spread = rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1)
    return (spread > _CHROMA_THRESHOLD).any(axis=0)


def _coloured_chroma(cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """(H, W) pixels whose Cb or Cr (T, H, W) departs from the neutral 128 by more than the threshold."""
    deviation = np.maximum(np.abs(cb.astype(np.int16) - 128), np.abs(cr.astype(np.int16) - 128))
    return (deviation > _CHROMA_THRESHOLD).any(axis=0)


def _to_uint8(frames: np.ndarray, bits_stored: int | None = None) -> np.ndarray:
    """Frames of any numeric type as uint8 0-255: 8-bit data as it is, wider data scaled by its stored bit depth
    (or, for float data, by its own range where it leaves 0-255)."""
    if frames.dtype == np.uint8:
        return frames
    if np.issubdtype(frames.dtype, np.integer) and bits_stored and bits_stored > 8:
        return (frames.astype(np.int64) >> (bits_stored - 8)).clip(0, 255).astype(np.uint8)
    values = frames.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError("non-finite pixel values")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        values = (values - low) * (255.0 / max(high - low, 1e-6))
    return np.round(values).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------------------------------------------


def _open_dicom(path: Path) -> ClipStream:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # pydicom warns (UserWarning) where a file ends early or breaks the standard; the reason goes into the one
        # error line instead of a warning printed above it.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Deferred reading: the header now, the pixel data frame by frame from the file while decoding.
            dataset = pydicom.dcmread(path, defer_size="64 KB")
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise InputError(f"cannot read DICOM {path}: {error}") from None
    ended_early = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
    if ended_early:
        raise InputError(f"{path}: truncated DICOM ({ended_early[0].split(' in file ')[0]})")
    if not any(tag in dataset for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InputError(
            f"{path}: DICOM without pixel data ({dataset.get('Modality', 'no modality')}, "
            f"{dataset.get('SOPClassUID', 'no SOP class')}: a report or structured document?)"
        )
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    spacing, spacing_from = _dicom_spacing(dataset)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    syntax_name = syntax.name if syntax is not None else "unknown transfer syntax"
    source = (
        f"DICOM {dataset.get('Modality', '?')}, {frames} frame(s), {syntax_name}, {photometric}, spacing {spacing_from}"
    )

    def decode(frames_per_chunk: int) -> Chunks:
        from pydicom.pixels import iter_pixels

        pending: list[np.ndarray] = []
        try:
            # as_rgb=False keeps YBR data as YBR, so the grey level is its Y plane with no colour conversion.
            for frame in iter_pixels(path, as_rgb=False):
                pending.append(frame)
                if len(pending) == frames_per_chunk:
                    yield _dicom_chunk(np.stack(pending), photometric, dataset)
                    pending = []
        except InputError:
            raise
        except Exception as error:  # pydicom and its plugins raise many kinds for damaged or unsupported data
            raise InputError(
                f"cannot decode the pixel data of DICOM {path} "
                f"({syntax_name}, {photometric}): "
                f"{type(error).__name__}: {error}"
            ) from None
        if pending:
            yield _dicom_chunk(np.stack(pending), photometric, dataset)

    return ClipStream(path, _dicom_fps(dataset), spacing, source, decode)


def _dicom_chunk(pixels: np.ndarray, photometric: str, dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey uint8 frames (t, H, W) and coloured pixels of decoded DICOM frames (t, H, W[, 3])."""
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(pixels, dataset)
        photometric, pixels = "RGB", rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)  # 16-bit LUTs
    if pixels.ndim == 4:
        pixels = _to_uint8(pixels, 8)
        if photometric.startswith("YBR"):
            return pixels[..., 0].copy(), _coloured_chroma(pixels[..., 1], pixels[..., 2])
        return grey_from_rgb(pixels), _coloured_rgb(pixels)
    grey = _to_uint8(pixels, int(dataset.get("BitsStored", 8)))
    if photometric == "MONOCHROME1":  # MONOCHROME1 shows its lowest value as white
        grey = 255 - grey
    return grey, None


def _dicom_spacing(dataset) -> tuple[tuple[float, float] | None, str]:
    """(row, col) pixel size in mm and where it came from: the largest 2D region of SequenceOfUltrasoundRegions
    measured in cm, else PixelSpacing, else none."""
    regions = []
    for region in dataset.get("SequenceOfUltrasoundRegions", []):
        if (
            region.get("RegionSpatialFormat") == _REGION_2D
            and region.get("PhysicalUnitsXDirection") == _UNIT_CM
            and region.get("PhysicalUnitsYDirection") == _UNIT_CM
            and region.get("PhysicalDeltaX")
            and region.get("PhysicalDeltaY")
        ):
            area = (region.get("RegionLocationMaxX1", 0) - region.get("RegionLocationMinX0", 0)) * (
                region.get("RegionLocationMaxY1", 0) - region.get("RegionLocationMinY0", 0)
            )
            regions.append((area, region))
    if regions:
        region = max(regions, key=lambda item: item[0])[1]
        # PhysicalDeltaY is the size of a row step, PhysicalDeltaX of a column step, both in cm (and may be signed).
        return (
            10 * abs(float(region.PhysicalDeltaY)),
            10 * abs(float(region.PhysicalDeltaX)),
        ), "from SequenceOfUltrasoundRegions"
    pixel_spacing = dataset.get("PixelSpacing")
    if pixel_spacing and len(pixel_spacing) == 2 and all(float(s) > 0 for s in pixel_spacing):
        return (float(pixel_spacing[0]), float(pixel_spacing[1])), "from PixelSpacing"
    return None, "unknown (no SequenceOfUltrasoundRegions in cm, no PixelSpacing)"


def _dicom_fps(dataset) -> float | None:
    """Frames per second from FrameTime (ms), FrameTimeVector (ms), CineRate or RecommendedDisplayFrameRate."""
    frame_time = dataset.get("FrameTime")
    if frame_time and float(frame_time) > 0:
        return 1000.0 / float(frame_time)
    vector = dataset.get("FrameTimeVector")
    if vector and len(vector) > 1:
        intervals = np.asarray(vector[1:], dtype=float)  # its first entry is 0: the time before the first frame
        if np.all(intervals > 0):
            return 1000.0 / float(intervals.mean())
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = dataset.get(keyword)
        if rate and float(rate) > 0:
            return float(rate)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Videos
# ---------------------------------------------------------------------------------------------------------------


def _open_video(path: Path, noun: str = "video") -> ClipStream:
    """A video (or, with `noun` "image", a still frame file) opened with PyAV; errors name the file as `noun`."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path} holds no {noun} stream")
            stream = container.streams.video[0]
            declared = int(stream.frames or 0)
            fps = float(stream.average_rate) if stream.average_rate else None
            codec = stream.codec_context.name
    except InputError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise InputError(f"cannot read {noun} {path} (unreadable, damaged or truncated file): {error}") from None

    def decode(frames_per_chunk: int) -> Chunks:
        pending: list[tuple[np.ndarray, np.ndarray | None]] = []
        decoded = 0
        try:
            with av.open(str(path)) as container:
                for frame in container.decode(container.streams.video[0]):
                    pending.append(_video_frame(frame))
                    decoded += 1
                    if len(pending) == frames_per_chunk:
                        yield _merge_video_frames(pending)
                        pending = []
        except (av.error.FFmpegError, OSError, ValueError) as error:
            if decoded == 0:  # a valid file in a variant FFmpeg's decoder lacks (e.g. float TIFF) fails here too
                raise InputError(
                    f"cannot decode {noun} {path} (damaged file, or a {codec} variant FFmpeg cannot decode: "
                    f"convert it to 8- or 16-bit PNG or to NIfTI): {error}"
                ) from None
            raise InputError(
                f"cannot decode {noun} {path} (damaged or truncated file) after {decoded} frame(s): {error}"
            ) from None
        if declared and decoded < _MIN_DECODED_SHARE * declared:
            raise InputError(
                f"cannot read {noun} {path} (truncated or damaged file): {decoded} of the {declared} "
                "frames its container declares could be decoded"
            )
        if pending:
            yield _merge_video_frames(pending)

    return ClipStream(path, fps, None, f"{noun} ({codec}, no spacing)", decode)


def _plane(plane) -> np.ndarray:
    """A video plane as a (height, width) uint8 view, without its line padding."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def _video_frame(frame) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey (H, W) uint8 and coloured pixels of one decoded frame: its luma plane where it is planar YUV, a
    weighted sum of its RGB conversion otherwise (palette GIFs, RGB codecs, high bit depths)."""
    name = frame.format.name
    if name not in _PLANAR_YUV:
        rgb = frame.to_ndarray(format="rgb24")
        return grey_from_rgb(rgb), _coloured_rgb(rgb[None])
    luma = _plane(frame.planes[0])
    # Full range for the "j" formats, and where the stream says so (color_range 2 = JPEG range).
    limited = not name.startswith("yuvj") and name != "gray" and getattr(frame, "color_range", 1) != 2
    grey = _LIMITED_TO_FULL[luma] if limited else luma.copy()
    if name == "gray":
        return grey, None
    cb, cr = _plane(frame.planes[1]), _plane(frame.planes[2])
    rows, cols = luma.shape
    # Subsampled chroma back to the luma grid by repetition (a colour flag, not an image, needs no filter).
    step_rows, step_cols = -(-rows // cb.shape[0]), -(-cols // cb.shape[1])
    coloured = _coloured_chroma(cb[None], cr[None])
    coloured = np.repeat(np.repeat(coloured, step_rows, axis=0), step_cols, axis=1)[:rows, :cols]
    return grey, coloured


def _merge_video_frames(frames: list[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray | None]:
    grey = np.stack([g for g, _ in frames])
    coloured = [c for _, c in frames if c is not None]
    return grey, (np.logical_or.reduce(coloured) if coloured else None)


# ---------------------------------------------------------------------------------------------------------------
# 2D+t images
# ---------------------------------------------------------------------------------------------------------------


def _open_image_sequence(path: Path) -> ClipStream:
    # The project's image reader: ITK's errors as one line, truncated NIfTI files and NaN pixels refused.
    array, (row_mm, column_mm) = read_sequence(path)
    frames = _to_uint8(array)
    # (1, 1) is what formats without a physical size write (the 224x224 CAMUS copy, exported frames): no spacing.
    spacing = None if (row_mm, column_mm) == (1.0, 1.0) else (float(row_mm), float(column_mm))

    def decode(frames_per_chunk: int) -> Chunks:
        for start in range(0, len(frames), frames_per_chunk):
            yield frames[start : start + frames_per_chunk], None

    return ClipStream(
        path,
        None,
        spacing,
        f"image sequence ({path.name.split('.', 1)[-1]}, spacing {'from header' if spacing else 'unknown'})",
        decode,
    )


# ---------------------------------------------------------------------------------------------------------------
# Background reading
# ---------------------------------------------------------------------------------------------------------------


def prefetched(items: Iterable[Item], depth: int = 2) -> Iterator[Item]:
    """Iterate `items` in a background thread, up to `depth` ahead (decoding overlaps the consumer's work);
    an exception raised by `items` is re-raised in the consumer."""
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
        except BaseException as error:  # handed to the consumer
            buffer.put(error)
        buffer.put(done)

    threading.Thread(target=work, daemon=True).start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # a consumer that stops early lets the reader end after its current item
        while not buffer.empty():
            buffer.get_nowait()
