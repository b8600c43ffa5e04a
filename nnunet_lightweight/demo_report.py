"""The demo's report.md: the numbers a newcomer should see, with links to the figures and the full tables."""
import os
from pathlib import Path

import pandas as pd

STRUCTURES = ("LV", "MYO", "LA")


def _mean_std(summary: pd.DataFrame, model: str, structure: str, metric: str, decimals: int) -> str:
    row = summary[(summary["model"] == model) & (summary["structure"] == structure) & (summary["metric"] == metric)]
    if row.empty:
        return "n/a"
    return f"{row['mean'].iloc[0]:.{decimals}f} ± {row['std'].iloc[0]:.{decimals}f}"


def _p_value(wilcoxon: pd.DataFrame, structure: str, metric: str) -> str:
    row = wilcoxon[(wilcoxon["structure"] == structure) & (wilcoxon["metric"] == metric)]
    return "n/a" if row.empty else f"{row['p_value'].iloc[0]:.3g}"


def _stat(value: float | None, decimals: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


def _link(report_dir: Path, path: Path) -> str:
    return os.path.relpath(path, report_dir)


def demo_report_markdown(demo, parameters: dict[str, int], durations: dict[str, float], comparison: dict,
                         ef_reports: dict[str, dict], wall_time: float) -> str:
    """Markdown for `demo` (a nnunet_lightweight.demo.Demo) from the measured figures of its steps."""
    settings, work_dir = demo.settings, demo.work_dir
    models = list(parameters)
    summary, wilcoxon, outliers = comparison["summary"], comparison["wilcoxon"], comparison["outliers"]
    n_frames = int(outliers["frames"].iloc[0]) if not outliers.empty else 0
    data = (f"synthetic phantom, {settings.phantom_patients} patients, {settings.phantom_size}² frames"
            if settings.data == "phantom" else f"CAMUS from {settings.data}")
    lines = [
        "# LightEcho demo report",
        "",
        f"Data: {data}; split `{settings.split}` (training on fold 0, evaluation on the held-out test patients: "
        f"{n_frames} frames). Device: {settings.device}. Demo wall time: {wall_time / 60:.1f} min.",
        "",
        "## Models",
        "",
        "| model | trainer | parameters | training time (s) |",
        "|---|---|---:|---:|",
    ]
    for model in models:
        lines.append(f"| {model} | `{demo.trainer(model)}` | {parameters[model]:,} | {durations[model]:.0f} |")
    lines += [
        "",
        "## Segmentation of the held-out frames (after nnU-Net's connected-component post-processing)",
        "",
        "Mean ± SD per structure; Hausdorff distance in pixels; p: Wilcoxon signed-rank test paired by frame.",
        "",
        "| structure | " + " | ".join(f"Dice {m}" for m in models) + " | p (Dice) | "
        + " | ".join(f"HD {m}" for m in models) + " | p (HD) |",
        "|---|" + "---:|" * (2 * len(models) + 2),
    ]
    for structure in STRUCTURES:
        dice = " | ".join(_mean_std(summary, m, structure, "dice", 3) for m in models)
        hd = " | ".join(_mean_std(summary, m, structure, "hd", 2) for m in models)
        lines.append(f"| {structure} | {dice} | {_p_value(wilcoxon, structure, 'dice')} | {hd} | "
                     f"{_p_value(wilcoxon, structure, 'hd')} |")
    lines += ["", "Anatomical outliers (frames failing a plausibility criterion): " + ", ".join(
        f"{row.model} {int(row.outliers)}/{int(row.frames)}" for row in outliers.itertuples()) + ".", ""]
    lines += [
        "## Ejection fraction (Simpson biplane, predicted vs reference masks)",
        "",
        "| model | patients | EF r | EF bias (points) | EF limits of agreement | EF MAE (points) | EDV MAE |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    unmeasured = [model for model in models if ef_reports[model]["agreement"] is None]
    for model in models:
        stats = ef_reports[model]["agreement"]
        if stats is None:
            lines.append(f"| {model} | 0 | n/a | n/a | n/a | n/a | n/a |")
            continue
        ef, edv = stats["EF"], stats["EDV"]
        lines.append(f"| {model} | {ef['n']} | {_stat(ef['pearson_r'], 3)} | {_stat(ef['bias'])} | "
                     f"{_stat(ef['loa_low'])} to {_stat(ef['loa_high'])} | {_stat(ef['mae'])} | "
                     f"{_stat(edv['mae'], 1)} {edv.get('unit') or ''} |")
    lines += [f"\n{model}: EF could not be measured ({ef_reports[model]['error'][:200]})." for model in unmeasured]
    report_dir = demo.report_dir
    figures = [("Dice boxplots", report_dir / "comparison" / "boxplot_dice.png"),
               ("Hausdorff boxplots", report_dir / "comparison" / "boxplot_hd.png")]
    for model in models:
        slug = demo.prediction_folder(model, postprocessed=True).parent.name
        figures += [(f"{model} overlays", report_dir / f"overlays_{slug}.png"),
                    (f"{model} EF Bland-Altman", report_dir / f"ef_{slug}" / "bland_altman_ef.png")]
    lines += ["", "## Figures and full tables", ""]
    lines += [f"- [{title}]({_link(work_dir, path)})" for title, path in figures if path.is_file()]
    lines += [f"- [Full comparison (all metrics, strata, outlier criteria)]"
              f"({_link(work_dir, report_dir / 'comparison' / 'comparison.md')})",
              "", "The short demo schedule shows the pipeline, not the models' accuracy: for the paper's "
              "comparison run `lightecho demo --camus PATH` on a GPU.", ""]
    return "\n".join(lines)
