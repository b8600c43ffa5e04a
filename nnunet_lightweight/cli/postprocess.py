"""lightecho postprocess -i DIR -o DIR: the paper's CCA and/or morphological opening/closing on a prediction folder."""

import argparse
from pathlib import Path

from nnunet_lightweight.cli import MORPHOLOGY_RADIUS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "postprocess",
        help="largest component per structure and/or morphological opening/closing of predictions",
        description="Writes post-processed copies of every <case>.nii.gz in the input folder (headers kept). "
        "cca keeps the largest 8-connected component of each structure (as nnU-Net's "
        "remove_all_but_largest_component_from_segmentation per label does, the paper's CCA); morph "
        "applies binary opening and/or closing per structure with a disk; cca+morph does the "
        "morphology first, then the CCA. nnU-Net's data-driven choice (keep CCA only where it helps) "
        "stays available as nnUNetv2_determine_postprocessing / nnUNetv2_apply_postprocessing.",
    )
    parser.add_argument("-i", "--input", type=Path, required=True, help="folder of predicted <case>.nii.gz files")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "--method", choices=("cca", "morph", "cca+morph"), default="cca", help="post-processing to apply (default: cca)"
    )
    parser.add_argument(
        "--morphology",
        choices=("open", "close", "both"),
        default="both",
        help="operation for morph: opening, closing, or opening then closing (default: both)",
    )
    parser.add_argument("--radius", type=MORPHOLOGY_RADIUS, default=1, help="disk radius in pixels (default 1)")
    parser.add_argument(
        "--labels", default="LV=1,MYO=2,LA=3", help="structure=label id pairs to process (default LV=1,MYO=2,LA=3)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.evaluation.io import parse_labels
    from nnunet_lightweight.evaluation.postprocessing import postprocess

    written = postprocess(
        args.input, args.output, args.method, parse_labels(args.labels), args.morphology, args.radius, args.overwrite
    )
    print(f"post-processed {len(written)} cases ({args.method}) into {args.output}")
    return 0
