"""The ablation study of the paper (Sec. II-C, Table VI): its trainer variants, the incremental ladder, a resumable
runner that trains and evaluates them with nnU-Net, and the incremental table.

A run goes down a list of variants. Each trained variant is evaluated on its fold's validation predictions and
compared with the current best of its track (LightEcho, or nnU-Net for the nnU-Net-side ablations) by paired
Wilcoxon signed-rank tests over frames x structures. A variant is kept, and becomes the current best, when its
Dice or Hausdorff distance is significantly better (p < alpha) and neither is significantly worse. The `cca`
item evaluates the current best with connected-component post-processing instead of training anything; once
kept, every later variant of its track is evaluated with it. The first variant of a track is its reference.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.output import check_not_input, check_writable, follow_umask, write_text_atomically
from nnunet_lightweight.evaluation.compare import wilcoxon_paired
from nnunet_lightweight.evaluation.evaluate import evaluate_cases
from nnunet_lightweight.network import count_parameters
from nnunet_lightweight.planning.configuration import trainer_architecture

# Renamed: run_ablation keeps the resolved name in a local variable `dataset_name`.
from nnunet_lightweight.planning.plan import dataset_name as resolve_dataset_name
from nnunet_lightweight.training import discover_trainers
from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho

CONFIGURATION = "2d"
PLANS = "nnUNetPlans"
CCA = "cca"
FINAL_TRAINER = "nnUNetTrainerLightEcho"
NNUNET_BASELINE = "nnUNetTrainer_100epochs"
NNUNET_STEP = "nnU-Net"
POSTPROCESSING_STEP = "Postprocessing"
# Table VI's rows in order, then what the paper reports outside it; variants/<kind>/ maps onto them.
STEPS = (
    "Baseline",
    "Normalization",
    "Activation",
    POSTPROCESSING_STEP,
    "Data augmentation",
    "Loss function",
    "Deep supervision",
    "LR schedule",
    "Size",
    "Architecture",
    NNUNET_STEP,
)
KIND_STEPS = {
    "baseline": "Baseline",
    "normalization": "Normalization",
    "activation": "Activation",
    "augmentation": "Data augmentation",
    "loss": "Loss function",
    "deep_supervision": "Deep supervision",
    "lr_schedule": "LR schedule",
    "network_size": "Size",
    "network_architecture": "Architecture",
    "nnunet_default": NNUNET_STEP,
}
# Table VI: each step adds the component the paper kept; Size and Architecture are alternatives to the final model.
LADDER = (
    "nnUNetTrainerLightEcho_UNet1Baseline",
    "nnUNetTrainerLightEcho_UNet1_BN",
    "nnUNetTrainerLightEcho_UNet1_BN_Mish",
    CCA,
    "nnUNetTrainerLightEcho_UNet1_BN_Mish_Affine",
    "nnUNetTrainerLightEcho_UNet1_BN_Mish_Affine_DiceCE",
    FINAL_TRAINER,
    "nnUNetTrainerLightEcho_UNet0",
    "nnUNetTrainerLightEcho_UNet2",
    "nnUNetTrainerLightEcho_UNet3",
    "nnUNetTrainerLightEcho_Residual",
    "nnUNetTrainerLightEcho_TranspConv",
)
# Sec. III-B: nnU-Net (100 epochs, as in the paper) and what it loses without augmentation / deep supervision.
NNUNET_ABLATIONS = (
    NNUNET_BASELINE,
    "nnUNetTrainer_100epochs_NoDA",
    "nnUNetTrainer_100epochs_NoDeepSupervision",
    "nnUNetTrainer_100epochs_NoDA_NoDeepSupervision",
)
VARIANTS_PACKAGE = "nnunet_lightweight.training.variants"


# ----------------------------------------------------------------------------------------------------- variants


@lru_cache(maxsize=None)
def _trainers() -> dict[str, type]:
    from nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs import nnUNetTrainer_100epochs

    found = {name: cls for name, cls in discover_trainers().items() if cls.__module__.startswith(VARIANTS_PACKAGE)}
    return {**found, FINAL_TRAINER: nnUNetTrainerLightEcho, NNUNET_BASELINE: nnUNetTrainer_100epochs}


def ablation_variants() -> dict[str, type]:
    """Every trainer of the study by name, in table order: the variants package, LightEcho and nnU-Net's baseline."""
    order = {name: index for index, name in enumerate(LADDER + NNUNET_ABLATIONS)}
    ranked = sorted(_trainers(), key=lambda name: (STEPS.index(variant_step(name)), order.get(name, len(order)), name))
    return {name: _trainers()[name] for name in ranked}


