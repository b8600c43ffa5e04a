"""Echo clips built from the real CAMUS ED and ES frames: beating loops, scanner-like overlays, AVI/GIF/DICOM files.

A loop morphs ED -> ES -> ED: frame t blends the ED and ES images with the weight w(t) (0 at ED, 1 at ES) and its
label map interpolates each structure's signed distance map, so the ED and ES frames of every beat are exactly
the CAMUS frames and masks. `nearest_frame_segmenter` then returns, for each decoded frame, the mask of the
source frame it is closest to: a segmentation that is right by construction, to test everything around it.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

PATIENT = "patient0001"
# A canvas like a scanner's screen: the 224x224 frame placed at OFFSET, overlays around it.
CANVAS = (300, 400)
OFFSET = (40, 90)
ECG_GREEN = (0, 230, 0)
TEXT_YELLOW = (255, 220, 0)


def camus_phases(camus_root: Path, view: str = "4CH", patient: str = PATIENT) -> dict[str, np.ndarray]:
    """The ED and ES frames ("ED", "ES") and label maps ("ED_gt", "ES_gt") of one CAMUS view, uint8."""
    folder = camus_root / "database_nifti" / patient
    return {
        name: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{patient}_{view}_{name}.nii.gz"))).astype(np.uint8)
        for name in ("ED", "ES", "ED_gt", "ES_gt")
    }


def beat_weights(n_frames: int, period: int, offset: int = 0) -> np.ndarray:
    """w(t) = (1 - cos(2 pi (t + offset) / period)) / 2: ED (0) every `period` frames, ES (1) half-way."""
    return (1 - np.cos(2 * np.pi * (np.arange(n_frames) + offset) / period)) / 2


def _signed_distance(region: np.ndarray) -> np.ndarray:
    return ndimage.distance_transform_edt(~region) - ndimage.distance_transform_edt(region)


def beating_loop(phases: dict[str, np.ndarray], weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W) uint8 and label maps (T, H, W) of a loop morphing between ED (w=0) and ES (w=1)."""
    ed, es = phases["ED"].astype(np.float32), phases["ES"].astype(np.float32)
    distances = {
        label: (_signed_distance(phases["ED_gt"] == label), _signed_distance(phases["ES_gt"] == label))
        for label in (1, 2, 3)
    }
    frames, masks = [], []
    for w in weights:
        frames.append(np.round((1 - w) * ed + w * es).astype(np.uint8))
        mask = np.zeros(ed.shape, np.uint8)
        for label in (2, 3, 1):  # the LV last: where interpolated regions overlap, the cavity wins
            mask[(1 - w) * distances[label][0] + w * distances[label][1] < 0] = label
        masks.append(mask)
    return np.stack(frames), np.stack(masks)


