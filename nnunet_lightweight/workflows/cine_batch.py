"""EF per clip at scale: many echo clips in, one CSV row per clip out (modelled on EchoNet-Dynamic's FileList.csv).

Input: a folder (every clip in it, recursively), a glob, or a CSV listing files (column FileName, or File/Path)
with optional Patient, View and spacing (Spacing in mm, or SpacingRow and SpacingCol) columns; relative names
are taken from the CSV's folder, and a name without a suffix (EchoNet-Dynamic's FileList.csv) is looked up as
`<name>.avi` there and in its `Videos/` folder. The view comes from the View column, else from the file name
(A2C/2CH, A4C/4CH tokens).

Per clip: decode (a reader thread decodes the next clips while the current one is segmented), segment every
frame with the injected `segment(frames (T, H, W) uint8) -> masks (T, H, W)` (a `FastPredictor`, which also takes
the clip's coloured pixels and finds the ultrasound sector, blanking the overlays outside it, as `predict` and
single-clip `cine` do), measure the single-plane volume of every frame
(`clinical.cine.cine_volume_curve`) and find ED/ES beat by beat (`clinical.beats`). Volumes are in mL where the
clip's spacing is known (DICOM ultrasound regions, the CSV, an image header) and in px^3 otherwise. A clip that
cannot be read or measured gets its reason in the Reason column; the batch goes on. ED and ES frames are 1-based.

Patients with a measured 2CH and 4CH clip also get biplane EDV, ESV and EF (each view's own typical beat) in
`patients_biplane.csv`.

`--shard I/N` splits the list by a hash of each clip's patient (its file name where no patient is given), so
that a patient's views stay together, every clip lands in exactly one shard, and a clip's shard does not change
when other clips are added: run N array jobs (SLURM `--array=0-N-1`, any scheduler) with I from 0 to N-1 and
concatenate their clips.csv files.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import hashlib
import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from nnunet_lightweight.clinical.beats import BeatAnalysis, detect_beats
from nnunet_lightweight.clinical.cine import label_maps_of, segment_sequence
from nnunet_lightweight.clinical.ejection_fraction import UNIT_ML, UNIT_PX
from nnunet_lightweight.clinical.volume_curves import VolumeCurve, biplane_from_curves, cine_volume_curve
from nnunet_lightweight.clinical.volumes import N_DISKS, check_spacing
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.output import OutputLayout, check_output_dir, staged_output
from nnunet_lightweight.core.video_readers import CLIP_SUFFIXES, Clip, clip_kind, prefetched, read_clip

Segment = Callable[[np.ndarray], np.ndarray]
CLIP_COLUMNS = (
    "FileName",
    "EF",
    "ESV",
    "EDV",
    "FrameHeight",
    "FrameWidth",
    "FPS",
    "NumberOfFrames",
    "Patient",
    "View",
    "VolumeUnit",
    "EDFrame",
    "ESFrame",
    "NumBeats",
    "BeatEFMean",
    "BeatEFMedian",
    "QualityFlags",
    "Reason",
)
BIPLANE_COLUMNS = ("Patient", "EF", "EDV", "ESV", "VolumeUnit", "FileName2CH", "FileName4CH", "Reason")
CLIPS_CSV, BIPLANE_CSV, SUMMARY_JSON = "clips.csv", "patients_biplane.csv", "cine_batch.json"
CINE_BATCH_LAYOUT = OutputLayout(SUMMARY_JSON, (CLIPS_CSV, BIPLANE_CSV, "curves", "overlays"))
_VIEW_TOKEN = re.compile(r"(?<![a-z0-9])a?([24])c(?:h)?(?![a-z0-9])", re.IGNORECASE)
_FILE_COLUMNS = ("filename", "file", "path")
OVERLAY_FORMATS = ("mp4", "gif")
# No pixel size in the file or the listing: volumes in px^3 (EF is unit-free, volumes are not comparable).
FLAG_NO_SPACING = "spacing_unknown"
# Contour colours of the overlay videos (RGB): LV red, MYO green, LA blue, as the project's overlay figures.
_LABEL_COLOURS = {1: (228, 26, 28), 2: (77, 175, 74), 3: (55, 126, 184)}


@dataclass(frozen=True)
class ClipEntry:
    """One clip to measure: its file and what a listing says about it (patient, view "2CH"/"4CH", spacing in mm)."""

    path: Path
    patient: str | None = None
    view: str | None = None
    spacing_mm: tuple[float, float] | None = None


@dataclass
class ClipResult:
    """A clip's CSV row and, where it was measured, its volume curve, beats, and its frames and masks (until the
    batch has written its overlay)."""

    entry: ClipEntry
    row: dict
    curve: VolumeCurve | None = None
    beats: BeatAnalysis | None = None
    frames: np.ndarray | None = None
    masks: np.ndarray | None = None


def normalise_view(text: str | None) -> str | None:
    """ "2CH"/"4CH" for the usual spellings (A2C, 2CH, a4c, 4C...), the text itself otherwise, None if empty."""
    if text is None or not str(text).strip() or str(text).strip().lower() == "nan":
        return None
    match = _VIEW_TOKEN.fullmatch(str(text).strip())
    return f"{match.group(1)}CH" if match else str(text).strip()


def view_from_name(path: Path) -> str | None:
    """The view named in a file name (patient0001_4CH_..., clip_a2c.avi), or None."""
    match = _VIEW_TOKEN.search(path.name)
    return f"{match.group(1)}CH" if match else None


def _is_clip_file(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and clip_kind(path) is not None


def list_clips(source: str | Path) -> list[ClipEntry]:
    """The clips of a folder (recursively), a glob pattern, a CSV listing, or a single clip file, sorted by path."""
    text = str(source)
    if any(character in text for character in "*?["):
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if _is_clip_file(Path(p)))
        if not paths:
            raise InputError(f"the pattern {text} matches no clip ({', '.join(CLIP_SUFFIXES)})")
        return [ClipEntry(p, view=view_from_name(p)) for p in paths]
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if _is_clip_file(p))
        if not paths:
            raise InputError(f"no clips ({', '.join(CLIP_SUFFIXES)}, or DICOM) in {source}")
        return [ClipEntry(p, view=view_from_name(p)) for p in paths]
    if source.suffix.lower() == ".csv":
        return _read_listing(source)
    if source.is_file():
        return [ClipEntry(source, view=view_from_name(source))]
    raise InputError(f"clip source not found: {source}")


def _read_listing(listing: Path) -> list[ClipEntry]:
    """Entries of a CSV listing; InputError naming the line of a bad row."""
    if not listing.is_file():
        raise InputError(f"clip listing not found: {listing}")
    # utf-8-sig: spreadsheet programs start their "CSV UTF-8" with a byte-order mark, which is not a column name.
    with open(listing, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        rows = [(reader.line_num, row) for row in reader]  # line numbers as in the file (blank lines skipped)
    if not rows:
        raise InputError(f"{listing} lists no clips")
    header = rows[0][1]
    columns = {name.strip().lower(): name for name in header}
    file_key = next((c for c in _FILE_COLUMNS if c in columns), None)
    if file_key is None:
        raise InputError(f"{listing} has no FileName (or File, Path) column; its columns: {', '.join(header)}")
    entries = []
    for line, row in rows:
        cells = {name: (row.get(original) or "").strip() or None for name, original in columns.items()}
        if not cells[file_key]:
            raise InputError(f"{listing} line {line}: no file name")
        path = _resolve_listed(listing.parent, cells[file_key])
        spacing = None
        try:
            if cells.get("spacing"):
                spacing = (float(cells["spacing"]),) * 2
            elif cells.get("spacingrow") and cells.get("spacingcol"):
                spacing = (float(cells["spacingrow"]), float(cells["spacingcol"]))
            if spacing is not None:
                spacing = tuple(float(s) for s in check_spacing(spacing, "spacing"))
        except (ValueError, InputError) as error:
            raise InputError(f"{listing} line {line}: bad spacing ({error})") from None
        view = normalise_view(cells.get("view")) or view_from_name(path)
        entries.append(ClipEntry(path, cells.get("patient"), view, spacing))
    return entries


def _resolve_listed(folder: Path, name: str) -> Path:
    """A listed file name as a path: relative to the listing's folder; EchoNet-Dynamic's suffix-less names as AVIs
    beside it or in its Videos/ folder."""
    path = Path(name) if Path(name).is_absolute() else folder / name
    if path.exists() or path.suffix:
        return path
    for candidate in (path.with_name(path.name + ".avi"), folder / "Videos" / f"{name}.avi"):
        if candidate.exists():
            return candidate
    return path


def _with_view(view: str, reason: str) -> str:
    """`reason` prefixed with its view, once (curve reasons already start with it)."""
    return reason if reason.startswith(f"{view}:") else f"{view}: {reason}"


def parse_shard(text: str) -> tuple[int, int]:
    """(I, N) of "I/N" with 0 <= I < N; InputError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not int(match.group(1)) < int(match.group(2)):
        raise InputError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def shard_of(entry: ClipEntry, count: int) -> int:
    """The shard (0..count-1) of a clip: a stable hash of its patient, or of its file name without one."""
    key = entry.patient or entry.path.name
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count