def variant_step(name: str) -> str:
    """The Table VI step a variant (or the `cca` item) belongs to."""
    if name == CCA:
        return POSTPROCESSING_STEP
    if name == FINAL_TRAINER:
        return "Deep supervision"
    if name == NNUNET_BASELINE:
        return NNUNET_STEP
    module = _trainers()[name].__module__
    return KIND_STEPS[module[len(VARIANTS_PACKAGE) + 1 :].split(".")[0]]


def variant_groups() -> dict[str, list[str]]:
    """Named lists for `--variants`: the Table VI ladder, the nnU-Net ablations, and everything in table order."""
    everything = list(ablation_variants())
    cca_position = max(i for i, name in enumerate(everything) if variant_step(name) == "Activation") + 1
    return {
        "ladder": list(LADDER),
        "nnunet": list(NNUNET_ABLATIONS),
        "all": everything[:cca_position] + [CCA] + everything[cca_position:],
    }


def expand_variants(items: list[str] | None) -> list[str]:
    """Trainer names, `cca` and group names (ladder, nnunet, all) expanded into the list of rows to run."""
    groups = variant_groups()
    expanded: list[str] = []
    for item in items or ["ladder"]:
        expanded += groups.get(item, [item])
    unknown = [name for name in expanded if name != CCA and name not in ablation_variants()]
    if unknown:
        raise InputError(
            f"unknown ablation variant(s): {', '.join(unknown)} (see `lightecho ablation --list`; "
            f"groups: {', '.join(groups)})"
        )
    if expanded and expanded[0] == CCA:
        raise InputError("`cca` post-processes the current best model, so a trained variant must come before it")
    return expanded


def count_variant_parameters(trainer: str, plans: dict | None = None, dataset_json: dict | None = None) -> int:
    """Trainable parameters of a variant's network for a dataset's plans and dataset.json.

    Without them: 1 input channel and 4 classes (CAMUS); nnU-Net's own trainers then get nnU-Net's default 2d
    architecture for 256x256 frames (the official CAMUS size), recorded in plans/nnunet_default_2d_256.json.
    """
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    if trainer not in _trainers():
        raise InputError(f"unknown ablation variant {trainer!r} (see `lightecho ablation --list`)")
    cls = _trainers()[trainer]
    if plans is not None and not issubclass(cls, nnUNetTrainerLightEcho):
        architecture = plans["configurations"][CONFIGURATION]["architecture"]
    else:
        architecture = trainer_architecture(cls, 256)
    channels, classes = (1, 4) if dataset_json is None else _channels_and_classes(dataset_json)
    with torch.device("meta"):  # counting needs no memory and no weight initialisation
        network = get_network_from_plans(
            architecture["network_class_name"],
            architecture["arch_kwargs"],
            architecture["_kw_requires_import"],
            channels,
            classes,
            allow_init=False,
        )
    return count_parameters(network)


def list_variants(dataset: str | int | None = None) -> list[tuple[str, int]]:
    """(trainer name, parameter count) of every variant; for a dataset's plans and classes when one is given."""
    plans = dataset_json = None
    if dataset is not None:
        preprocessed = _preprocessed_folder(dataset)
        plans = _load_json(preprocessed / f"{PLANS}.json")
        dataset_json = _load_json(preprocessed / "dataset.json")
    return [(name, count_variant_parameters(name, plans, dataset_json)) for name in ablation_variants()]


# ------------------------------------------------------------------------------------------------------- training