def sector_box_of(frame: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of a CAMUS frame's non-zero pixels (its sector)."""
    return ndimage.find_objects((frame > 0).astype(np.uint8))[0]


def on_canvas(frames: np.ndarray, masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB frames (T, *CANVAS, 3) with the grey frames at OFFSET and scanner overlays: a green ECG trace that
    sweeps over time below the sector, yellow text top left, a static grey depth scale on the right, a white
    marker; and the masks placed likewise."""
    count = len(frames)
    rows, cols = frames.shape[1:]
    place = (slice(OFFSET[0], OFFSET[0] + rows), slice(OFFSET[1], OFFSET[1] + cols))
    canvas = np.zeros((count, *CANVAS, 3), np.uint8)
    canvas[(slice(None), *place)] = frames[..., None]
    trace_cols = np.arange(20, CANVAS[1] - 20)
    for t in range(count):
        trace_rows = (CANVAS[0] - 22 + 10 * np.sin(trace_cols / 9.0 + t)).astype(int)
        for width in (0, 1):
            canvas[t, trace_rows + width, trace_cols] = ECG_GREEN
    canvas[:, 8:22, 10:70] = TEXT_YELLOW  # a text block
    canvas[:, 10:20:3, 12:68] = (90, 70, 0)  # its dark "letters"
    canvas[:, 40:260, CANVAS[1] - 30 : CANVAS[1] - 24] = 160  # depth scale bar (grey, static)
    canvas[:, 40:260:20, CANVAS[1] - 36 : CANVAS[1] - 24] = 220  # its ticks
    canvas[:, 30:34, 60:64] = 255  # a focus marker
    placed_masks = None
    if masks is not None:
        placed_masks = np.zeros((count, *CANVAS), np.uint8)
        placed_masks[(slice(None), *place)] = masks
    return canvas, placed_masks


def placed_box(box: tuple[slice, slice]) -> tuple[slice, slice]:
    """A box of the 224x224 frame in canvas coordinates."""
    return (
        slice(box[0].start + OFFSET[0], box[0].stop + OFFSET[0]),
        slice(box[1].start + OFFSET[1], box[1].stop + OFFSET[1]),
    )


def write_video(path: Path, frames: np.ndarray, fps: int, codec: str = "mpeg4") -> Path:
    """Grey frames (T, H, W) as a video through PyAV (MPEG-4 Part 2 at high quality by default)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray")))
        container.mux(stream.encode())
    return path


def write_gif(path: Path, frames: np.ndarray, fps: int) -> Path:
    """Grey frames as an animated GIF (Pillow, exact grey palette)."""
    from PIL import Image

    images = [Image.fromarray(frame, mode="L") for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    fps: float | None = 25.0,
    spacing_mm: tuple[float, float] | None = (0.29, 0.31),
    photometric: str = "YBR_FULL_422",
    jpeg: bool = True,
    sector_box: tuple[slice, slice] | None = None,
    pixel_data: bool = True,
) -> Path:
    """An Ultrasound Multi-frame Image DICOM of RGB (T, H, W, 3) or grey (T, H, W) pixels: JPEG Baseline (frames
    encoded by Pillow, YBR_FULL_422) or uncompressed (RGB, YBR_FULL or MONOCHROME2), with FrameTime and a
    SequenceOfUltrasoundRegions holding the (row, col) spacing in cm plus an ECG region in other units."""
    import pydicom
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.pixels import convert_color_space
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, UltrasoundMultiFrameImageStorage, generate_uid

    pixels = np.asarray(pixels, np.uint8)
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = UltrasoundMultiFrameImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
    ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if fps:
        ds.FrameTime = round(1000.0 / fps, 3)
        ds.CineRate = int(round(fps))
    if spacing_mm:
        box = sector_box or (slice(0, pixels.shape[1]), slice(0, pixels.shape[2]))
        tissue = Dataset()
        tissue.RegionSpatialFormat, tissue.RegionDataType, tissue.RegionFlags = 1, 1, 0
        tissue.RegionLocationMinX0, tissue.RegionLocationMinY0 = box[1].start, box[0].start
        tissue.RegionLocationMaxX1, tissue.RegionLocationMaxY1 = box[1].stop - 1, box[0].stop - 1
        tissue.PhysicalUnitsXDirection = tissue.PhysicalUnitsYDirection = 3  # cm
        tissue.PhysicalDeltaX, tissue.PhysicalDeltaY = spacing_mm[1] / 10, spacing_mm[0] / 10
        ecg = Dataset()  # an ECG strip: seconds by volts, which is no pixel size
        ecg.RegionSpatialFormat, ecg.RegionDataType, ecg.RegionFlags = 4, 4, 0
        ecg.RegionLocationMinX0, ecg.RegionLocationMinY0 = 0, pixels.shape[1] - 40
        ecg.RegionLocationMaxX1, ecg.RegionLocationMaxY1 = pixels.shape[2] - 1, pixels.shape[1] - 1
        ecg.PhysicalUnitsXDirection, ecg.PhysicalUnitsYDirection = 4, 5
        ecg.PhysicalDeltaX, ecg.PhysicalDeltaY = 0.004, 0.01
        ds.SequenceOfUltrasoundRegions = [ecg, tissue]
    if pixels.ndim == 3:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        data = pixels
    else:
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.PhotometricInterpretation = photometric
        data = convert_color_space(pixels, "RGB", "YBR_FULL") if photometric == "YBR_FULL" else pixels
    if pixel_data:
        if jpeg:
            encoded = []
            for frame in pixels:  # Pillow writes RGB as YCbCr JPEG; subsampling 1 is 4:2:2
                buffer = io.BytesIO()
                Image.fromarray(frame).save(buffer, "JPEG", quality=95, subsampling=1)
                encoded.append(buffer.getvalue())
            ds.PixelData = encapsulate(encoded)
            ds["PixelData"].VR = "OB"
            ds.LossyImageCompression = "01"
        else:
            ds.PixelData = np.ascontiguousarray(data).tobytes()
            ds["PixelData"].VR = "OB" if pixels.ndim == 4 else "OW"
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def nearest_frame_segmenter(source_frames: np.ndarray, source_masks: np.ndarray, box: tuple[slice, slice]):
    """segment(frames) returning, per frame, the mask of the source frame closest inside `box` (codec-proof)."""
    reference = source_frames[(slice(None), *box)].reshape(len(source_frames), -1).astype(np.float32)

    def segment(frames: np.ndarray) -> np.ndarray:
        decoded = np.asarray(frames)[(slice(None), *box)].reshape(len(frames), -1).astype(np.float32)
        distances = (decoded**2).sum(1)[:, None] - 2 * decoded @ reference.T + (reference**2).sum(1)[None]
        return source_masks[distances.argmin(axis=1)]

    return segment
