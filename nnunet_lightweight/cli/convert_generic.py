"""lightecho convert-generic CSV -d ID --name NAME: frames listed in a CSV (e.g. HUNT4) as an nnU-Net dataset."""

import argparse

from nnunet_lightweight.cli.convert_camus import add_conversion_options, conversion_options, finish_conversion


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert-generic",
        help="convert 2D echo frames listed in a CSV (e.g. HUNT4) to nnU-Net with CAMUS label ids",
        description="Reads a CSV with the columns patient,view,phase,image[,label,spacing,subset] (paths relative "
        "to the CSV; view 2CH/4CH, phase ED/ES, spacing ROWxCOL in mm, subset train/test) and writes "
        "$nnUNet_raw/DatasetID_NAME exactly like convert-camus: case ids <patient>_<view>_<phase>, "
        "labels 0 background, 1 LV, 2 MYO, 3 LA, camus_metadata.json and a patient-level "
        "splits_final.json. Unlabelled frames and subset=test patients go to imagesTs.",
        epilog="example: lightecho convert-generic hunt4/frames.csv -d 501 --name HUNT4 "
        "--label-map 0=background,1=LV,2=MYO,3=LA --resize 256",
    )
    parser.add_argument("csv", help="CSV listing the frames (see the description)")
    parser.add_argument(
        "--label-map",
        help="source label value -> LightEcho label, e.g. 0=background,1=LV,2=MYO,3=LA "
        '(the default) or 0=0,255=1, or a JSON file {"255": "LV"}; '
        "values not in the map are an error",
    )
    parser.add_argument(
        "--split",
        default="cv5",
        help="cv<N>: patient-level N-fold cross-validation (default cv5); paper: patient-level "
        "80/10/10 train/val/test split (test patients to imagesTs/labelsTs); none: every "
        "patient to imagesTs/labelsTs, no training cases (a test set, down to one patient)",
    )
    add_conversion_options(parser, default_name="Echo")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.conversion.generic import convert_generic

    return finish_conversion(
        args, lambda: convert_generic(args.csv, args.dataset_id, label_map=args.label_map, **conversion_options(args))
    )
