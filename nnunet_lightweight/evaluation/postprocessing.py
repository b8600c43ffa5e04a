"""Post-processing of predicted label maps: the paper's CCA (largest component per structure, done by nnU-Net's own
function) and its morphological opening/closing.

nnU-Net's data-driven variant (keep the largest component only where it raises Dice on the validation cases) is
used as is: `nnUNetv2_determine_postprocessing` / `nnUNetv2_apply_postprocessing` run unchanged on LightEcho
prediction folders (see the README). This module adds what the paper applies unconditionally.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import check_image_content
from nnunet_lightweight.core.labels import keep_largest_component_per_label
from nnunet_lightweight.core.output import OutputLayout, check_output_dir, staged_output
from nnunet_lightweight.evaluation.io import DEFAULT_LABELS, check_label_values, list_cases

POSTPROCESS_METHODS = ("none", "cca", "morph", "cca+morph")
MORPHOLOGY_MODES = ("open", "close", "both")
# What `postprocess` writes (masks only): how an output folder of a version before the marker file is recognised.
POSTPROCESS_LAYOUT = OutputLayout(None, ("*.nii.gz",))


def disk(radius: int) -> np.ndarray:
    """A digital disk of `radius` pixels (a 3×3 cross for radius 1): the structuring element of the morphology."""
    if radius < 1:
        raise InputError(f"morphology radius must be at least 1 pixel, got {radius}")
    rows, cols = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return rows**2 + cols**2 <= radius**2


def morphological_filter(
    segmentation: np.ndarray, labels: dict[str, int], mode: str = "both", radius: int = 1
) -> np.ndarray:
    """Label-aware binary opening and/or closing with a disk of `radius` pixels.

    Opening is done per structure (removes specks and thin spurs); each removed pixel takes the label of the
    nearest pixel that survived, background included, so a speck inside another structure joins that structure
    instead of leaving a hole. Closing is done on the union of the structures (fills narrow gaps, notches and small
    holes, also between two structures); each filled pixel takes the label of the nearest structure pixel.
    `both` opens, then closes.
    """
    if mode not in MORPHOLOGY_MODES:
        raise InputError(f"morphology mode must be one of {MORPHOLOGY_MODES}, got {mode!r}")
    if segmentation.ndim != 2:
        raise InputError(f"morphology is implemented for 2D frames, got shape {segmentation.shape}")
    element = disk(radius)
    result = np.array(segmentation, copy=True)
    structures = np.isin(result, list(labels.values()))
    if mode in ("open", "both"):
        kept = ~structures
        for label in labels.values():
            kept |= ndimage.binary_opening(result == label, element)
        result = _fill_from_nearest(result, ~kept, kept)
        structures = np.isin(result, list(labels.values()))
    if mode in ("close", "both"):
        # Pad with edge values so that structures touching the image border are not eroded there.
        closed = ndimage.binary_closing(np.pad(structures, radius, mode="edge"), element)[
            radius:-radius, radius:-radius
        ]
        result = _fill_from_nearest(result, closed & (result == 0), structures)
    return result


def _fill_from_nearest(segmentation: np.ndarray, targets: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """`segmentation` with each `targets` pixel set to the label of the nearest `sources` pixel."""
    if not targets.any() or not sources.any():
        return segmentation
    nearest = ndimage.distance_transform_edt(~sources, return_distances=False, return_indices=True)
    filled = segmentation.copy()
    filled[targets] = segmentation[tuple(nearest)][targets]
    return filled


def postprocess_segmentation(
    segmentation: np.ndarray,
    method: str = "cca",
    labels: dict[str, int] = DEFAULT_LABELS,
    morphology: str = "both",
    radius: int = 1,
) -> np.ndarray:
    """Apply `method`: `none`, `cca` (largest component per structure), `morph` (opening/closing) or `cca+morph`
    (morphology first, then the largest component, so specks split off by opening are removed too)."""
    if method not in POSTPROCESS_METHODS:
        raise InputError(f"post-processing method must be one of {POSTPROCESS_METHODS}, got {method!r}")
    result = segmentation
    if method in ("morph", "cca+morph"):
        result = morphological_filter(result, labels, morphology, radius)
    if method in ("cca", "cca+morph"):
        result = keep_largest_component_per_label(result, labels)
    return result


def postprocess(
    input_dir: Path,
    output_dir: Path,
    method: str = "cca",
    labels: dict[str, int] = DEFAULT_LABELS,
    morphology: str = "both",
    radius: int = 1,
    overwrite: bool = False,
) -> list[Path]:
    """Post-process every `<case>.nii.gz` of a prediction folder into `output_dir` (headers kept); returns the files."""
    import SimpleITK as sitk

    input_dir, output_dir = Path(input_dir), Path(output_dir)
    cases = list_cases(input_dir)
    if not cases:
        raise InputError(f"no .nii.gz predictions in {input_dir}")
    target = check_output_dir(output_dir, overwrite, inputs=[input_dir], layout=POSTPROCESS_LAYOUT)
    with staged_output(target) as staging:
        for path in cases.values():
            try:
                image = sitk.ReadImage(str(path))
            except RuntimeError as error:
                raise InputError(f"cannot read segmentation {path}") from error
            array = sitk.GetArrayFromImage(image)
            check_image_content(path, array)
            frame = array.reshape([n for n in array.shape if n != 1] or [1])
            if frame.ndim != 2 or image.GetNumberOfComponentsPerPixel() != 1:
                raise InputError(f"{path} is not a 2D label map (shape {array.shape}); post-processing is per frame")
            if not np.issubdtype(frame.dtype, np.integer) and not np.all(np.mod(frame, 1) == 0):
                raise InputError(f"{path} holds non-integer values; expected a label map")
            check_label_values(path, frame, labels)
            processed = postprocess_segmentation(frame, method, labels, morphology, radius).reshape(array.shape)
            written = sitk.GetImageFromArray(processed.astype(array.dtype))
            written.CopyInformation(image)
            sitk.WriteImage(written, str(staging / path.name), True)
    return [output_dir / path.name for path in cases.values()]