def shard(entries: list[ClipEntry], index: int, count: int) -> list[ClipEntry]:
    """The entries of shard `index` of `count`, in their listed order (see the module docstring)."""
    if count < 1 or not 0 <= index < count:
        raise InputError(f"shard {index} of {count} does not exist (0 <= I < N)")
    return [entry for entry in entries if shard_of(entry, count) == index]


def _row(entry: ClipEntry, clip: Clip | None = None) -> dict:
    row = dict.fromkeys(CLIP_COLUMNS, "")
    row.update(FileName=str(entry.path), Patient=entry.patient or "", View=entry.view or "")
    if clip is not None:
        row.update(
            FrameHeight=clip.frames.shape[1],
            FrameWidth=clip.frames.shape[2],
            FPS=round(clip.fps, 3) if clip.fps else "",
            NumberOfFrames=len(clip.frames),
        )
    return row


def segment_clip(clip: Clip, segment: Segment, path: Path | None = None) -> np.ndarray:
    """Label maps (T, H, W) of a clip's frames. The segmenter gets the clip's coloured pixels where it takes them:
    `FastPredictor` then blanks everything outside the ultrasound sector, as it does for `predict` and `cine`. A
    clip file `path` of label maps (`clinical.cine.label_maps_of`) is its own label maps, as in `cine`."""
    masks = label_maps_of(clip.frames, path) if path is not None else None
    return masks if masks is not None else segment_sequence(clip.frames, segment, coloured=clip.coloured)


