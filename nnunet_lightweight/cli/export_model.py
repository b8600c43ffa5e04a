"""lightecho export-model -o MODEL.zip: a model folder (default: the shipped LightEcho) for nnU-Net's installer."""

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-model",
        help="zip a model folder (default: the shipped LightEcho) for nnUNetv2_install_pretrained_model_from_zip",
        description="Writes MODEL.zip with nnU-Net's own export_pretrained_model (plans.json, dataset.json, "
        "dataset_fingerprint.json, each fold's checkpoint_final.pth, progress.png and validation "
        "summary), plus this project's input_convention.json and MODEL_CARD.md where the folder has "
        "them. `nnUNetv2_install_pretrained_model_from_zip MODEL.zip` then installs it into "
        "$nnUNet_results, where nnUNetv2_predict finds it by dataset, trainer and plans. The shipped "
        "model's weights are licensed CC BY-NC-SA 4.0 (inherited from CAMUS).",
        epilog="example: lightecho export-model -o lightecho_camus224.zip",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .zip file to write")
    parser.add_argument(
        "-m",
        "--model",
        type=Path,
        default=None,
        help="nnU-Net model folder <results>/DatasetXXX_Name/<trainer>__<plans>__<configuration> "
        "(default: the LightEcho model shipped with this package)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing .zip file")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.pretrained import export_model

    print(f"wrote {export_model(args.output, args.model, args.overwrite)}")
    return 0
