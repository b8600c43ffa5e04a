"""Time nnUNetv2_predict (default and --disable_tta) against lightecho predict on the same folder of frames.

Example (CPU, a trained model and 200 CAMUS frames in nnU-Net layout):
    python scripts/benchmark_end_to_end.py -m $nnUNet_results/Dataset500_CAMUS/nnUNetTrainerLightEcho__nnUNetPlans__2d \
        -i frames/ -w /tmp/e2e --device cpu
Prints the JSON written to WORK/end_to_end.json.
"""

import argparse
import json
import re
import shlex
from pathlib import Path

from nnunet_lightweight.workflows.end_to_end import benchmark_end_to_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", type=Path, required=True, help="trained nnU-Net model folder")
    parser.add_argument("-i", "--input", type=Path, required=True, help="folder of <case>_0000.nii.gz frames")
    parser.add_argument(
        "-w",
        "--work",
        type=Path,
        required=True,
        help="new folder for the outputs and end_to_end.json (refused if not empty)",
    )
    parser.add_argument("-f", "--folds", nargs="+", default=["0"], help="folds (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--no-tta-run",
        dest="include_tta",
        action="store_false",
        help="skip the nnUNetv2_predict run with its default test-time augmentation",
    )
    parser.add_argument(
        "--no-cca-run",
        dest="include_cca",
        action="store_false",
        help="skip the lightecho predict run with --cca (the largest-component filter)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OPTIONS",
        help="one more lightecho predict --no-cca run, timed against the same nnU-Net runs, e.g. "
        "--variant 'bf16=--precision bf16' (repeatable)",
    )
    parser.add_argument(
        "--lightecho-options",
        nargs=argparse.REMAINDER,
        default=[],
        help="extra options for lightecho predict (e.g. --backend torch), last on the line",
    )
    parser.add_argument("--keep-outputs", action="store_true", help="keep the predicted masks")
    args = parser.parse_args()
    variants = {}
    for variant in args.variant:
        name, separator, options = variant.partition("=")
        if not separator or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            parser.error(
                f"--variant {variant!r}: expected NAME=OPTIONS with a plain NAME (letters, digits, _ . -), "
                f"e.g. 'bf16=--precision bf16'"
            )
        if name in variants:
            parser.error(f"--variant {name!r} is given twice")
        variants[name] = shlex.split(options)
    result = benchmark_end_to_end(
        args.model,
        args.input,
        args.work,
        args.folds,
        args.device,
        args.include_tta,
        args.include_cca,
        args.lightecho_options,
        variants,
        args.keep_outputs,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