def measure_masks(entry: ClipEntry, clip: Clip, masks: np.ndarray, n_disks: int = N_DISKS) -> ClipResult:
    """A clip's volume curve, beats and CSV row from its label maps; a row with the reason where there is too
    little LV to measure."""
    spacing = entry.spacing_mm or clip.spacing_mm
    unit = UNIT_ML if spacing else UNIT_PX
    row = _row(entry, clip)
    row.update(VolumeUnit=unit, QualityFlags="" if spacing else FLAG_NO_SPACING)
    try:
        curve = cine_volume_curve(masks, spacing or (1.0, 1.0), entry.view or "", n_disks, unit)
    except InputError as error:  # fewer than two frames with a measurable LV
        row.update(NumBeats=0, Reason=_reason(error))
        return ClipResult(entry, row, frames=clip.frames, masks=masks)
    beats = detect_beats(curve.volumes, clip.fps)
    flags = ([row["QualityFlags"]] if row["QualityFlags"] else []) + beats.flags
    row.update(NumBeats=len(beats.beats), QualityFlags=";".join(flags), Reason=beats.reason or "")
    if beats.measurable:
        row.update(EF=beats.ef, EDV=beats.edv, ESV=beats.esv, EDFrame=beats.ed_frame + 1, ESFrame=beats.es_frame + 1)
        if beats.beats:
            row.update(BeatEFMean=beats.ef_mean, BeatEFMedian=beats.ef_median)
    return ClipResult(entry, row, curve, beats, clip.frames, masks)


def measure_clip(entry: ClipEntry, clip: Clip, segment: Segment, n_disks: int = N_DISKS) -> ClipResult:
    """Segment one decoded clip inside its sector and measure its volumes and beats; InputError where it cannot."""
    return measure_masks(entry, clip, segment_clip(clip, segment, entry.path), n_disks)


def _read(entry: ClipEntry) -> tuple[ClipEntry, Clip | Exception]:
    try:
        return entry, read_clip(entry.path)
    except Exception as error:  # one unreadable clip is its row's reason, never the end of the batch
        return entry, error


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if isinstance(error, InputError) else f"{type(error).__name__}: {text}"


def _failure(entry: ClipEntry, clip: Clip | None, error: Exception) -> ClipResult:
    return ClipResult(entry, {**_row(entry, clip), "Reason": _reason(error)})


def _completed(result: ClipResult) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


def _measured_or_failed(entry: ClipEntry, clip: Clip, masks: np.ndarray, n_disks: int) -> ClipResult:
    try:
        return measure_masks(entry, clip, masks, n_disks)
    except Exception as error:  # as for reading: the reason goes into the row
        return _failure(entry, clip, error)