def train_variant(
    dataset: str | int,
    fold: int,
    trainer: str,
    device: str = "cuda",
    max_epochs: int | None = None,
    continue_training: bool = False,
    validation_only: bool = False,
) -> Path:
    """Train one variant and predict its fold's validation cases, as `nnUNetv2_train DATASET 2d FOLD -tr TRAINER
    [--c | --val]` does; `max_epochs` shortens the schedule (for smoke tests). Returns the fold's output folder."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

    nnunet_trainer = get_trainer_from_args(
        str(dataset), CONFIGURATION, fold, trainer, PLANS, continue_training, device=torch.device(device)
    )
    if max_epochs is not None:
        nnunet_trainer.num_epochs = max_epochs
    maybe_load_checkpoint(nnunet_trainer, continue_training, validation_only)
    if not validation_only:
        nnunet_trainer.run_training()
    nnunet_trainer.perform_actual_validation(False)
    return Path(nnunet_trainer.output_folder)


def fold_folder(dataset_name: str, trainer: str, fold: int) -> Path:
    """`$nnUNet_results/<dataset>/<trainer>__nnUNetPlans__2d/fold_<fold>`."""
    from nnunetv2.paths import nnUNet_results

    return Path(nnUNet_results.require(), dataset_name, f"{trainer}__{PLANS}__{CONFIGURATION}", f"fold_{fold}")


def training_state(folder: Path) -> str:
    """`finished` (final checkpoint and validation), `trained` (no validation yet), `partial` (a checkpoint to
    resume from) or `new`."""
    if (folder / "checkpoint_final.pth").is_file():
        return "finished" if (folder / "validation" / "summary.json").is_file() else "trained"
    if (folder / "checkpoint_latest.pth").is_file() or (folder / "checkpoint_best.pth").is_file():
        return "partial"
    return "new"


def trained_epochs(folder: Path) -> int:
    """Epochs a finished run trained (from its final checkpoint)."""
    import torch

    checkpoint = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=False, mmap=True)
    return int(checkpoint["current_epoch"])


def _train_in_subprocess(
    dataset_name: str, fold: int, trainer: str, state: str, device: str, max_epochs: int | None, log: Path
) -> int:
    """Run `lightecho ablation train` for one variant in a fresh interpreter (isolated memory, GPU and workers)."""
    arguments = ["ablation", "train", "-d", dataset_name, "-f", str(fold), "-tr", trainer, "--device", device]
    if max_epochs is not None:
        arguments += ["--max-epochs", str(max_epochs)]
    arguments += {"partial": ["--continue"], "trained": ["--validation-only"]}.get(state, [])
    # The interpreter running this code, so the console script need not be on PATH.
    command = [
        sys.executable,
        "-c",
        "import sys; from nnunet_lightweight.cli import main; sys.exit(main())",
        *arguments,
    ]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"\n$ lightecho {' '.join(arguments)}\n")
        handle.flush()
        return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode


# ----------------------------------------------------------------------------------------------------- comparison


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


def compare_with_best(candidate: pd.DataFrame, best: pd.DataFrame, alpha: float = 0.05) -> tuple[float, float, str]:
    """(p Dice, p HD, keep/discard) of a candidate against the current best, paired by case and structure.

    Kept when Dice or HD is significantly better (two-sided Wilcoxon p < alpha, direction from the mean paired
    difference) and neither is significantly worse.
    """

    paired = candidate.merge(best, on=["case", "structure"], suffixes=("", "_best"))
    if paired.empty:
        raise InputError("the candidate and the current best share no evaluated case")
    _, p_dice = wilcoxon_paired(paired["dice"], paired["dice_best"])
    _, p_hd = wilcoxon_paired(paired["hd"], paired["hd_best"])
    dice_better = paired["dice"].mean() > paired["dice_best"].mean()
    hd_better = paired["hd"].mean() < paired["hd_best"].mean()
    better = (p_dice < alpha and dice_better) or (p_hd < alpha and hd_better)
    worse = (p_dice < alpha and not dice_better) or (p_hd < alpha and not hd_better)
    return p_dice, p_hd, "keep" if better and not worse else "discard"


def _evaluate(
    row: AblationRow, predictions: Path, reference: Path, labels: dict[str, int], validation_cases: set[str]
) -> None:

    # gt_segmentations holds every case; the fold's validation folder must hold a prediction for each of its cases.
    evaluation = evaluate_cases(predictions, reference, labels, postprocess=row.postprocessing, allow_missing=True)
    missing = validation_cases - set(evaluation.metrics["case"])
    if missing:
        raise InputError(
            f"{predictions} lacks the predictions of {len(missing)} validation case(s) of the fold, "
            f"e.g. {sorted(missing)[0]}"
        )
    row.metrics = evaluation.metrics[["case", "structure", "dice", "hd"]]
    row.outliers = int(evaluation.plausibility["outlier"].sum()) if evaluation.criteria else None


# --------------------------------------------------------------------------------------------------------- runner


def run_ablation(
    dataset: str | int,
    fold: int,
    out_dir: Path,
    variants: list[str] | None = None,
    device: str = "cuda",
    max_epochs: int | None = None,
    alpha: float = 0.05,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Train (or resume, or skip when finished) and evaluate each variant on one fold, and write the incremental
    table OUT/ablation.md, OUT/ablation.csv, OUT/ablation.png and the per-case metrics OUT/metrics.csv.

    The table is rewritten after every row, so a long run shows its progress; a rerun resumes where it stopped.
    `max_epochs` caps every variant's schedule: a smoke/test setting, whose numbers are no result.
    """
    from nnunetv2.paths import nnUNet_results

    dataset_name = resolve_dataset_name(dataset)
    preprocessed = _preprocessed_folder(dataset_name)
    reference = preprocessed / "gt_segmentations"
    if not reference.is_dir():
        raise InputError(f"reference folder {reference} not found: preprocess the dataset first (lightecho plan)")
    if not nnUNet_results.is_set():
        raise InputError("environment variable nnUNet_results is not set")
    _check_fold(preprocessed, fold)
    if max_epochs is not None and max_epochs < 1:
        raise InputError(f"--max-epochs must be at least 1, got {max_epochs}")
    names = expand_variants(variants)
    dataset_json = _load_json(preprocessed / "dataset.json")
    labels = _structures(dataset_json, preprocessed / "dataset.json")
    out_dir = Path(out_dir)
    settings = {
        "dataset": dataset_name,
        "fold": fold,
        "configuration": CONFIGURATION,
        "plans": PLANS,
        "device": device,
        "max_epochs": max_epochs,
        "alpha": alpha,
        "variants": names,
    }
    check_not_input(out_dir, [preprocessed, Path(nnUNet_results.get()) / dataset_name])
    _prepare_output(out_dir, settings, overwrite)

    rows: list[AblationRow] = []
    tracks: dict[str, Track] = {}
    failed = 0
    for index, name in enumerate(names, start=1):
        prefix = f"[ablation {index}/{len(names)}]"
        if name == CCA:
            track = tracks[_track(rows[-1].step)]
            if track.best_row is None:
                rows.append(
                    AblationRow(
                        POSTPROCESSING_STEP,
                        rows[-1].trainer,
                        postprocessing=CCA,
                        decision="skipped (no trained model to post-process)",
                    )
                )
                continue
            best = rows[track.best_row]
            row = AblationRow(
                POSTPROCESSING_STEP, best.trainer, postprocessing=CCA, params=best.params, epochs=best.epochs
            )
            print(f"{prefix} {best.trainer}: evaluating with connected-component analysis", flush=True)
            _evaluate(
                row,
                fold_folder(dataset_name, best.trainer, fold) / "validation",
                reference,
                labels,
                _validation_cases(preprocessed, fold),
            )
        else:
            track = tracks.setdefault(_track(variant_step(name)), Track())
            row = AblationRow(variant_step(name), name, postprocessing=track.postprocess)
            folder = fold_folder(dataset_name, name, fold)
            state = training_state(folder)
            if state != "finished":
                log = out_dir / "logs" / f"{name}__fold_{fold}.log"
                action = {"new": "training", "partial": "resuming", "trained": "validating"}[state]
                print(f"{prefix} {name}: {action} (log: {log})", flush=True)
                returncode = _train_in_subprocess(dataset_name, fold, name, state, device, max_epochs, log)
                if returncode != 0 or training_state(folder) != "finished":
                    row.decision = f"failed (exit code {returncode}, see {log})"
                    print(f"{prefix} {name}: FAILED, see {log}", flush=True)
                    rows.append(row)
                    failed += 1
                    _write_outputs(out_dir, rows, settings, labels, tracks)
                    continue
            else:
                print(f"{prefix} {name}: finished earlier, evaluating", flush=True)
            row.epochs = trained_epochs(folder)
            row.params = count_variant_parameters(name, _load_json(folder.parent / "plans.json"), dataset_json)
            _evaluate(row, folder / "validation", reference, labels, _validation_cases(preprocessed, fold))

        if track.best_row is None:
            row.decision = "reference"
        else:
            row.p_dice, row.p_hd, row.decision = compare_with_best(row.metrics, rows[track.best_row].metrics, alpha)
        if row.decision in ("reference", "keep"):
            track.best_row = len(rows)
            track.postprocess = row.postprocessing
        rows.append(row)
        print(
            f"{prefix} {row.trainer}{' + CCA' if row.postprocessing == CCA else ''}: {_summary_line(row)}", flush=True
        )
        _write_outputs(out_dir, rows, settings, labels, tracks)
    if failed:
        print(f"{failed} variant(s) failed; rerun the same command to retry them", file=sys.stderr)
    return ablation_table(rows, labels, tracks)


