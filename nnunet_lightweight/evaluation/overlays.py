"""Overlay figures: the echo frame with the reference contour (solid) and the predicted contour (dashed)."""

from __future__ import annotations

import math
from pathlib import Path

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import read_image
from nnunet_lightweight.core.labels import parse_case_id
from nnunet_lightweight.evaluation.io import DEFAULT_LABELS, FILE_ENDING, read_segmentation
from nnunet_lightweight.evaluation.metrics import dice_score
from nnunet_lightweight.evaluation.postprocessing import postprocess_segmentation

STRUCTURE_COLORS = {"LV": "#e41a1c", "MYO": "#4daf4a", "LA": "#377eb8"}
_FALLBACK_COLORS = ("#ff7f00", "#984ea3", "#ffff33", "#a65628")


def find_image(images: Path | dict[str, Path], case: str) -> Path:
    """The image of `case`: from a {case: file} dict, or in a folder as nnU-Net's `<case>_0000.nii.gz`, as
    `<case>.nii.gz`, or in the CAMUS layout `<patient>/<case>.nii.gz`."""
    if isinstance(images, dict):
        if case not in images:
            raise InputError(f"no image given for case {case}")
        return Path(images[case])
    folder = Path(images)
    patient = parse_case_id(case).patient
    for candidate in (f"{case}_0000{FILE_ENDING}", f"{case}{FILE_ENDING}", f"{patient}/{case}{FILE_ENDING}"):
        if (folder / candidate).is_file():
            return folder / candidate
    raise InputError(
        f"no image for case {case} in {folder} (looked for {case}_0000{FILE_ENDING} and {case}{FILE_ENDING})"
    )


def save_overlays(
    images: Path | dict[str, Path],
    pred_dir: Path | None,
    ref_dir: Path | None,
    cases: list[str],
    out_png: Path,
    labels: dict[str, int] = DEFAULT_LABELS,
    columns: int = 4,
    postprocess: str = "none",
    morphology: str = "both",
    radius: int = 1,
) -> Path:
    """A grid of `cases`, each the frame with reference contours (solid) and predicted contours (dashed) per
    structure, titled with the per-structure Dice when both are given. Returns `out_png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not cases:
        raise InputError("save_overlays: no cases to draw")
    colors = {name: STRUCTURE_COLORS.get(name, _FALLBACK_COLORS[i % 4]) for i, name in enumerate(labels)}
    columns = min(columns, len(cases))
    rows = math.ceil(len(cases) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.2 * columns, 3.6 * rows + 0.4), squeeze=False, layout="constrained"
    )
    for axis in axes.ravel():
        axis.axis("off")
    for axis, case in zip(axes.ravel(), cases):
        image, _ = read_image(find_image(images, case))
        axis.imshow(image, cmap="gray", interpolation="nearest")
        ref = read_segmentation(Path(ref_dir) / f"{case}{FILE_ENDING}")[0] if ref_dir else None
        pred = read_segmentation(Path(pred_dir) / f"{case}{FILE_ENDING}")[0] if pred_dir else None
        if pred is not None and postprocess != "none":
            pred = postprocess_segmentation(pred, postprocess, labels, morphology, radius)
        # Reference wide and translucent, prediction thin and dashed on top, so both stay visible where they agree.
        for segmentation, style, width, alpha in ((ref, "solid", 2.2, 0.55), (pred, "dashed", 1.0, 1.0)):
            if segmentation is None:
                continue
            if segmentation.shape != image.shape:
                raise InputError(f"case {case}: segmentation shape {segmentation.shape} != image shape {image.shape}")
            # Neighbouring structures share contours; drawing the first-listed (the LV) last keeps it visible.
            for name, label in reversed(labels.items()):
                mask = (segmentation == label).astype(float)
                if mask.any():
                    axis.contour(
                        mask, levels=[0.5], colors=[colors[name]], linestyles=style, linewidths=width, alpha=alpha
                    )
        title = case
        if ref is not None and pred is not None:
            title += "\nDice " + " ".join(
                f"{name} {dice_score(pred == lab, ref == lab):.2f}" for name, lab in labels.items()
            )
        axis.set_title(title, fontsize=8)
    handles = [Line2D([], [], color=colors[name], label=name) for name in labels]
    if ref_dir and pred_dir:
        handles += [
            Line2D([], [], color="black", linestyle="solid", linewidth=2.2, alpha=0.55, label="reference"),
            Line2D([], [], color="black", linestyle="dashed", linewidth=1.0, label="prediction"),
        ]
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=110)
    plt.close(figure)
    return out_png