def measure_clips(
    entries: list[ClipEntry], segment: Segment, n_disks: int = N_DISKS, prefetch_depth: int = 2
) -> Iterator[ClipResult]:
    """Results of `entries` in order. Three stages overlap: a reader thread decodes the next clips, this thread
    segments the current one, and a measuring thread measures the previous one."""
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=1) as measuring:
        for entry, clip in prefetched((_read(entry) for entry in entries), prefetch_depth):
            if isinstance(clip, Exception):
                pending.append(_completed(_failure(entry, None, clip)))
            else:
                try:
                    masks = segment_clip(clip, segment, entry.path)
                    pending.append(measuring.submit(_measured_or_failed, entry, clip, masks, n_disks))
                except Exception as error:  # as for reading: the reason goes into the row
                    pending.append(_completed(_failure(entry, clip, error)))
            while len(pending) > 1 or (pending and pending[0].done()):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _typical_beat_curve(result: ClipResult) -> VolumeCurve:
    """The clip's curve with ED and ES at its typical beat's frames (not the curve's global max/min)."""
    return dataclasses.replace(result.curve, ed_index=result.beats.ed_frame, es_index=result.beats.es_frame)


def biplane_rows(results: list[ClipResult]) -> list[dict]:
    """Biplane EDV, ESV, EF per patient with a 2CH and a 4CH clip (the first measured one of each, by file)."""
    by_patient: dict[str, dict[str, list[ClipResult]]] = {}
    for result in results:
        if result.entry.patient and result.entry.view in ("2CH", "4CH"):
            by_patient.setdefault(result.entry.patient, {}).setdefault(result.entry.view, []).append(result)
    rows = []
    for patient, views in sorted(by_patient.items()):
        if set(views) != {"2CH", "4CH"}:
            continue
        chosen = {}
        for view, candidates in views.items():
            measured = [r for r in candidates if r.beats is not None and r.beats.measurable]
            chosen[view] = measured[0] if measured else candidates[0]
        row = dict.fromkeys(BIPLANE_COLUMNS, "")
        row.update(
            Patient=patient, FileName2CH=str(chosen["2CH"].entry.path), FileName4CH=str(chosen["4CH"].entry.path)
        )
        unmeasured = [
            _with_view(view, r.row["Reason"] or "not measured")
            for view, r in sorted(chosen.items())
            if r.beats is None or not r.beats.measurable
        ]
        if unmeasured:
            row["Reason"] = "; ".join(unmeasured)
        else:
            try:
                biplane = biplane_from_curves(_typical_beat_curve(chosen["2CH"]), _typical_beat_curve(chosen["4CH"]))
                row.update(EF=biplane["ef"], EDV=biplane["edv"], ESV=biplane["esv"], VolumeUnit=biplane["volume_unit"])
            except InputError as error:
                row["Reason"] = _reason(error)
        rows.append(row)
    return rows


def plot_beats(result: ClipResult, path: Path) -> None:
    """PNG of a clip's volume curve with each beat's ED and ES marked and its EF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve, beats, fps = result.curve, result.beats, result.row["FPS"] or None
    time_axis = np.arange(len(curve.volumes)) / fps if fps else np.arange(1, len(curve.volumes) + 1)
    figure, axes = plt.subplots(figsize=(7, 3.6))
    axes.plot(time_axis, curve.volumes, "o-", color="tab:blue", markersize=3, label="single-plane volume")
    for number, beat in enumerate(beats.beats, start=1):
        axes.plot(time_axis[[beat.ed_frame, beat.es_frame]], [beat.edv, beat.esv], "-", color="tab:grey")
        axes.annotate(
            f"{beat.ef:.0f} %",
            (time_axis[beat.es_frame], beat.esv),
            textcoords="offset points",
            xytext=(0, -12),
            ha="center",
            fontsize=8,
        )
    for frame, colour, name in ((beats.ed_frame, "tab:red", "ED"), (beats.es_frame, "tab:green", "ES")):
        if frame is not None:
            axes.axvline(time_axis[frame], color=colour, linestyle="--", linewidth=1, label=f"{name} (typical beat)")
    ed_frames = [b.ed_frame for b in beats.beats]
    es_frames = [b.es_frame for b in beats.beats]
    axes.plot(time_axis[ed_frames], curve.volumes[ed_frames], "s", color="tab:red", markersize=6)
    axes.plot(time_axis[es_frames], curve.volumes[es_frames], "s", color="tab:green", markersize=6)
    axes.set_xlabel("time (s)" if fps else "frame")
    axes.set_ylabel(f"LV volume ({curve.volume_unit})")
    summary = (
        f"EF {beats.ef:.1f} % (mean of {len(beats.beats)} beat(s), median {beats.ef_median:.1f} %)"
        if beats.beats
        else (f"EF {beats.ef:.1f} % (max/min)" if beats.measurable else beats.reason)
    )
    axes.set_title(f"{result.entry.path.name}: {summary}", fontsize=9)
    axes.legend(loc="best", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def overlay_frames(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """RGB frames (T, H, W, 3) uint8: the grey frames with each structure's outline in its colour."""
    from scipy import ndimage

    rgb = np.repeat(frames[..., None], 3, axis=-1)
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)  # erode within each frame, never across time
    for label, colour in _LABEL_COLOURS.items():
        region = masks == label
        outline = region & ~ndimage.binary_erosion(region, in_plane)
        rgb[outline] = colour
    return rgb


