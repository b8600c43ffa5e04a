"""Side-by-side comparison of two or more prediction folders against one reference: per structure mean ± std,
anatomical outlier counts, Wilcoxon signed-rank tests paired by case, Markdown/CSV tables, boxplots, and tables
stratified by view, phase and (with the metadata sidecar) image quality."""

from __future__ import annotations

import itertools
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.output import OutputLayout, check_output_dir, staged_output
from nnunet_lightweight.evaluation.anatomy import PlausibilityTolerances
from nnunet_lightweight.evaluation.evaluate import DEFINITIONS, Evaluation, evaluate_cases
from nnunet_lightweight.evaluation.io import DEFAULT_LABELS, UNKNOWN

COMPARED_METRICS = ("dice", "hd", "hd95", "mad")
METRIC_TITLES = {
    "dice": "Dice",
    "hd": "Hausdorff distance (px)",
    "hd95": "HD95 (px)",
    "mad": "Mean absolute contour distance (px)",
}
ALL_STRUCTURES = "all"
STRATA = ("view", "phase", "quality")
# What `compare` writes: how an output folder of a version before the marker file is recognised.
COMPARISON_LAYOUT = OutputLayout("comparison.md", ("*.csv", "boxplot_*.png"))


def wilcoxon_paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(statistic, two-sided p) of scipy's Wilcoxon signed-rank test on paired samples.

    Zero differences are dropped (scipy's default `zero_method="wilcox"`); when every difference is zero the
    samples are identical and the result is (0.0, 1.0) instead of scipy's warning or error.
    """
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    if not np.any(a - b):
        return 0.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = wilcoxon(a, b)
    return float(result.statistic), float(result.pvalue)


def summary_table(metrics: pd.DataFrame, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean, std, median and n of each compared metric per model and structure (and `by` columns)."""
    keys = [*by, "model", "structure"]
    long = metrics.melt(id_vars=keys, value_vars=list(COMPARED_METRICS), var_name="metric")
    table = long.groupby([*keys, "metric"], sort=False)["value"].agg(["mean", "std", "median", "count"])
    return table.rename(columns={"count": "n"}).reset_index()


def wilcoxon_table(metrics: pd.DataFrame, models: list[str], alpha: float = 0.05) -> pd.DataFrame:
    """Wilcoxon signed-rank p-values for every model pair, structure (and all structures pooled) and metric,
    paired by case (and structure)."""
    rows = []
    structures = [*metrics["structure"].unique(), ALL_STRUCTURES]
    for model_a, model_b in itertools.combinations(models, 2):
        for structure in structures:
            subset = metrics if structure == ALL_STRUCTURES else metrics[metrics["structure"] == structure]
            for metric in COMPARED_METRICS:
                paired = subset.pivot_table(index=["case", "structure"], columns="model", values=metric)
                a, b = paired[model_a].to_numpy(), paired[model_b].to_numpy()
                statistic, p_value = wilcoxon_paired(a, b)
                rows.append(
                    {
                        "model_a": model_a,
                        "model_b": model_b,
                        "structure": structure,
                        "metric": metric,
                        "n": len(a),
                        "n_nonzero": int(np.count_nonzero(a - b)),
                        "mean_a": float(a.mean()),
                        "mean_b": float(b.mean()),
                        "median_difference": float(np.median(a - b)),
                        "statistic": statistic,
                        "p_value": p_value,
                        "significant": p_value < alpha,
                    }
                )
    return pd.DataFrame(rows)


HIGHER_IS_BETTER = {"dice": True, "hd": False, "hd95": False, "mad": False}
# Equivalence margins of the paired mean difference: ±0.01 Dice, and for the Hausdorff distance ±1 pixel.
EQUIVALENCE_MARGINS = {"dice": 0.01, "hd": 1.0}
VERDICTS = ("equivalent", "better", "worse", "inconclusive")


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of the paired differences a - b and its Student t confidence interval (low, high).

    With fewer than two pairs there is no interval: (mean, nan, nan). Identical samples give a zero-width interval.
    """
    from scipy.stats import t

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    differences = a - b
    mean = float(differences.mean()) if len(differences) else float("nan")
    if len(differences) < 2:
        return mean, float("nan"), float("nan")
    half_width = float(
        t.ppf((1 + confidence) / 2, len(differences) - 1) * differences.std(ddof=1) / np.sqrt(len(differences))
    )
    return mean, mean - half_width, mean + half_width


def equivalence_verdict(low: float, high: float, margin: float, higher_is_better: bool = True) -> str:
    """The verdict of a confidence interval of a - b: "equivalent" when it lies inside ±margin, else "better" or
    "worse" when it lies wholly on one side of 0 (which side is better depends on the metric), else
    "inconclusive" (also when there is no interval)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    if -margin < low and high < margin:
        return "equivalent"
    if low > 0 or high < 0:
        return "better" if (low > 0) == higher_is_better else "worse"
    return "inconclusive"


def paired_difference_table(
    metrics: pd.DataFrame,
    model_a: str,
    model_b: str,
    margins: dict[str, float] = EQUIVALENCE_MARGINS,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per structure and metric of `margins`: the paired mean difference model_a - model_b with its confidence
    interval, the Wilcoxon signed-rank p-value, and the verdict of the interval against the margin."""
    rows = []
    for structure in metrics["structure"].unique():
        subset = metrics[metrics["structure"] == structure]
        for metric, margin in margins.items():
            paired = subset.pivot_table(index="case", columns="model", values=metric)
            a, b = paired[model_a].to_numpy(), paired[model_b].to_numpy()
            difference, low, high = paired_difference(a, b, confidence)
            rows.append(
                {
                    "model_a": model_a,
                    "model_b": model_b,
                    "structure": structure,
                    "metric": metric,
                    "n": len(a),
                    "mean_a": float(a.mean()),
                    "mean_b": float(b.mean()),
                    "difference": difference,
                    "ci_low": low,
                    "ci_high": high,
                    "confidence": confidence,
                    "p_value": wilcoxon_paired(a, b)[1],
                    "margin": margin,
                    "verdict": equivalence_verdict(low, high, margin, HIGHER_IS_BETTER[metric]),
                }
            )
    return pd.DataFrame(rows)


def outlier_table(plausibility: pd.DataFrame, criteria: list[str], by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Anatomical outlier count and fraction per model (and `by` columns), with the count of each criterion."""
    grouped = plausibility.groupby([*by, "model"], sort=False)
    table = grouped.agg(frames=("case", "size"), outliers=("outlier", "sum"))
    table["fraction"] = table["outliers"] / table["frames"]
    for name in criteria:
        table[name] = grouped[name].sum()
    return table.reset_index().sort_values(list(by), kind="stable") if by else table.reset_index()


def compare_models(
    predictions: dict[str, Path],
    reference: Path,
    out_dir: Path | None = None,
    labels: dict[str, int] = DEFAULT_LABELS,
    metadata: Path | None = None,
    postprocess: str = "none",
    morphology: str = "both",
    radius: int = 1,
    allow_missing: bool = False,
    alpha: float = 0.05,
    tolerances: PlausibilityTolerances = PlausibilityTolerances(),
    overwrite: bool = False,
    verbose: bool = False,
) -> dict:
    """Compare prediction folders ({model name: folder}) against `reference`, paired by case.

    Returns {"metrics", "plausibility", "summary", "outliers", "wilcoxon", "stratified": {stratum: {"summary",
    "outliers"}}, "cases"} as DataFrames; with `out_dir`, also writes comparison.md, comparison.csv, wilcoxon.csv,
    outliers.csv, metrics.csv, comparison_by_<stratum>.csv and boxplot_dice.png / boxplot_hd.png.
    """
    if len(predictions) < 2:
        raise InputError(f"compare needs at least two prediction folders, got {len(predictions)}")
    if out_dir is not None:
        target = check_output_dir(
            out_dir, overwrite, inputs=[*predictions.values(), reference, metadata], layout=COMPARISON_LAYOUT
        )
    evaluations: dict[str, Evaluation] = {}
    for name, folder in predictions.items():
        if verbose:
            print(f"evaluating {name}: {folder}", file=sys.stderr, flush=True)
        evaluations[name] = evaluate_cases(
            folder, reference, labels, postprocess, morphology, radius, metadata, allow_missing, tolerances, verbose
        )
    cases = sorted(set.intersection(*(set(e.metrics["case"]) for e in evaluations.values())))
    if not cases:
        raise InputError(f"the prediction folders share no case: {', '.join(map(str, predictions.values()))}")
    dropped = {name: len(set(e.metrics["case"])) - len(cases) for name, e in evaluations.items()}
    if any(dropped.values()) and verbose:
        print(
            f"comparing the {len(cases)} cases all models predicted; dropped per model: {dropped}",
            file=sys.stderr,
            flush=True,
        )
    metrics = pd.concat(
        [e.metrics[e.metrics["case"].isin(cases)].assign(model=name) for name, e in evaluations.items()],
        ignore_index=True,
    )
    plausibility = pd.concat(
        [e.plausibility[e.plausibility["case"].isin(cases)].assign(model=name) for name, e in evaluations.items()],
        ignore_index=True,
    )
    criteria = next(iter(evaluations.values())).criteria
    models = list(predictions)
    result = {
        "cases": cases,
        "metrics": metrics,
        "plausibility": plausibility,
        "summary": summary_table(metrics),
        "outliers": outlier_table(plausibility, criteria) if criteria else pd.DataFrame(),
        "wilcoxon": wilcoxon_table(metrics, models, alpha),
        "stratified": {},
    }
    for stratum in STRATA:
        if set(metrics[stratum].unique()) == {UNKNOWN}:
            continue
        result["stratified"][stratum] = {
            "summary": summary_table(metrics, (stratum,)),
            "outliers": outlier_table(plausibility, criteria, (stratum,)) if criteria else pd.DataFrame(),
        }
    if out_dir is not None:
        settings = next(iter(evaluations.values())).settings
        with staged_output(target) as staging:
            _write_comparison(result, predictions, settings, models, list(labels), alpha, staging)
    return result


def _write_comparison(
    result: dict,
    predictions: dict[str, Path],
    settings: dict,
    models: list[str],
    structures: list[str],
    alpha: float,
    out_dir: Path,
) -> None:
    result["metrics"].to_csv(out_dir / "metrics.csv", index=False, float_format="%.6g")
    result["summary"].to_csv(out_dir / "comparison.csv", index=False, float_format="%.6g")
    result["wilcoxon"].to_csv(out_dir / "wilcoxon.csv", index=False, float_format="%.6g")
    result["plausibility"].to_csv(out_dir / "outliers.csv", index=False)
    for stratum, tables in result["stratified"].items():
        tables["summary"].to_csv(out_dir / f"comparison_by_{stratum}.csv", index=False, float_format="%.6g")
    for metric in ("dice", "hd"):
        plot_boxplots(result["metrics"], metric, models, structures, out_dir / f"boxplot_{metric}.png")
    (out_dir / "comparison.md").write_text(
        comparison_markdown(result, predictions, settings, models, structures, alpha)
    )


def plot_boxplots(metrics: pd.DataFrame, metric: str, models: list[str], structures: list[str], out_png: Path) -> Path:
    """Boxplots of one metric per structure, the models side by side (the paper's Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab10").colors
    width = 0.8 / len(models)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.5 + len(structures) * (1 + 0.6 * len(models))), 4))
    for index, model in enumerate(models):
        data = [
            metrics.loc[(metrics["model"] == model) & (metrics["structure"] == s), metric].to_numpy()
            for s in structures
        ]
        positions = np.arange(len(structures)) + (index - (len(models) - 1) / 2) * width
        boxes = axis.boxplot(
            data,
            positions=positions,
            widths=width * 0.85,
            patch_artist=True,
            flierprops={"marker": ".", "markersize": 3},
            medianprops={"color": "black"},
        )
        for patch in boxes["boxes"]:
            patch.set_facecolor(colors[index % len(colors)])
            patch.set_alpha(0.75)
        axis.plot([], [], "s", color=colors[index % len(colors)], label=model)
    axis.set_xticks(np.arange(len(structures)), structures)
    axis.set_ylabel(METRIC_TITLES[metric])
    axis.grid(axis="y", alpha=0.3)
    axis.legend(frameon=False, fontsize=8)
    axis.set_title(f"{METRIC_TITLES[metric]} per structure ({metrics['case'].nunique()} frames)")
    figure.tight_layout()
    figure.savefig(out_png, dpi=120)
    plt.close(figure)
    return out_png


def _mean_std(table: pd.DataFrame, metric: str, decimals: int) -> pd.DataFrame:
    """Pivot a summary table into `mean ± std` cells: rows model, columns structure."""
    rows = table[table["metric"] == metric]
    cells = rows.apply(
        lambda r: f"{r['mean']:.{decimals}f} ± {0 if pd.isna(r['std']) else r['std']:.{decimals}f}", axis=1
    )
    index = [c for c in ("view", "phase", "quality") if c in rows.columns] + ["model"]
    return rows.assign(cell=cells).pivot_table(
        index=index, columns="structure", values="cell", aggfunc="first", sort=False
    )


def _markdown_table(frame: pd.DataFrame) -> str:
    frame = frame.reset_index() if frame.index.name or any(frame.index.names) else frame
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def comparison_markdown(
    result: dict, predictions: dict[str, Path], settings: dict, models: list[str], structures: list[str], alpha: float
) -> str:
    """The comparison report: tables of mean ± std, outliers, Wilcoxon p-values and strata, with the boxplots."""
    decimals = {"dice": 3, "hd": 2, "hd95": 2, "mad": 2}
    lines = [
        "# Model comparison",
        "",
        f"Reference: `{settings['ref_dir']}`; {len(result['cases'])} frames, paired by case; "
        f"post-processing: {settings['postprocess']}.",
        "",
        _markdown_table(pd.DataFrame({"model": models, "predictions": [f"`{predictions[m]}`" for m in models]})),
        "",
    ]
    for metric in COMPARED_METRICS:
        table = _mean_std(result["summary"], metric, decimals[metric])[structures]
        lines += [f"## {METRIC_TITLES[metric]}, mean ± std", "", _markdown_table(table), ""]
    if len(result["outliers"]):
        outliers = result["outliers"]
        criteria = [c for c in outliers.columns if c not in ("model", "frames", "outliers", "fraction")]
        shown = outliers.assign(fraction=outliers["fraction"].map(lambda f: f"{100 * f:.1f} %"))
        shown = shown[["model", "frames", "outliers", "fraction", *[c for c in criteria if outliers[c].any()]]]
        lines += [
            "## Anatomical outliers",
            "",
            _markdown_table(shown),
            "",
            f"Criteria: {DEFINITIONS['anatomical_outlier']}; per frame in `outliers.csv`.",
            "",
        ]
    wilcoxon = result["wilcoxon"]
    lines += [
        "## Wilcoxon signed-rank tests (paired by case)",
        "",
        f"Two-sided p-values, uncorrected for multiple comparisons; * p < {alpha}. The `all` column pools the "
        "structures (paired by case and structure). Identical results give p = 1.",
        "",
    ]
    for metric in COMPARED_METRICS:
        rows = wilcoxon[wilcoxon["metric"] == metric].assign(
            pair=lambda w: w["model_a"] + " vs " + w["model_b"],
            cell=lambda w: w["p_value"].map(lambda p: f"{p:.3g}") + np.where(w["significant"], " *", ""),
        )
        table = rows.pivot_table(index="pair", columns="structure", values="cell", aggfunc="first", sort=False)
        lines += [f"**{METRIC_TITLES[metric]}**", "", _markdown_table(table[[*structures, ALL_STRUCTURES]]), ""]
    lines += [
        "## Boxplots",
        "",
        "![Dice per structure](boxplot_dice.png)",
        "",
        "![Hausdorff distance per structure](boxplot_hd.png)",
        "",
    ]
    for stratum, tables in result["stratified"].items():
        lines += [f"## By {stratum}", ""]
        for metric in ("dice", "hd"):
            table = _mean_std(tables["summary"], metric, decimals[metric])[structures]
            lines += [f"**{METRIC_TITLES[metric]}**", "", _markdown_table(table), ""]
        if len(tables["outliers"]):
            counts = tables["outliers"][[stratum, "model", "frames", "outliers"]]
            lines += ["**Anatomical outliers**", "", _markdown_table(counts), ""]
    lines += ["## Definitions", "", *[f"- {name}: {text}" for name, text in DEFINITIONS.items()], ""]
    return "\n".join(lines)
