"""lightecho plan -d DATASET: write nnUNetPlansLightEcho (and nnU-Net's default 2d plans if missing)."""

import argparse

from nnunet_lightweight.cli import bounded


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="plan and preprocess a dataset for LightEcho (nnUNetPlansLightEcho)",
        description="Runs nnU-Net's fingerprint, default plans and 2d preprocessing where they are missing, "
        "unfinished, or made by this command from raw data that has changed since (it records what it "
        "planned from in lightecho_plan.json; plans it did not write are never replaced without "
        "--force), then "
        "nnUNetPlannerLightEcho, which writes nnUNetPlansLightEcho.json using the same preprocessed "
        "data. nnUNetv2_plan_and_preprocess -pl cannot find planners outside nnunetv2, hence this "
        "command. Afterwards: nnUNetv2_train DATASET 2d FOLD -tr nnUNetTrainerLightEcho "
        "[-p nnUNetPlansLightEcho].",
    )
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name (e.g. 500 or Dataset500_CAMUS)")
    parser.add_argument(
        "-np", "--num-processes", type=bounded(int, 1), default=2, help="processes for preprocessing (default 2)"
    )
    parser.add_argument(
        "--verify_dataset_integrity",
        action="store_true",
        help="run nnU-Net's dataset integrity check before fingerprinting",
    )
    parser.add_argument(
        "--preset", default="lightecho", help="architecture preset from plans/ (default: lightecho, the paper's model)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="plan and preprocess again even where the plans or preprocessed data were not written "
        "by lightecho plan (e.g. nnUNetv2_plan_and_preprocess), replacing them",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.planning.plan import plan

    path = plan(args.dataset, args.num_processes, args.verify_dataset_integrity, args.preset, args.force)
    print(f"LightEcho plans: {path}")
    return 0