def write_overlay_video(frames: np.ndarray, masks: np.ndarray, fps: float | None, path: Path) -> None:
    """The overlay as an MP4 (PyAV, MPEG-4 Part 2) or an animated GIF (Pillow), chosen by `path`'s suffix."""
    rgb = overlay_frames(frames, masks)
    rate = fps or 25.0
    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(frame) for frame in rgb]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / rate)), loop=0)
        return
    import av

    # YUV 4:2:0 needs even sizes: pad by a row or column of black.
    rgb = np.pad(rgb, ((0, 0), (0, rgb.shape[1] % 2), (0, rgb.shape[2] % 2), (0, 0)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(rate).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = rgb.shape[2], rgb.shape[1], "yuv420p"
        stream.options = {"qscale": "3"}
        for frame in rgb:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _write_csv(rows: list[dict], columns: tuple[str, ...], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})


def cine_batch(
    source: str | Path,
    output_dir: str | Path,
    segment: Segment,
    shard_index: int = 0,
    shard_count: int = 1,
    curves: bool = True,
    overlay: str | None = None,
    n_disks: int = N_DISKS,
    overwrite: bool = False,
    prefetch_depth: int = 2,
    progress: Callable[[str], None] | None = print,
) -> dict:
    """Measure every clip of `source` (this shard of it) and write clips.csv, patients_biplane.csv (where a listing
    gives patients with both views), curves/<NNNNN>_<clip>.png, overlays/<NNNNN>_<clip>.<overlay> (NNNNN: the row
    in clips.csv) and cine_batch.json."""
    if overlay is not None and overlay not in OVERLAY_FORMATS:
        raise InputError(f"overlay must be one of {OVERLAY_FORMATS}, got {overlay!r}")
    entries = list_clips(source)
    selected = shard(entries, shard_index, shard_count)
    # Every listed clip is an input too: a listing may name files inside the output folder.
    inputs = [source, *(entry.path for entry in entries)]
    target = check_output_dir(output_dir, overwrite, layout=CINE_BATCH_LAYOUT, inputs=inputs)
    start = time.perf_counter()
    results, frames = [], 0
    with staged_output(target) as staging:
        for folder in (["curves"] if curves else []) + (["overlays"] if overlay else []):
            (staging / folder).mkdir()
        for number, result in enumerate(measure_clips(selected, segment, n_disks, prefetch_depth), start=1):
            frames += int(result.row["NumberOfFrames"] or 0)
            # A name per clip that stays unique for clips of the same name in different folders.
            name = f"{number:05d}_{result.entry.path.name.split('.')[0]}"
            if curves and result.curve is not None:
                plot_beats(result, staging / "curves" / f"{name}.png")
            if overlay and result.masks is not None:
                write_overlay_video(
                    result.frames, result.masks, result.row["FPS"] or None, staging / "overlays" / f"{name}.{overlay}"
                )
            result.frames = result.masks = None  # a batch keeps rows and curves, not every clip's pixels
            results.append(result)
            if progress:
                row = result.row
                progress(
                    f"  [{number}/{len(selected)}] {result.entry.path.name}: "
                    + (f"EF {row['EF']:.1f} %" if row["EF"] != "" else f"not measured ({row['Reason']})")
                )
        _write_csv([r.row for r in results], CLIP_COLUMNS, staging / CLIPS_CSV)
        patients = biplane_rows(results)
        if patients:
            _write_csv(patients, BIPLANE_COLUMNS, staging / BIPLANE_CSV)
        seconds = time.perf_counter() - start
        summary = {
            "source": str(source),
            "shard": [shard_index, shard_count],
            "clips_listed": len(entries),
            "clips": len(selected),
            "measured": sum(r.row["EF"] != "" for r in results),
            "biplane_patients": sum(p["EF"] != "" for p in patients),
            "frames": frames,
            "seconds": round(seconds, 3),
            "frames_per_second": round(frames / seconds, 2) if seconds else None,
        }
        (staging / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
