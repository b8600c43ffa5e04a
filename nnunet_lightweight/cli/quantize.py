"""lightecho quantize -i FRAMES -o INT8_MODEL_FOLDER [-m MODEL_FOLDER]: a model folder for `--precision int8`."""

import argparse
from pathlib import Path

from nnunet_lightweight.cli import bounded

# workflows.quantize.DEFAULT_CALIBRATION_FRAMES, kept here so that --help does not import torch (a test checks it).
DEFAULT_CALIBRATION_FRAMES = 128


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="copy a model folder with int8 networks for --precision int8 (OpenVINO on CPU), calibrated on frames",
        description="Post-training int8 quantization (NNCF, OpenVINO) of each fold of a trained model folder "
        "(default: the shipped LightEcho), calibrated on frames of INPUT after the predictor's own preprocessing. "
        "Writes a new model folder OUTPUT: what prediction reads of the model folder, plus "
        "fold_X/openvino_int8/ with the fingerprint of the weights it was made from; the model folder itself is "
        "not written to. `predict`, `cine` and `ef` run it with --model OUTPUT --precision int8. Calibrate on "
        "frames like those you will segment (a few dozen patients of your own data, or the model's training "
        "images), never on the frames you evaluate on. Prints, per fold, the share of calibration pixels whose "
        "label the int8 network gives as the fp32 one does.",
        epilog="example: lightecho quantize -i nnUNet_raw/Dataset500_CAMUS/imagesTr -o lightecho_int8",
    )
    parser.add_argument(
        "-i",
        "--input",
        type=Path,
        required=True,
        help="calibration frames: a folder of images, still frames or clips (as `predict` takes them)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the int8 model folder to write")
    parser.add_argument(
        "-m",
        "--model",
        type=Path,
        default=None,
        help="trained nnU-Net model folder (default: the LightEcho model shipped with this package)",
    )
    parser.add_argument(
        "--frames",
        type=bounded(int, 1),
        default=DEFAULT_CALIBRATION_FRAMES,
        help=f"calibration frames, spread evenly over the cases in name order (default {DEFAULT_CALIBRATION_FRAMES})",
    )
    parser.add_argument("-f", "--folds", nargs="+", default=None, help="folds to quantize (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT where it is a folder lightecho wrote")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.workflows.quantize import quantize_model_folder

    results = quantize_model_folder(args.input, args.output, args.model, args.frames, args.folds, args.overwrite)
    for result in results:
        print(
            f"fold {result['fold']}: {result['path']} ({result['frames']} calibration frames; int8 and fp32 labels "
            f"agree on {100 * result['argmax_agreement']:.2f} % of their pixels)"
        )
    print(f"written: {args.output} (predict with --model {args.output} --precision int8)")
    return 0
