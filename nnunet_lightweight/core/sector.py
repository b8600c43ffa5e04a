"""The ultrasound sector of a frame or clip, found despite colour overlays, text, scale bars and ECG traces.

Cues, combined (each alone fails on some real exports):
1. grey versus coloured: overlays are often coloured (ECG trace, markers, colour text); B-mode pixels are grey.
   The readers of `core.video_readers` mark the coloured pixels; they are never sector.
2. brightness: the sector holds image content in most places over the clip (its maximum over time is above a
   tenth of the clip's bright level); an opening removes lines and text thinner than a few pixels.
3. temporal variation: speckle and the heart move, overlays (logo, depth scale, grey bar, text) do not. With
   at least `MIN_FRAMES_FOR_MOTION` frames, candidate regions are scored by how many of their pixels change.
4. shape: the sector is one large fan-shaped region: of the connected candidates the one with the largest score
   (moving pixels, or area for still frames and loops without motion) times its solidity (area over convex hull
   area: near 1 for a fan, low for text and sparse tick marks) wins, and its convex hull, which also closes the
   dark blood pools that touch the sector's edge, is the sector mask.
A frame with no such region is used whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_lightweight.core.errors import InputError

# Pixels brighter than this share of the clip's bright level (its 99th percentile) at some time hold image.
BRIGHT_SHARE = 0.1
# Openings this many pixels deep remove ECG lines, ticks and text strokes (a 1-4 pixel wide overlay).
OPENING_ITERATIONS = 2
# Temporal motion needs a few frames; a pixel moves if its standard deviation over time exceeds this (0-255).
MIN_FRAMES_FOR_MOTION = 3
MOTION_STD = 2.0
# A candidate region smaller than this share of the frame is never the sector.
MIN_SECTOR_SHARE = 0.02


@dataclass(frozen=True)
class Sector:
    """The sector's mask (H, W) bool and its bounding box (rows, cols)."""

    mask: np.ndarray
    box: tuple[slice, slice]

    def masked(self, frames: np.ndarray) -> np.ndarray:
        """`frames` (..., H, W) with every pixel outside the sector set to 0 (overlays in the box's corners)."""
        return np.where(self.mask, frames, np.zeros((), dtype=np.asarray(frames).dtype))


def _as_clip(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise InputError(f"expected a frame (H, W) or a clip (T, H, W) for the sector search, got {frames.shape}")
    return frames


def find_sector(frames: np.ndarray, coloured: np.ndarray | None = None) -> Sector:
    """The ultrasound sector of a grey frame (H, W) or clip (T, H, W), with the (H, W) pixels known to be coloured
    in any frame (from the reader), which are never sector."""
    # Imported here, not at the top: skimage.morphology (with scipy.spatial) adds 0.1 s to every start of
    # `lightecho predict`, whose frames in the model's own convention need no sector.
    from skimage.morphology import convex_hull_image

    clip = _as_clip(frames)
    shape = clip.shape[1:]
    whole = Sector(np.ones(shape, bool), (slice(0, shape[0]), slice(0, shape[1])))
    brightest = clip.max(axis=0).astype(np.float32)
    floor, high = float(brightest.min()), float(np.percentile(brightest, 99))
    if high <= floor:
        return whole
    candidate = brightest > floor + BRIGHT_SHARE * (high - floor)
    if coloured is not None:
        candidate &= ~np.asarray(coloured, bool)
    candidate = ndimage.binary_opening(candidate, iterations=OPENING_ITERATIONS)
    labels, count = ndimage.label(candidate)
    if count == 0:
        return whole
    indices = np.arange(1, count + 1)
    areas = ndimage.sum_labels(candidate, labels, indices)
    weights = candidate
    if len(clip) >= MIN_FRAMES_FOR_MOTION:
        moving = clip.std(axis=0, dtype=np.float32) > MOTION_STD
        if (moving & candidate).sum() >= MIN_SECTOR_SHARE * candidate.size:
            weights = moving & candidate  # a loop without motion (a still repeated) keeps the area score
    scores = ndimage.sum_labels(weights, labels, indices)
    best, best_score = None, 0.0
    for label, area, score in zip(indices, areas, scores):
        if area < MIN_SECTOR_SHARE * candidate.size:
            continue
        rows, cols = ndimage.find_objects((labels == label).astype(np.uint8))[0]
        region = labels[rows, cols] == label
        hull = convex_hull_image(region)
        solidity = area / max(hull.sum(), 1)
        if score * solidity > best_score:
            best, best_score = (rows, cols, hull), score * solidity
    if best is None:
        return whole
    rows, cols, hull = best
    mask = np.zeros(shape, bool)
    mask[rows, cols] = hull
    return Sector(mask, (rows, cols))


def sector_bounding_box(frames: np.ndarray, coloured: np.ndarray | None = None) -> tuple[slice, slice]:
    """The sector's bounding box (rows, cols) in a frame (H, W) or clip (T, H, W), with the pixels known to be
    coloured in any frame."""
    return find_sector(frames, coloured).box