def _track(step: str) -> str:
    return NNUNET_STEP if step == NNUNET_STEP else "LightEcho"


def _summary_line(row: AblationRow) -> str:
    means = row.metrics.groupby("structure", sort=False)[["dice", "hd"]].mean()
    dice = "/".join(f"{v:.3f}" for v in means["dice"])
    hd = "/".join(f"{v:.2f}" for v in means["hd"])
    p = "" if row.p_dice is None else f", p Dice {row.p_dice:.3g}, p HD {row.p_hd:.3g}"
    return f"Dice {dice}, HD {hd}{p} -> {row.decision}"


# ---------------------------------------------------------------------------------------------------------- table


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


def _write_outputs(
    out_dir: Path, rows: list[AblationRow], settings: dict, labels: dict[str, int], tracks: dict[str, Track]
) -> None:
    table = ablation_table(rows, labels, tracks)
    scored = [row for row in rows if row.metrics is not None]
    metrics = (
        pd.concat(
            [
                row.metrics.assign(row=i, step=row.step, trainer=row.trainer, postprocessing=row.postprocessing)
                for i, row in enumerate(rows)
                if row.metrics is not None
            ],
            ignore_index=True,
        )
        if scored
        else pd.DataFrame()
    )
    write_text_atomically(out_dir / "ablation.csv", table.to_csv(index=False, float_format="%.6g"))
    write_text_atomically(out_dir / "metrics.csv", metrics.to_csv(index=False, float_format="%.6g"))
    write_text_atomically(out_dir / "ablation.md", ablation_markdown(table, settings, labels))
    if scored:
        with tempfile.NamedTemporaryFile(dir=out_dir, suffix=".png", delete=False) as handle:
            temporary = Path(handle.name)
        plot_ablation(table, labels, temporary)
        follow_umask(temporary)
        os.replace(temporary, out_dir / "ablation.png")


