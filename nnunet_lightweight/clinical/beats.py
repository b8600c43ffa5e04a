"""ED and ES beat by beat from an LV volume curve over a whole clip, with per-beat EF, quality flags and reasons.

A clip of several beats has several ED (local maximum) and ES (local minimum) frames; its global maximum and
minimum may come from different beats or from a noisy frame. As EchoNet-Dynamic does with its segmentation
curve, extrema are peaks of the curve (after a 3-frame median, which removes one-frame segmentation spikes)
found with `scipy.signal.find_peaks` under a minimum distance and a minimum
prominence: the distance is the shortest plausible cardiac cycle at the clip's frame rate (`MIN_CYCLE_S`), the
prominence half the curve's robust range (5th to 95th percentile), and at least `MIN_STROKE_FRACTION` of the
median volume, so that noise on a flat curve is no beat. A beat is an ED peak followed by the next ES trough
with no other ED peak between them; extrema on the clip's first or last frame are never taken, because the clip
may start or end anywhere in the cycle. Per-beat EF = 100 (EDV - ESV) / EDV; the clip's EF is their mean (as
EchoNet-Dynamic reports) with the median beside it. With no full beat, ED and ES fall back to the maximum and
minimum over the clip, and the result says so in its flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import find_peaks

from nnunet_lightweight.clinical.ejection_fraction import ejection_fraction

# The shortest cardiac cycle taken as real: 0.3 s (200 beats per minute); ED peaks and ES troughs are at least
# this far apart.
MIN_CYCLE_S = 0.3
# A beat moves the volume by at least this share of its median (an EF below ~5 % is not a measurable beat).
MIN_STROKE_FRACTION = 0.05
# EchoNet-Dynamic's prominence: half of the curve's 5th-95th percentile range.
PROMINENCE_OF_RANGE = 0.5
# Below this share of frames with a measurable LV (or below two frames) the clip is not measurable.
MIN_MEASURABLE_SHARE = 0.5
# Per-beat EF values further apart than this (EF points) are flagged as irregular (arrhythmia, or poor masks).
IRREGULAR_EF_SPREAD = 10.0

FLAG_FPS_UNKNOWN = "fps_unknown"
FLAG_UNMEASURABLE_FRAMES = "unmeasurable_frames"
FLAG_NO_FULL_BEAT = "no_full_beat_max_min_used"
FLAG_ONE_BEAT = "single_beat"
FLAG_IRREGULAR = "irregular_beats"
FLAG_FLAT = "flat_volume_curve"


@dataclass(frozen=True)
class Beat:
    """One cardiac cycle's ED and ES frames (0-based), their volumes and its EF."""

    ed_frame: int
    es_frame: int
    edv: float
    esv: float

    @property
    def ef(self) -> float:
        return ejection_fraction(self.edv, self.esv)


@dataclass
class BeatAnalysis:
    """The beats of a volume curve and the clip's ED/ES summary; `reason` says why where EF is not measurable.

    `ed_frame`/`es_frame` are those of the beat whose EF is nearest the median (or the max/min fallback); `edv`
    and `esv` are their volumes; `ef` is the mean per-beat EF (the fallback's EF without beats)."""

    beats: list[Beat]
    ed_frame: int | None
    es_frame: int | None
    edv: float
    esv: float
    ef: float
    ef_median: float
    flags: list[str] = field(default_factory=list)
    reason: str | None = None

    @property
    def ef_mean(self) -> float:
        return self.ef

    @property
    def measurable(self) -> bool:
        return self.reason is None


def min_cycle_frames(fps: float | None) -> int:
    """The shortest cardiac cycle in frames at `fps` (2 frames where the rate is unknown: no constraint)."""
    return max(2, int(round(MIN_CYCLE_S * fps))) if fps and fps > 0 else 2


def _not_measurable(reason: str, flags: list[str]) -> BeatAnalysis:
    return BeatAnalysis([], None, None, np.nan, np.nan, np.nan, np.nan, flags, reason)


def detect_beats(volumes: np.ndarray, fps: float | None = None) -> BeatAnalysis:
    """Beats (ED peak -> next ES trough) of an LV volume curve with NaN for frames without a measurable LV."""
    volumes = np.asarray(volumes, dtype=float)
    flags: list[str] = [] if fps and fps > 0 else [FLAG_FPS_UNKNOWN]
    measurable = np.isfinite(volumes) & (volumes > 0)
    if not measurable.all():
        flags.append(f"{FLAG_UNMEASURABLE_FRAMES}:{int((~measurable).sum())}")
    if measurable.sum() < 2 or measurable.mean() < MIN_MEASURABLE_SHARE:
        # Beats bridged over that many gaps would be guesses (a model seeing the clip at the wrong scale finds an
        # LV of a few pixels in half the frames, and its max/min then reads as a huge EF).
        return _not_measurable(
            f"no measurable LV in most frames: {int(measurable.sum())} of {len(volumes)} frames have one", flags
        )
    frames = np.arange(len(volumes))
    # For the peak search only, gaps are bridged linearly and a 3-frame median removes one-frame spikes (a frame
    # whose LV was partly missed); ED and ES volumes are always those of measured frames.
    curve = median_filter(np.interp(frames, frames[measurable], volumes[measurable]), size=3, mode="nearest")
    low, high = np.percentile(curve, [5, 95])
    prominence = max(PROMINENCE_OF_RANGE * (high - low), MIN_STROKE_FRACTION * float(np.median(curve)))
    distance = min_cycle_frames(fps)
    peaks = [p for p in find_peaks(curve, distance=distance, prominence=prominence)[0] if measurable[p]]
    troughs = [t for t in find_peaks(-curve, distance=distance, prominence=prominence)[0] if measurable[t]]
    beats = []
    for peak, next_peak in zip(peaks, [*peaks[1:], len(curve)]):
        following = [t for t in troughs if peak < t < next_peak]
        if following:
            trough = min(following, key=lambda t: curve[t])
            beats.append(Beat(int(peak), int(trough), float(volumes[peak]), float(volumes[trough])))
    if not beats:
        measured = np.where(measurable, volumes, np.nan)
        ed, es = int(np.nanargmax(measured)), int(np.nanargmin(measured))
        edv, esv = float(volumes[ed]), float(volumes[es])
        flags.append(FLAG_NO_FULL_BEAT)
        if edv - esv < MIN_STROKE_FRACTION * float(np.median(curve)):
            flags.append(FLAG_FLAT)
            return _not_measurable(
                f"flat volume curve: the LV volume varies by {100 * (edv - esv) / edv:.1f} % "
                "over the clip, no beat to measure",
                flags,
            )
        ef = ejection_fraction(edv, esv)
        return BeatAnalysis([], ed, es, edv, esv, ef, ef, flags)
    efs = np.array([beat.ef for beat in beats])
    if len(beats) == 1:
        flags.append(FLAG_ONE_BEAT)
    elif np.ptp(efs) > IRREGULAR_EF_SPREAD:
        flags.append(FLAG_IRREGULAR)
    median = float(np.median(efs))
    typical = beats[int(np.argmin(np.abs(efs - median)))]
    return BeatAnalysis(
        beats, typical.ed_frame, typical.es_frame, typical.edv, typical.esv, float(efs.mean()), median, flags
    )
