"""lightecho convert-camus SOURCE -d ID: a CAMUS download (any release layout) as an nnU-Net raw dataset."""

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from nnunet_lightweight.cli import SEED, bounded


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert-camus",
        help="convert CAMUS (NIfTI release, legacy MHD release or the 224x224 copy) to nnU-Net",
        description="Writes $nnUNet_raw/DatasetID_CAMUS with the ED and ES frames of the 2CH and 4CH views "
        "(labels 0 background, 1 LV, 2 MYO, 3 LA), case ids <patient>_<2CH|4CH>_<ED|ES>, "
        "camus_metadata.json (Info_*.cfg fields, spacing) and a patient-level splits_final.json "
        "(`lightecho plan` installs it into nnUNet_preprocessed). Patients of the official testing "
        "subgroup (or the legacy testing/ folder) always go to imagesTs. The dataset is built in a "
        "temporary folder and only moved into place after nnU-Net's integrity check passed.",
        epilog="example: lightecho convert-camus ~/data/CAMUS_public -d 500 --resize 256",
    )
    parser.add_argument(
        "source",
        help="CAMUS folder: holds database_nifti/ (NIfTI release), training/ + testing/ "
        "(legacy release) or patientNNNN/ folders",
    )
    parser.add_argument(
        "--split",
        default="cv5",
        help="cv<N>: patient-level N-fold cross-validation (default cv5); paper: the paper's "
        "patient-level 80/10/10 train/val/test split (test patients to imagesTs/labelsTs); "
        "official: the CAMUS subgroups of database_split/subgroup_*.txt; none: every "
        "patient to imagesTs/labelsTs, no training cases (a test set, down to one patient)",
    )
    parser.add_argument(
        "--export-sequences",
        action="store_true",
        help="also export the half-sequences (all frames, one 2D file each) to sequences/ for sequence inference",
    )
    add_conversion_options(parser, default_name="CAMUS")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.conversion.camus import convert_camus

    return finish_conversion(
        args,
        lambda: convert_camus(
            args.source, args.dataset_id, export_sequences=args.export_sequences, **conversion_options(args)
        ),
    )


def add_conversion_options(parser: argparse.ArgumentParser, default_name: str) -> None:
    """Options every converter takes: dataset id/name, resize, seed, overwrite, integrity check, overlay."""
    parser.add_argument(
        "-d", "--dataset-id", type=bounded(int, 1, 999), required=True, help="nnU-Net dataset id (e.g. 500)"
    )
    parser.add_argument("--name", default=default_name, help=f"dataset name (default {default_name})")
    parser.add_argument(
        "--resize",
        type=bounded(int, 8, 4096),
        nargs="+",
        metavar="SIZE",
        help="resize frames to SIZE x SIZE (or ROWS COLS), e.g. 256 as in the paper; the spacing is "
        "scaled so the physical extent stays the same (labels nearest-neighbour)",
    )
    parser.add_argument(
        "--interpolation",
        choices=["linear", "cubic"],
        default="linear",
        help="image interpolation for --resize (default linear)",
    )
    parser.add_argument(
        "--seed", type=SEED, default=12345, help="seed of the patient shuffling for splits (default 12345)"
    )
    parser.add_argument(
        "--spacing-units",
        choices=["auto", "mm", "pixel"],
        default="auto",
        help="whether header spacings are physical: auto (default) trusts them unless a patient has "
        "no Info/spacing information and 1x1 headers, as in the 224x224 copy",
    )
    parser.add_argument("--raw", help="nnU-Net raw folder (default: $nnUNet_raw)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of the same name")
    parser.add_argument("--no-verify", action="store_true", help="skip nnU-Net's verify_dataset_integrity at the end")
    parser.add_argument(
        "-np", "--num-processes", type=bounded(int, 1), default=2, help="processes for the integrity check (default 2)"
    )
    parser.add_argument("--overlay", metavar="PNG", help="also save an overlay PNG of a few converted frames")


def conversion_options(args: argparse.Namespace) -> dict:
    """The converter keyword arguments of `add_conversion_options`' options and the `--split` every converter has."""
    return {
        "name": args.name,
        "resize": args.resize,
        "overwrite": args.overwrite,
        "split": args.split,
        "raw_dir": args.raw,
        "interpolation": args.interpolation,
        "seed": args.seed,
        "spacing_units": args.spacing_units,
        "verify": not args.no_verify,
        "num_processes": args.num_processes,
    }


def finish_conversion(args: argparse.Namespace, convert: Callable[[], Path]) -> int:
    """Run a conversion, print its summary and timing, and write the optional overlay."""
    from nnunet_lightweight.conversion.dataset import describe_dataset
    from nnunet_lightweight.conversion.overlay import is_dataset_overlay, save_dataset_overlays
    from nnunet_lightweight.core.output import check_output_file

    if args.overlay:  # checked before converting, so that a bad path does not fail a finished conversion
        check_output_file(args.overlay, args.overwrite, "overlay PNG", is_dataset_overlay, suffix=".png")
    start = time.perf_counter()
    dataset_dir = convert()
    print(f"converted in {time.perf_counter() - start:.1f} s: {describe_dataset(dataset_dir)}")
    if args.overlay:
        print(f"overlay: {save_dataset_overlays(dataset_dir, out_png=args.overlay)}")
    return 0
