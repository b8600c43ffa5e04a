"""lightecho ablation: the paper's ablation study (Table VI): list the variants, train one, or run the table."""

import argparse
from pathlib import Path

from nnunet_lightweight.cli import SIGNIFICANCE_LEVEL, bounded


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ablation",
        help="ablation study (paper Table VI): --list the variants, run the incremental table",
        description="The ablation study of the paper as nnU-Net trainer variants (nnunet_lightweight/training/"
        "variants). `--list` prints every variant with its parameter count; `run` trains and evaluates "
        "a list of variants on one fold and writes the incremental table; `train` trains one variant.",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="print '<trainer> <parameter count>' for every variant (1 input channel, 4 classes; "
        "nnU-Net's own trainers with its default 2d plan for 256x256 frames) and exit",
    )
    parser.add_argument(
        "-d",
        "--dataset",
        default=None,
        help="with --list: count parameters for this dataset's plans, channels and classes",
    )
    parser.set_defaults(func=_list_or_help, parser=parser)
    commands = parser.add_subparsers(dest="ablation_command", metavar="{run,train}")

    run = commands.add_parser(
        "run",
        help="train, evaluate and compare a list of variants on one fold; write the incremental table",
        description="For each variant: train it with nnU-Net (skipped when fold_F/checkpoint_final.pth and "
        "validation/summary.json exist, resumed from checkpoint_latest.pth otherwise; each training runs "
        "in its own process, logged to OUT/logs/), evaluate its fold's validation predictions against "
        "$nnUNet_preprocessed/DATASET/gt_segmentations (lightecho evaluate's metrics), and compare it "
        "with the current best of its track by Wilcoxon signed-rank tests (keep when Dice or HD is "
        "significantly better and neither significantly worse). The item `cca` evaluates the current "
        "best with connected-component post-processing. Writes OUT/ablation.md, ablation.csv, "
        "ablation.png, metrics.csv (per case), ablation.json (settings), rewritten after every row; "
        "rerun the same command to resume. Needs nnUNet_raw/nnUNet_preprocessed/nnUNet_results and a "
        "preprocessed dataset (lightecho plan -d DATASET).",
    )
    run.add_argument("-d", "--dataset", required=True, help="dataset id or name (e.g. 500 or Dataset500_CAMUS)")
    run.add_argument(
        "-f", "--fold", type=bounded(int, 0), default=0, help="fold of nnU-Net's cross-validation (default 0)"
    )
    run.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="folder for the table (created; reused to resume the same dataset and fold)",
    )
    run.add_argument(
        "--variants",
        nargs="+",
        default=["ladder"],
        metavar="VARIANT",
        help="trainer names, `cca`, or the groups `ladder` (Table VI, default), `nnunet` (nnU-Net "
        "with/without augmentation and deep supervision) and `all`, in the order to run",
    )
    run.add_argument("--device", choices=("cuda", "cpu", "mps"), default="cuda", help="training device (default cuda)")
    run.add_argument(
        "--max-epochs",
        type=bounded(int, 1),
        default=None,
        help="SMOKE/TEST SETTING: cap every variant at this many epochs (the table then is no result)",
    )
    run.add_argument(
        "--alpha", type=SIGNIFICANCE_LEVEL, default=0.05, help="significance level of the Wilcoxon tests (0.05)"
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an output folder that holds another dataset's or fold's table",
    )
    run.set_defaults(
        func=_run,
        interrupted_note="the finished rows are kept in the output folder and nnUNet_results; "
        "rerun the same command to resume",
    )

    train = commands.add_parser(
        "train",
        help="train one variant and predict its validation cases (nnUNetv2_train + --max-epochs)",
        description="Same as `nnUNetv2_train DATASET 2d FOLD -tr TRAINER [--c | --val]`, plus --max-epochs to "
        "shorten the schedule for smoke tests. `ablation run` calls this once per variant.",
    )
    train.add_argument("-d", "--dataset", required=True, help="dataset id or name")
    train.add_argument("-f", "--fold", type=bounded(int, 0), default=0, help="fold (default 0)")
    train.add_argument("-tr", "--trainer", required=True, help="trainer class name (see lightecho ablation --list)")
    train.add_argument("--device", choices=("cuda", "cpu", "mps"), default="cuda", help="device (default cuda)")
    train.add_argument(
        "--max-epochs", type=bounded(int, 1), default=None, help="SMOKE/TEST SETTING: cap the number of epochs"
    )
    mode = train.add_mutually_exclusive_group()
    mode.add_argument(
        "--continue",
        dest="continue_training",
        action="store_true",
        help="resume from the latest checkpoint (nnUNetv2_train --c)",
    )
    mode.add_argument(
        "--validation-only",
        action="store_true",
        help="only predict the validation cases of a finished training (nnUNetv2_train --val)",
    )
    train.set_defaults(func=_train)


def _list_or_help(args: argparse.Namespace) -> int:
    if not args.list:
        args.parser.print_help()
        return 1
    from nnunet_lightweight.workflows.ablation_variants import list_variants

    for name, count in list_variants(args.dataset):
        print(f"{name} {count}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.workflows.ablation import run_ablation

    table = run_ablation(
        args.dataset,
        args.fold,
        args.output,
        variants=args.variants,
        device=args.device,
        max_epochs=args.max_epochs,
        alpha=args.alpha,
        overwrite=args.overwrite,
    )
    print(f"written: {args.output}/ablation.md, ablation.csv, ablation.png, metrics.csv")
    return 1 if table["decision"].str.startswith("failed").any() else 0


def _train(args: argparse.Namespace) -> int:
    import multiprocessing

    import torch

    from nnunet_lightweight.workflows.ablation import train_variant

    # Thread settings of nnUNetv2_train: all cores for CPU training, one thread next to a GPU.
    if args.device == "cpu":
        torch.set_num_threads(multiprocessing.cpu_count())
    elif args.device == "cuda":
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        torch.backends.cudnn.benchmark = True
    folder = train_variant(
        args.dataset,
        args.fold,
        args.trainer,
        device=args.device,
        max_epochs=args.max_epochs,
        continue_training=args.continue_training,
        validation_only=args.validation_only,
    )
    print(f"trained: {folder}")
    return 0