# ---------------------------------------------------------------------------------------------------------- input


def _preprocessed_folder(dataset: str | int) -> Path:
    from nnunetv2.paths import nnUNet_preprocessed

    if not nnUNet_preprocessed.is_set():
        raise InputError("environment variable nnUNet_preprocessed is not set")
    folder = Path(nnUNet_preprocessed.get()) / resolve_dataset_name(dataset)
    if not (folder / f"{PLANS}.json").is_file():
        raise InputError(
            f"{folder / f'{PLANS}.json'} not found: plan and preprocess the dataset first (lightecho plan -d {dataset})"
        )
    return folder


def _check_fold(preprocessed: Path, fold: int) -> None:
    splits = preprocessed / "splits_final.json"
    n_folds = len(_load_json(splits)) if splits.is_file() else 5
    if not 0 <= fold < n_folds:
        raise InputError(f"fold {fold} does not exist: {n_folds} folds ({splits if splits.is_file() else 'default'})")


def _validation_cases(preprocessed: Path, fold: int) -> set[str]:
    """The fold's validation cases from splits_final.json (nnU-Net writes it at the first training)."""
    splits = preprocessed / "splits_final.json"
    return set(_load_json(splits)[fold]["val"]) if splits.is_file() else set()


def _structures(dataset_json: dict, path: Path) -> dict[str, int]:
    labels = {name: value for name, value in dataset_json["labels"].items() if name not in ("background", "ignore")}
    if not all(isinstance(value, int) for value in labels.values()):
        raise InputError(f"{path}: the ablation supports plain integer labels only, got {dataset_json['labels']}")
    return labels


def _channels_and_classes(dataset_json: dict) -> tuple[int, int]:
    channels = dataset_json.get("channel_names", dataset_json.get("modality"))
    return len(channels), len([name for name in dataset_json["labels"] if name != "ignore"])


def _load_json(path: Path) -> dict | list:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {path}: {error}") from error


def _prepare_output(out_dir: Path, settings: dict, overwrite: bool) -> None:
    """Create OUT, or reuse it for the same dataset and fold (a resumed run); a different study needs --overwrite."""
    settings_file = out_dir / "ablation.json"
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path {out_dir} exists and is not a folder")
    if settings_file.is_file() and not overwrite:
        previous = _load_json(settings_file)
        if (previous.get("dataset"), previous.get("fold")) != (settings["dataset"], settings["fold"]):
            raise FileExistsError(
                f"{out_dir} holds the ablation of {previous.get('dataset')} fold "
                f"{previous.get('fold')} (pass --overwrite to replace its table)"
            )
    elif out_dir.is_dir() and any(out_dir.iterdir()) and not settings_file.is_file():
        # --overwrite replaces only tables this command wrote, never a folder of other files
        raise FileExistsError(
            f"output folder {out_dir} exists, is not empty and holds no ablation "
            f"({settings_file.name}): choose another folder"
        )
    check_writable(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(settings_file, json.dumps(settings, indent=2) + "\n")


def _format(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "params":
        return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.0f}K"
    if kind == "int":
        return str(int(value))
    return format(value, kind)
