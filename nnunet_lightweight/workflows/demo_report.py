"""The demo's report.md: the numbers a newcomer should see, with links to the figures and the full tables."""

import math
import os
from pathlib import Path

import pandas as pd

METRIC_NAMES = {"dice": "Dice", "hd": "HD (px)"}
# A validation EMA pseudo-Dice that gains less than this over that many epochs has plateaued.
PLATEAU_GAIN = 0.002
PLATEAU_EPOCHS = 3


def _mean_std(summary: pd.DataFrame, model: str, structure: str, metric: str, decimals: int) -> str:
    row = summary[(summary["model"] == model) & (summary["structure"] == structure) & (summary["metric"] == metric)]
    if row.empty:
        return "n/a"
    return f"{row['mean'].iloc[0]:.{decimals}f} ± {row['std'].iloc[0]:.{decimals}f}"


def _stat(value: float | None, decimals: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


def _link(report_dir: Path, path: Path) -> str:
    return os.path.relpath(path, report_dir)


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.1f}×" if denominator else "n/a"


def _interval(row, decimals: int) -> str:
    if not (math.isfinite(row.ci_low) and math.isfinite(row.ci_high)):
        return f"{row.difference:+.{decimals}f} [n/a]"
    return f"{row.difference:+.{decimals}f} [{row.ci_low:+.{decimals}f}, {row.ci_high:+.{decimals}f}]"


def plateau_note(ema: list[float]) -> str:
    """The last EMA pseudo-Dice and whether it plateaued: gain below PLATEAU_GAIN over the last PLATEAU_EPOCHS."""
    if len(ema) <= PLATEAU_EPOCHS:
        return f"{ema[-1]:.3f} after {len(ema)} epochs (too few to judge a plateau)"
    gain = ema[-1] - ema[-1 - PLATEAU_EPOCHS]
    state = "plateaued" if gain < PLATEAU_GAIN else "still rising"
    return f"{ema[-1]:.3f}, {gain:+.3f} over the last {PLATEAU_EPOCHS} epochs: {state}"


def verdict_line(differences: pd.DataFrame) -> str:
    """One line: the verdict of every structure and metric, e.g. `Dice: LV equivalent, MYO worse; HD: ...`."""
    parts = []
    for metric, rows in differences.groupby("metric", sort=False):
        parts.append(f"{METRIC_NAMES[metric]}: " + ", ".join(f"{r.structure} {r.verdict}" for r in rows.itertuples()))
    return "; ".join(parts)


