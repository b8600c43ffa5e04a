"""Overlay PNGs of converted frames, to check at a glance that labels sit on the anatomy."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import FILE_ENDING, read_frame
from nnunet_lightweight.core.labels import LABELS
from nnunet_lightweight.core.metadata import read_dataset_metadata
from nnunet_lightweight.core.output import follow_umask

LABEL_COLOURS = {LABELS["LV"]: (1.0, 0.2, 0.2), LABELS["MYO"]: (0.2, 0.9, 0.2), LABELS["LA"]: (0.3, 0.5, 1.0)}
# The PNG's Software text chunk: how `--overwrite` tells an overlay of ours from a user's picture.
OVERLAY_SOFTWARE = "nnunet-lightweight dataset overlay"


def save_dataset_overlays(
    dataset_dir: str | os.PathLike,
    cases: Sequence[str] | None = None,
    out_png: str | os.PathLike = "overlays.png",
    n_cases: int = 8,
    alpha: float = 0.35,
) -> Path:
    """A grid of frames (grey) with their labels (LV red, MYO green, LA blue) of a converted dataset.

    `cases` defaults to the ED and ES frames of both views of the first `n_cases // 4` labelled patients. Pixels are
    drawn with their spacing, so anisotropic native frames keep their true shape.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dataset_dir = Path(dataset_dir)
    records = read_dataset_metadata(dataset_dir)["cases"]
    labelled = [case for case, record in records.items() if record["label"]]
    if cases is None:
        cases = sorted(labelled)[: max(n_cases, 1)]
    unknown = [case for case in cases if case not in labelled]
    if unknown:
        raise InputError(f"no labelled case {unknown[0]} in {dataset_dir}")
    columns = min(4, len(cases))
    rows = int(np.ceil(len(cases) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.7 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, case in zip(axes.ravel(), cases):
        record = records[case]
        image, spacing = read_frame(dataset_dir / record["image"])
        label, _ = read_frame(dataset_dir / record["label"])
        colour = np.zeros(label.shape + (4,))
        for value, rgb in LABEL_COLOURS.items():
            colour[label == value] = (*rgb, alpha)
        axis.imshow(image, cmap="gray", aspect=spacing[0] / spacing[1], interpolation="nearest")
        axis.imshow(colour, aspect=spacing[0] / spacing[1], interpolation="nearest")
        axis.contour(label, levels=[0.5, 1.5, 2.5], colors="white", linewidths=0.4)
        axis.set_title(case.removesuffix(FILE_ENDING), fontsize=9)
    figure.suptitle(f"{dataset_dir.name}: LV red, MYO green, LA blue", fontsize=10)
    figure.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{out_png.name}.partial-", suffix=".png", dir=out_png.parent)
    os.close(handle)
    try:
        figure.savefig(partial, dpi=110, format="png", metadata={"Software": OVERLAY_SOFTWARE})
        follow_umask(partial)
        os.replace(partial, out_png)
    finally:
        plt.close(figure)
        if os.path.exists(partial):
            os.unlink(partial)
    return out_png


def is_dataset_overlay(path: str | os.PathLike) -> bool:
    """Whether `path` is an overlay PNG that `save_dataset_overlays` wrote."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.text.get("Software") == OVERLAY_SOFTWARE
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):  # PIL's ways of saying "not an image"
        return False
