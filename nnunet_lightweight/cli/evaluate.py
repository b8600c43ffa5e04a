"""lightecho evaluate --pred DIR --ref DIR -o OUT: Dice, Hausdorff, HD95, MAD and anatomical outliers of one model."""

import argparse
from pathlib import Path

from nnunet_lightweight.cli import MORPHOLOGY_RADIUS, written_line

LABELS_HELP = (
    "structure=label id pairs, as in the dataset's dataset.json (default LV=1,MYO=2,LA=3); the "
    "anatomical plausibility criteria apply to the structures named LV, MYO and LA"
)


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `evaluate` and `compare`: labels, on-the-fly post-processing, metadata, missing cases."""
    parser.add_argument("--labels", default="LV=1,MYO=2,LA=3", help=LABELS_HELP)
    parser.add_argument(
        "--postprocess",
        choices=("none", "cca", "morph", "cca+morph"),
        default="none",
        help="post-process predictions in memory before scoring (files are not changed): cca keeps "
        "the largest connected component per structure (nnU-Net's function), morph applies "
        "--morphology, cca+morph both (default: none)",
    )
    parser.add_argument(
        "--morphology",
        choices=("open", "close", "both"),
        default="both",
        help="morphological operation per structure for --postprocess morph (default: both = opening then closing)",
    )
    parser.add_argument(
        "--radius", type=MORPHOLOGY_RADIUS, default=1, help="disk radius in pixels for --morphology (default 1)"
    )
    parser.add_argument(
        "--metadata",
        type=Path,
        default=None,
        help="camus_metadata.json sidecar for image-quality strata (default: found in or up to two "
        "folders above --ref)",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="evaluate only the predicted cases when some reference cases have no prediction "
        "(default: that is an error)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a prediction folder against reference labels (Dice, HD, HD95, MAD, outliers)",
        description="Scores every <case>.nii.gz of an nnU-Net prediction folder against the reference folder "
        "(e.g. labelsTr of the raw dataset), per case and structure: Dice, Hausdorff distance (HD), "
        "95th-percentile HD and mean absolute contour distance (MAD), in pixels and in mm from the "
        "image spacing, plus the anatomical plausibility criteria per frame. Writes OUT/metrics.csv, "
        "OUT/outliers.csv and OUT/summary.json.",
    )
    parser.add_argument("--pred", type=Path, required=True, help="folder of predicted <case>.nii.gz label maps")
    parser.add_argument("--ref", type=Path, required=True, help="folder of reference <case>.nii.gz label maps")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="folder of the images (nnU-Net <case>_0000.nii.gz or CAMUS layout): also draw "
        "OUT/overlays_worst.png with the 8 frames of lowest mean Dice",
    )
    add_scoring_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.evaluation.evaluate import evaluate_folder
    from nnunet_lightweight.evaluation.io import parse_labels

    metrics = evaluate_folder(
        args.pred,
        args.ref,
        args.output,
        parse_labels(args.labels),
        args.postprocess,
        args.morphology,
        args.radius,
        args.metadata,
        args.allow_missing,
        args.images,
        args.overwrite,
        verbose=True,
    )
    table = metrics.groupby("structure", sort=False)[["dice", "hd", "hd95", "mad"]].mean()
    print(f"{metrics['case'].nunique()} cases; mean per structure (distances in pixels):")
    print(table.round(3).to_string())
    print(written_line(args.output))
    return 0