def demo_report_markdown(
    demo,
    training: dict[str, dict],
    efficiency: dict[str, dict],
    comparison: dict,
    ef_reports: dict[str, dict],
    real_loop: dict,
    wall_time: float,
) -> str:
    """Markdown for `demo` (a nnunet_lightweight.workflows.demo.Demo) from the measured figures of its steps; the claim first:
    what LightEcho costs against nnU-Net's default network, then whether it is as accurate."""
    settings, work_dir = demo.settings, demo.work_dir
    models = list(training)
    light, default = models
    summary, outliers = comparison["summary"], comparison["outliers"]
    differences = comparison["differences"]
    n_frames = int(outliers["frames"].iloc[0]) if not outliers.empty else len(comparison["cases"])
    data = (
        f"synthetic phantom, {settings.phantom_patients} patients, {settings.phantom_size}² frames"
        if settings.data == "phantom"
        else f"CAMUS from {settings.data}"
    )
    cost = {m: efficiency[m] for m in models}
    frame = "×".join(map(str, cost[light]["frame"]))
    lines = [
        "# LightEcho demo report",
        "",
        f"Data: {data}; split `{settings.split}` (training on fold 0, evaluation on the held-out test patients: "
        f"{n_frames} frames). Device: {settings.device}. Demo wall time: {wall_time / 60:.1f} min.",
        "",
        f"Training rule: {demo.training_rule()}.",
        "",
        "## The claim: a fraction of the cost",
        "",
        f"Both networks as trained in this run, measured side by side on this machine ({cost[light]['device']}, "
        f"{cost[light]['backend']}, {frame} frames for LightEcho, {'×'.join(map(str, cost[default]['frame']))} "
        "for nnU-Net's default).",
        "",
        f"| | {light} | {default} | {default} ÷ {light} |",
        "|---|---:|---:|---:|",
        f"| parameters | {cost[light]['parameters']:,} | {cost[default]['parameters']:,} | "
        f"{_ratio(cost[default]['parameters'], cost[light]['parameters'])} |",
        f"| GMACs per frame | {cost[light]['gmacs']:.3f} | {cost[default]['gmacs']:.3f} | "
        f"{_ratio(cost[default]['gmacs'], cost[light]['gmacs'])} |",
        f"| inference ms per frame (one pass) | {cost[light]['ms_per_frame']:.2f} | {cost[default]['ms_per_frame']:.2f} | "
        f"{_ratio(cost[default]['ms_per_frame'], cost[light]['ms_per_frame'])} |",
        f"| passes per frame in nnU-Net's predictor (mirroring) | {training[light]['passes_per_frame']} | "
        f"{training[default]['passes_per_frame']} | "
        f"{_ratio(training[default]['passes_per_frame'], training[light]['passes_per_frame'])} |",
        f"| training time per epoch (s; same frames per epoch) | {training[light]['epoch_seconds']:.2f} | "
        f"{training[default]['epoch_seconds']:.2f} | "
        f"{_ratio(training[default]['epoch_seconds'], training[light]['epoch_seconds'])} |",
        f"| epochs trained | {training[light]['epochs']} | {training[default]['epochs']} | "
        f"{_ratio(training[default]['epochs'], training[light]['epochs'])} |",
        f"| training time (s) | {training[light]['seconds']:.0f} | {training[default]['seconds']:.0f} | "
        f"{_ratio(training[default]['seconds'], training[light]['seconds'])} |",
        "",
        "Validation EMA pseudo-Dice at the end of training (nnU-Net's checkpoint_best criterion; plateau: gain below "
        f"{PLATEAU_GAIN} over {PLATEAU_EPOCHS} epochs): "
        + "; ".join(f"{m} {plateau_note(training[m]['ema_fg_dice'])}" for m in models)
        + ".",
        "",
        f"## Accuracy: {light} − {default}, paired by frame ({n_frames} held-out frames)",
        "",
        "After nnU-Net's connected-component post-processing. Mean ± SD per model; the paired mean difference with "
        "its 95 % confidence interval (Student t); p: Wilcoxon signed-rank test. Verdict from the interval against "
        'the equivalence margin: "equivalent" if it lies inside ±margin, "better"/"worse" if it lies wholly '
        'on one side of 0, else "inconclusive". Frames of one patient are not independent: read the intervals as '
        "optimistic.",
        "",
        f"| structure | metric | {light} | {default} | difference [95 % CI] | p (Wilcoxon) | margin | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in differences.itertuples():
        decimals = 3 if row.metric == "dice" else 2
        lines.append(
            f"| {row.structure} | {METRIC_NAMES[row.metric]} | "
            f"{_mean_std(summary, light, row.structure, row.metric, decimals)} | "
            f"{_mean_std(summary, default, row.structure, row.metric, decimals)} | "
            f"{_interval(row, decimals + 1)} | {row.p_value:.3g} | ±{row.margin:g} | {row.verdict} |"
        )
    lines += ["", f"**Verdict for {light} against {default}** — {verdict_line(differences)}.", ""]
    worse = differences[differences["verdict"] == "worse"]
    if len(worse):
        lines += [
            f"In this run {light} is worse on "
            + ", ".join(f"{r.structure} {METRIC_NAMES[r.metric]}" for r in worse.itertuples())
            + ".",
            "",
        ]
    lines += [
        "Anatomical outliers (frames failing a plausibility criterion): "
        + ", ".join(f"{row.model} {int(row.outliers)}/{int(row.frames)}" for row in outliers.itertuples())
        + ".",
        "",
    ]
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
        lines.append(
            f"| {model} | {ef['n']} | {_stat(ef['pearson_r'], 3)} | {_stat(ef['bias'])} | "
            f"{_stat(ef['loa_low'])} to {_stat(ef['loa_high'])} | {_stat(ef['mae'])} | "
            f"{_stat(edv['mae'], 1)} {edv.get('unit') or ''} |"
        )
    lines += [f"\n{model}: EF could not be measured ({ef_reports[model]['error'][:200]})." for model in unmeasured]
    report_dir = demo.report_dir
    lines += ["", "## A real cine loop, segmented by the shipped CAMUS LightEcho model", ""]
    lines += real_loop_lines(real_loop, work_dir, report_dir / "real_loop")
    figures = [
        ("Dice boxplots", report_dir / "comparison" / "boxplot_dice.png"),
        ("Hausdorff boxplots", report_dir / "comparison" / "boxplot_hd.png"),
    ]
    for model in models:
        slug = demo.prediction_folder(model, postprocessed=True).parent.name
        figures += [
            (f"{model} overlays", report_dir / f"overlays_{slug}.png"),
            (f"{model} EF Bland-Altman", report_dir / f"ef_{slug}" / "bland_altman_ef.png"),
        ]
    lines += ["", "## Figures and full tables", ""]
    lines += [f"- [{title}]({_link(work_dir, path)})" for title, path in figures if path.is_file()]
    lines += [
        f"- [Paired differences, full precision]({_link(work_dir, report_dir / 'differences.csv')})",
        f"- [Full comparison (all metrics, strata, outlier criteria)]"
        f"({_link(work_dir, report_dir / 'comparison' / 'comparison.md')})",
        "",
        "The phantom is small and training is short: for the paper's comparison on real data run "
        "`lightecho demo --camus PATH` on a GPU.",
        "",
    ]
    return "\n".join(lines)


def real_loop_lines(real_loop: dict, work_dir: Path, folder: Path) -> list[str]:
    """The report's lines on the real loop: what was measured, or why it was skipped."""
    if "skipped" in real_loop:
        return [f"Skipped: {real_loop['skipped']}", ""]
    rows, cols = real_loop["size"]
    lines = [
        f"`{real_loop['loop']}`: {real_loop['frames']} frames of {rows}×{cols} pixels at "
        f"{real_loop['spacing_mm'][0]:g} mm, each cropped to its ultrasound sector and resized to the model's "
        "frame size by the model's input convention, the masks mapped back (no reference: a real loop shows "
        "the model at work, not its accuracy).",
        "",
    ]
    if "ef" in real_loop:
        lines += [
            f"ED (largest LV volume) frame {real_loop['ed_frame']}: {real_loop['edv_ml']:.1f} mL; ES (smallest) "
            f"frame {real_loop['es_frame']}: {real_loop['esv_ml']:.1f} mL; **single-plane (4CH) EF "
            f"{real_loop['ef']:.1f} %**.",
            "",
            f"![LV volume curve]({_link(work_dir, folder / 'volume_curve.png')})",
            "",
        ]
    else:
        lines += [f"EF not measurable: {real_loop['error'][:300]}", ""]
    lines += [f"![Overlay strip]({_link(work_dir, folder / 'overlay_strip.png')})", ""]
    return lines
