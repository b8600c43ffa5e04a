"""The ablation study's records and report: the incremental table, its Markdown and its figure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nnunet_lightweight.workflows.ablation_variants import CCA, NNUNET_STEP


@dataclass
class Track:
    """The current best model of one track (LightEcho or nnU-Net) and the post-processing its rows get."""

    best_row: int | None = None
    postprocess: str = "none"


@dataclass
class AblationRow:
    """One row of the incremental table."""

    step: str
    trainer: str
    postprocessing: str = "none"
    params: int | None = None
    epochs: int | None = None
    metrics: pd.DataFrame | None = None  # per case and structure, from nnunet_lightweight.evaluation
    outliers: int | None = None
    p_dice: float | None = None
    p_hd: float | None = None
    decision: str = ""


def track_of(step: str) -> str:
    """The track a Table VI step belongs to: nnU-Net's, or LightEcho's."""
    return NNUNET_STEP if step == NNUNET_STEP else "LightEcho"


def summary_line(row: AblationRow) -> str:
    """One line of a scored row: mean Dice and HD per structure, p-values, decision."""
    means = row.metrics.groupby("structure", sort=False)[["dice", "hd"]].mean()
    dice = "/".join(f"{v:.3f}" for v in means["dice"])
    hd = "/".join(f"{v:.2f}" for v in means["hd"])
    p = "" if row.p_dice is None else f", p Dice {row.p_dice:.3g}, p HD {row.p_hd:.3g}"
    return f"Dice {dice}, HD {hd}{p} -> {row.decision}"


def ablation_table(rows: list[AblationRow], labels: dict[str, int], tracks: dict[str, Track]) -> pd.DataFrame:
    """The incremental table: one line per row, then a `Final` line per track repeating its current best."""
    records = []
    final_rows = [
        ("Final" if name == "LightEcho" else f"Final {name}", track.best_row)
        for name, track in tracks.items()
        if track.best_row is not None
    ]
    for step, row in [(row.step, row) for row in rows] + [(step, rows[i]) for step, i in final_rows]:
        record = {
            "step": step,
            "trainer": row.trainer,
            "params": row.params,
            "epochs": row.epochs,
            "postprocessing": row.postprocessing,
            "frames": None if row.metrics is None else int(row.metrics["case"].nunique()),
        }
        for metric in ("dice", "hd"):
            for structure in labels:
                values = None if row.metrics is None else row.metrics.loc[row.metrics["structure"] == structure, metric]
                record[f"{metric}_{structure}"] = None if values is None else float(values.mean())
        final = step.startswith("Final")  # a summary line: its test is in the row it repeats
        record.update(
            outliers=row.outliers,
            p_dice=None if final else row.p_dice,
            p_hd=None if final else row.p_hd,
            decision="final model" if final else row.decision,
        )
        records.append(record)
    return pd.DataFrame.from_records(records)


def ablation_markdown(table: pd.DataFrame, settings: dict, labels: dict[str, int]) -> str:
    """The table as Markdown with the settings and the decision rule."""
    schedule = (
        "trainer defaults (100 epochs, early stopping for LightEcho)"
        if settings["max_epochs"] is None
        else f"**smoke/test schedule: every variant capped at {settings['max_epochs']} epoch(s) - not a result**"
    )
    header = [
        "Step",
        "Trainer",
        "Params",
        "Epochs",
        "Post-proc.",
        *[f"Dice {s}" for s in labels],
        *[f"HD {s}" for s in labels],
        "Outliers",
        "p Dice",
        "p HD",
        "Decision",
    ]
    lines = [
        f"# Ablation study: {settings['dataset']}, fold {settings['fold']}",
        "",
        f"Schedule: {schedule}. Device: {settings['device']}. Validation cases of the fold, scored against "
        f"`gt_segmentations` (Dice; Hausdorff distance in pixels; anatomical outliers = frames failing a "
        f"plausibility criterion).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for record in table.to_dict("records"):
        cells = [
            record["step"],
            f"`{record['trainer']}`",
            _format(record["params"], "params"),
            _format(record["epochs"], "int"),
            record["postprocessing"],
            *[_format(record[f"dice_{s}"], ".3f") for s in labels],
            *[_format(record[f"hd_{s}"], ".2f") for s in labels],
            _format(record["outliers"], "int"),
            _format(record["p_dice"], ".3g"),
            _format(record["p_hd"], ".3g"),
            record["decision"],
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        f"Decision: each row is compared with the current best of its track (LightEcho, or nnU-Net for "
        f"the nnU-Net rows) by two-sided Wilcoxon signed-rank tests paired by frame and structure (all "
        f"structures pooled). `keep` = Dice or HD significantly better (p < {settings['alpha']}) and neither "
        f"significantly worse; a kept row becomes the current best. The Postprocessing row evaluates the "
        f"current best with connected-component analysis (largest component per structure); once kept, later "
        f"rows are evaluated with it. `Final` repeats the current best at the end.",
        "",
        "Reproduce one row: `lightecho ablation train -d DATASET -f FOLD -tr TRAINER` (= `nnUNetv2_train "
        "DATASET 2d FOLD -tr TRAINER`), then `lightecho evaluate --pred $nnUNet_results/DATASET/"
        "TRAINER__nnUNetPlans__2d/fold_FOLD/validation --ref $nnUNet_preprocessed/DATASET/gt_segmentations`.",
        "",
        "![Ablation](ablation.png)",
        "",
    ]
    return "\n".join(lines)


def plot_ablation(table: pd.DataFrame, labels: dict[str, int], out_png: Path) -> Path:
    """Mean Dice and HD per structure down the rows; kept rows (and references) filled, discarded ones hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = table[table["frames"].notna()].reset_index(drop=True)
    kept = scored["decision"].isin(["keep", "reference", "final model"]).to_numpy()
    ticks = [
        f"{step}: {trainer.replace('nnUNetTrainerLightEcho', 'LE').replace('nnUNetTrainer', 'nnU')}"
        f"{' +CCA' if post == CCA else ''}"
        for step, trainer, post in zip(scored["step"], scored["trainer"], scored["postprocessing"])
    ]
    figure, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.55 * len(scored) + 2), 7), sharex=True)
    for axis, metric, title in ((axes[0], "dice", "Dice"), (axes[1], "hd", "Hausdorff distance (px)")):
        for structure in labels:
            values = scored[f"{metric}_{structure}"].to_numpy(float)
            (line,) = axis.plot(range(len(scored)), values, "-", alpha=0.4)
            axis.scatter(
                [i for i in range(len(scored)) if kept[i]], values[kept], color=line.get_color(), label=structure
            )
            axis.scatter(
                [i for i in range(len(scored)) if not kept[i]],
                values[~kept],
                facecolors="none",
                edgecolors=line.get_color(),
            )
        axis.set_ylabel(title)
        axis.grid(alpha=0.3)
    axes[0].legend(frameon=False, fontsize=8, title="filled: kept / reference", title_fontsize=8)
    axes[1].set_xticks(range(len(scored)), ticks, rotation=60, ha="right", fontsize=7)
    axes[0].set_title(
        "Ablation, mean over validation frames (LE = nnUNetTrainerLightEcho, nnU = nnUNetTrainer)", fontsize=9
    )
    figure.tight_layout()
    figure.savefig(out_png, dpi=120)
    plt.close(figure)
    return out_png


def _format(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "params":
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.0f}K"
    if kind == "int":
        return str(int(value))
    return format(value, kind)
