"""The ablation study of the paper (Sec. II-C, Table VI): a resumable runner that trains the variants
(`ablation_variants`) with nnU-Net, evaluates them and writes the incremental table (`ablation_report`).

A run goes down a list of variants. Each trained variant is evaluated on its fold's validation predictions and
compared with the current best of its track (LightEcho, or nnU-Net for the nnU-Net-side ablations) by paired
Wilcoxon signed-rank tests over frames x structures. A variant is kept, and becomes the current best, when its
Dice or Hausdorff distance is significantly better (p < alpha) and neither is significantly worse. The `cca`
item evaluates the current best with connected-component post-processing instead of training anything; once
kept, every later variant of its track is evaluated with it. The first variant of a track is its reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from nnunet_lightweight.core.commands import console_command
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.json_files import read_json, read_json_object
from nnunet_lightweight.core.output import check_not_input, check_writable, follow_umask, write_text_atomically
from nnunet_lightweight.evaluation.compare import wilcoxon_paired
from nnunet_lightweight.evaluation.evaluate import evaluate_cases

# Renamed: run_ablation keeps the resolved name in a local variable `dataset_name`.
from nnunet_lightweight.planning.plan import dataset_name as resolve_dataset_name
from nnunet_lightweight.workflows.ablation_report import (
    AblationRow,
    Track,
    ablation_markdown,
    ablation_table,
    plot_ablation,
    summary_line,
    track_of,
)
from nnunet_lightweight.workflows.ablation_variants import (
    CCA,
    CONFIGURATION,
    PLANS,
    POSTPROCESSING_STEP,
    count_variant_parameters,
    expand_variants,
    preprocessed_folder,
    variant_step,
)

# ----------------------------------------------------------------------------------------------------- variants


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
    command = console_command("lightecho", *arguments)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"\n$ lightecho {' '.join(arguments)}\n")
        handle.flush()
        return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode


# ----------------------------------------------------------------------------------------------------- comparison


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
    preprocessed = preprocessed_folder(dataset_name)
    reference = preprocessed / "gt_segmentations"
    if not reference.is_dir():
        raise InputError(f"reference folder {reference} not found: preprocess the dataset first (lightecho plan)")
    if not nnUNet_results.is_set():
        raise InputError("environment variable nnUNet_results is not set")
    _check_fold(preprocessed, fold)
    if max_epochs is not None and max_epochs < 1:
        raise InputError(f"--max-epochs must be at least 1, got {max_epochs}")
    names = expand_variants(variants)
    dataset_json = read_json_object(preprocessed / "dataset.json", "dataset.json")
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
            track = tracks[track_of(rows[-1].step)]
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
            track = tracks.setdefault(track_of(variant_step(name)), Track())
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
            row.params = count_variant_parameters(
                name, read_json_object(folder.parent / "plans.json", "nnU-Net plans"), dataset_json
            )
            _evaluate(row, folder / "validation", reference, labels, _validation_cases(preprocessed, fold))

        if track.best_row is None:
            row.decision = "reference"
        else:
            row.p_dice, row.p_hd, row.decision = compare_with_best(row.metrics, rows[track.best_row].metrics, alpha)
        if row.decision in ("reference", "keep"):
            track.best_row = len(rows)
            track.postprocess = row.postprocessing
        rows.append(row)
        print(f"{prefix} {row.trainer}{' + CCA' if row.postprocessing == CCA else ''}: {summary_line(row)}", flush=True)
        _write_outputs(out_dir, rows, settings, labels, tracks)
    if failed:
        print(f"{failed} variant(s) failed; rerun the same command to retry them", file=sys.stderr)
    return ablation_table(rows, labels, tracks)


# ---------------------------------------------------------------------------------------------------------- table


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


def _check_fold(preprocessed: Path, fold: int) -> None:
    splits = preprocessed / "splits_final.json"
    n_folds = len(read_json(splits, "nnU-Net splits")) if splits.is_file() else 5
    if not 0 <= fold < n_folds:
        raise InputError(f"fold {fold} does not exist: {n_folds} folds ({splits if splits.is_file() else 'default'})")


def _validation_cases(preprocessed: Path, fold: int) -> set[str]:
    """The fold's validation cases from splits_final.json (nnU-Net writes it at the first training)."""
    splits = preprocessed / "splits_final.json"
    return set(read_json(splits, "nnU-Net splits")[fold]["val"]) if splits.is_file() else set()


def _structures(dataset_json: dict, path: Path) -> dict[str, int]:
    labels = {name: value for name, value in dataset_json["labels"].items() if name not in ("background", "ignore")}
    if not all(isinstance(value, int) for value in labels.values()):
        raise InputError(f"{path}: the ablation supports plain integer labels only, got {dataset_json['labels']}")
    return labels


def _prepare_output(out_dir: Path, settings: dict, overwrite: bool) -> None:
    """Create OUT, or reuse it for the same dataset and fold (a resumed run); a different study needs --overwrite."""
    settings_file = out_dir / "ablation.json"
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path {out_dir} exists and is not a folder")
    if settings_file.is_file() and not overwrite:
        previous = read_json_object(settings_file, "ablation settings")
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
