"""lightecho compare --pred NAME=DIR --pred NAME=DIR --ref DIR -o OUT: side-by-side comparison with Wilcoxon tests."""

import argparse
from pathlib import Path

from nnunet_lightweight.cli import SIGNIFICANCE_LEVEL
from nnunet_lightweight.cli.evaluate import add_scoring_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare two or more prediction folders against one reference (tables, Wilcoxon, boxplots)",
        description="Scores each prediction folder like `lightecho evaluate`, pairs the models by case and writes "
        "OUT/comparison.md (mean ± std per structure, anatomical outliers, Wilcoxon signed-rank "
        "p-values per model pair, strata), comparison.csv, wilcoxon.csv, outliers.csv, metrics.csv, "
        "comparison_by_<view|phase|quality>.csv and boxplot_dice.png / boxplot_hd.png.",
    )
    parser.add_argument(
        "--pred",
        action="append",
        required=True,
        metavar="NAME=DIR",
        help="a model's prediction folder, optionally named (NAME=DIR; default name: the folder "
        "name); give --pred at least twice",
    )
    parser.add_argument("--ref", type=Path, required=True, help="folder of reference <case>.nii.gz label maps")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "--alpha", type=SIGNIFICANCE_LEVEL, default=0.05, help="significance level marked in the tables (0.05)"
    )
    add_scoring_arguments(parser)
    parser.set_defaults(func=_run)


def parse_predictions(values: list[str]) -> dict[str, Path]:
    """{model name: folder} from `NAME=DIR` or `DIR` values; names must be unique."""
    from nnunet_lightweight.core.errors import InputError

    predictions: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep:
            name, folder = Path(value).name, value
        if not name or not folder:
            raise InputError(f"--pred: expected NAME=DIR or DIR, got {value!r}")
        if "|" in name:  # Markdown's column separator: the name would break comparison.md's tables
            raise InputError(f"--pred: a model name may not contain '|', got {name!r} (name it with NAME=DIR)")
        if name in predictions:
            raise InputError(f"--pred: model name {name!r} given twice (name them with NAME=DIR)")
        predictions[name] = Path(folder)
    return predictions


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.evaluation.compare import compare_models
    from nnunet_lightweight.evaluation.io import parse_labels

    result = compare_models(
        parse_predictions(args.pred),
        args.ref,
        args.output,
        parse_labels(args.labels),
        args.metadata,
        args.postprocess,
        args.morphology,
        args.radius,
        args.allow_missing,
        args.alpha,
        overwrite=args.overwrite,
        verbose=True,
    )
    summary = result["summary"]
    table = summary[summary["metric"].isin(["dice", "hd"])].pivot_table(
        index="model", columns=["metric", "structure"], values="mean", sort=False
    )
    print(f"{len(result['cases'])} frames; mean per model and structure (HD in pixels):")
    print(table.round(3).to_string())
    print(f"report: {args.output / 'comparison.md'}")
    return 0
