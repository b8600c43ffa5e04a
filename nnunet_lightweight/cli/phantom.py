"""lightecho phantom OUT: a synthetic echo dataset in the CAMUS NIfTI layout with analytically known volumes."""

import argparse

from nnunet_lightweight.cli import SEED, bounded


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="generate a synthetic CAMUS-layout echo dataset with known LV volumes and EF",
        description="Writes OUT/database_nifti/patientNNNN/ (2CH and 4CH, ED and ES frames with labels, "
        "Info_2CH.cfg/Info_4CH.cfg with the true EF, LVedv, LVesv), OUT/database_split/ and "
        "OUT/phantom_truth.json (analytic volume of every frame). The LV is a truncated prolate "
        "ellipsoid seen in two orthogonal planes, rendered as a fan-shaped sector with speckle and "
        "depth attenuation. Convert it like CAMUS: lightecho convert-camus OUT -d ID.",
        epilog="example: lightecho phantom /tmp/phantom -n 40 --sequences && "
        "lightecho convert-camus /tmp/phantom -d 501",
    )
    parser.add_argument("out", help="output folder (created; must be empty unless --overwrite)")
    parser.add_argument(
        "-n", "--patients", type=bounded(int, 1, 10000), default=20, help="number of patients (default 20)"
    )
    parser.add_argument("--size", type=bounded(int, 32, 4096), default=256, help="frame size in pixels (default 256)")
    parser.add_argument(
        "--depth-mm",
        type=bounded(float, 0, low_open=True),
        default=160.0,
        help="imaging depth in mm covered by the frame height (default 160: 0.625 mm pixels at 256)",
    )
    parser.add_argument(
        "--sequences", action="store_true", help="also write the half-sequences (all frames ED..NbFrame, with labels)"
    )
    parser.add_argument("--seed", type=SEED, default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.conversion.phantom import generate_phantom, load_phantom_truth

    out = generate_phantom(
        args.out,
        n_patients=args.patients,
        size=args.size,
        sequences=args.sequences,
        seed=args.seed,
        overwrite=args.overwrite,
        depth_mm=args.depth_mm,
    )
    truth = load_phantom_truth(out)["patients"]
    efs = [p["EF"] for p in truth.values()]
    print(
        f"phantom: {len(truth)} patients in {out} (EF {min(efs):.1f}-{max(efs):.1f} %, pixel "
        f"{args.depth_mm / args.size:.3f} mm); next: lightecho convert-camus {out} -d ID"
    )
    return 0
