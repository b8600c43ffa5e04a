"""Evaluate one nnU-Net prediction folder against a reference folder: metrics per case and structure, anatomical
plausibility per frame, and the files `metrics.csv`, `outliers.csv` and `summary.json`."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nnunet_lightweight.core.metadata import find_metadata
from nnunet_lightweight.core.output import OutputLayout, check_output_dir, staged_output
from nnunet_lightweight.evaluation.anatomy import PlausibilityTolerances, check_plausibility, criteria_names
from nnunet_lightweight.evaluation.io import (
    DEFAULT_LABELS,
    Metadata,
    load_evaluation_metadata,
    pair_cases,
    read_pair,
)
from nnunet_lightweight.evaluation.metrics import DISTANCE_METRICS, METRICS, segmentation_metrics
from nnunet_lightweight.evaluation.overlays import save_overlays
from nnunet_lightweight.evaluation.postprocessing import postprocess_segmentation

SUMMARY_METRICS = (*METRICS, *(f"{name}_mm" for name in DISTANCE_METRICS))
# What `evaluate` writes: how an output folder of a version before the marker file is recognised.
EVALUATION_LAYOUT = OutputLayout("summary.json", ("metrics.csv", "outliers.csv", "overlays_worst.png"))
DEFINITIONS = {
    "dice": "2|P∩R| / (|P|+|R|)",
    "contour": "mask pixels with a face neighbour outside the mask",
    "hd": "maximum of the pooled symmetric contour-to-contour distances (pixels; hd_mm in mm)",
    "hd95": "95th percentile of the pooled symmetric contour distances (pixels; hd95_mm in mm)",
    "mad": "mean of the pooled symmetric contour distances (pixels; mad_mm in mm)",
    "empty": "both masks empty: dice 1, distances 0; one empty: dice 0, distances = image diagonal",
    "std": "sample standard deviation (ddof=1)",
    "anatomical_outlier": "a frame failing at least one plausibility criterion (nnunet_lightweight.evaluation.anatomy)",
}


@dataclass
class Evaluation:
    """Result of evaluating a prediction folder: per case and structure metrics, per frame plausibility."""

    metrics: pd.DataFrame
    plausibility: pd.DataFrame
    criteria: list[str]
    settings: dict = field(default_factory=dict)


def evaluate_cases(
    pred_dir: Path,
    ref_dir: Path,
    labels: dict[str, int] = DEFAULT_LABELS,
    postprocess: str = "none",
    morphology: str = "both",
    radius: int = 1,
    metadata: Path | None = None,
    allow_missing: bool = False,
    tolerances: PlausibilityTolerances = PlausibilityTolerances(),
    verbose: bool = False,
) -> Evaluation:
    """Metrics and plausibility of every prediction in `pred_dir` against `ref_dir` (nothing written).

    `postprocess` (`none`, `cca`, `morph`, `cca+morph`) is applied to each prediction in memory before it is
    scored; `metadata` is a `camus_metadata.json` sidecar (found next to the reference folder when not given) that
    adds an image `quality` column.
    """
    pairs = pair_cases(Path(pred_dir), Path(ref_dir), allow_missing)
    metadata = Path(metadata) if metadata else find_metadata(Path(ref_dir))
    sidecar = load_evaluation_metadata(metadata) if metadata else Metadata()
    criteria = criteria_names(labels)
    metric_rows, plausibility_rows = [], []
    for index, (case, pred_path, ref_path) in enumerate(pairs, start=1):
        pred, ref, spacing = read_pair(pred_path, ref_path, labels)
        if postprocess != "none":
            pred = postprocess_segmentation(pred, postprocess, labels, morphology, radius)
        info, quality = sidecar.describe(case)
        identity = {"case": case, "patient": info.patient, "view": info.view, "phase": info.phase, "quality": quality}
        metric_rows += [{**identity, **row} for row in segmentation_metrics(pred, ref, spacing, labels)]
        if criteria and pred.ndim == 2:
            failed = check_plausibility(pred, labels, tolerances)
            names = [name for name in criteria if failed[name]]
            plausibility_rows.append(
                {**identity, "outlier": bool(names), "n_failed": len(names), "failed": ";".join(names), **failed}
            )
        if verbose and (index % 100 == 0 or index == len(pairs)):
            print(f"evaluated {index}/{len(pairs)} cases", file=sys.stderr, flush=True)
    settings = {
        "pred_dir": str(Path(pred_dir).resolve()),
        "ref_dir": str(Path(ref_dir).resolve()),
        "labels": dict(labels),
        "postprocess": postprocess,
        "morphology": morphology if "morph" in postprocess else None,
        "radius": radius if "morph" in postprocess else None,
        "metadata": str(metadata) if metadata else None,
        "tolerances": vars(tolerances),
    }
    plausibility_columns = ["case", "patient", "view", "phase", "quality", "outlier", "n_failed", "failed", *criteria]
    metric_columns = [
        "case",
        "structure",
        *SUMMARY_METRICS,
        "empty_pred",
        "empty_ref",
        "pred_pixels",
        "ref_pixels",
        "patient",
        "view",
        "phase",
        "quality",
    ]
    return Evaluation(
        pd.DataFrame(metric_rows, columns=metric_columns),
        pd.DataFrame(plausibility_rows, columns=plausibility_columns),
        criteria if plausibility_rows else [],
        settings,
    )


def summarize(evaluation: Evaluation) -> dict:
    """Per structure mean/std/median/min/max of every metric, empty-mask counts and the anatomical outliers."""
    metrics, plausibility = evaluation.metrics, evaluation.plausibility
    per_structure = {}
    for structure, rows in metrics.groupby("structure", sort=False):
        per_structure[structure] = {
            name: {
                "mean": _finite(rows[name].mean()),
                "std": _finite(rows[name].std()),
                "median": _finite(rows[name].median()),
                "min": _finite(rows[name].min()),
                "max": _finite(rows[name].max()),
            }
            for name in SUMMARY_METRICS
        }
        per_structure[structure]["empty_pred"] = int(rows["empty_pred"].sum())
        per_structure[structure]["empty_ref"] = int(rows["empty_ref"].sum())
    outliers = plausibility[plausibility["outlier"]] if len(plausibility) else plausibility
    return {
        **evaluation.settings,
        "n_cases": int(metrics["case"].nunique()),
        "definitions": DEFINITIONS,
        "metrics": per_structure,
        "anatomical_outliers": {
            "count": int(len(outliers)),
            "fraction": _finite(len(outliers) / len(plausibility)) if len(plausibility) else None,
            "per_criterion": {name: int(plausibility[name].sum()) for name in evaluation.criteria},
            "cases": {row.case: row.failed.split(";") for row in outliers.itertuples()},
        },
    }


def evaluate_folder(
    pred_dir: Path,
    ref_dir: Path,
    out_dir: Path | None = None,
    labels: dict[str, int] = DEFAULT_LABELS,
    postprocess: str = "none",
    morphology: str = "both",
    radius: int = 1,
    metadata: Path | None = None,
    allow_missing: bool = False,
    images: Path | None = None,
    overwrite: bool = False,
    verbose: bool = False,
) -> pd.DataFrame:
    """Evaluate a prediction folder; with `out_dir`, write metrics.csv, outliers.csv, summary.json (and, given the
    `images` folder, overlays_worst.png). Returns the per case and structure metrics."""
    if out_dir is not None:
        target = check_output_dir(
            out_dir, overwrite, inputs=[pred_dir, ref_dir, metadata, images], layout=EVALUATION_LAYOUT
        )
    evaluation = evaluate_cases(
        pred_dir, ref_dir, labels, postprocess, morphology, radius, metadata, allow_missing, verbose=verbose
    )
    if out_dir is not None:
        with staged_output(target) as staging:
            write_evaluation(evaluation, staging)
            if images is not None:
                worst = evaluation.metrics.groupby("case")["dice"].mean().nsmallest(8).index.tolist()
                save_overlays(
                    images,
                    pred_dir,
                    ref_dir,
                    worst,
                    staging / "overlays_worst.png",
                    labels,
                    postprocess=postprocess,
                    morphology=morphology,
                    radius=radius,
                )
    return evaluation.metrics


def write_evaluation(evaluation: Evaluation, out_dir: Path) -> None:
    """metrics.csv (case × structure), outliers.csv (frame × criterion) and summary.json into `out_dir`."""
    evaluation.metrics.to_csv(out_dir / "metrics.csv", index=False, float_format="%.6g")
    evaluation.plausibility.to_csv(out_dir / "outliers.csv", index=False)
    (out_dir / "summary.json").write_text(json.dumps(summarize(evaluation), indent=2, ensure_ascii=False) + "\n")


def _finite(value: float) -> float | None:
    """JSON-safe float: NaN (e.g. the std of a single case) becomes null."""
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value
