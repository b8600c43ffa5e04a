"""lightecho export-onnx -m MODEL_FOLDER -o MODEL.onnx: ONNX export of a trained network with a parity check."""

import argparse
from pathlib import Path

from nnunet_lightweight.cli import bounded

# The opsets an export can use: from onnx_export.MIN_OPSET (the decoders' upsampling) to the newest torch.onnx's
# TorchScript exporter knows (torch.onnx._constants.ONNX_MAX_OPSET). Kept here so that --help does not import
# torch; a test checks them against both.
ONNX_OPSETS = (9, 23)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-onnx",
        help="export a trained network to ONNX (dynamic batch and frame size), checked against PyTorch",
        description="Exports one fold of a trained nnU-Net model folder to ONNX (input 'image': nnU-Net-preprocessed "
        "frames (batch, channels, height, width), height and width multiples of the network's total "
        "stride; output 'logits'). The export is run by ONNX Runtime on random batches of two sizes "
        "and compared with PyTorch; the figures are printed, and a mismatch is an error. The model's "
        "trainer, patch size, labels and normalisation are stored in the ONNX metadata.",
    )
    parser.add_argument("-m", "--model", type=Path, required=True, help="trained nnU-Net model folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("-f", "--fold", default=None, help="fold to export (default: the first with a checkpoint)")
    parser.add_argument(
        "-chk",
        "--checkpoint",
        default="checkpoint_final.pth",
        help="checkpoint file name (default checkpoint_final.pth)",
    )
    parser.add_argument("--opset", type=bounded(int, *ONNX_OPSETS), default=17, help="ONNX opset (default 17)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing ONNX file")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.inference.onnx_export import export_onnx

    result = export_onnx(args.model, args.output, args.fold, args.checkpoint, args.opset, args.overwrite)
    print(f"exported fold {result['fold']} of {result['trainer']} to {result['output']} (opset {result['opset']})")
    print(
        f"parity with PyTorch on batches {result['shapes']}: max |logit difference| {result['max_abs_diff']:.2e} "
        f"({result['max_rel_diff']:.2e} of the largest logit), argmax agreement {result['argmax_agreement']:.6f}"
    )
    return 0
