"""End-to-end timing: `nnUNetv2_predict` (with and without TTA) against `lightecho predict` on the same folder.

Every command runs as its own process, so each pays its own start-up (imports, model loading) as a user would;
the masks of `--disable_tta` and of `lightecho predict --no-cca` are compared per structure (Dice).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from nnunet_lightweight.core.commands import console_command
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.evaluation.io import list_cases, read_segmentation
from nnunet_lightweight.evaluation.metrics import dice_score


def nnunet_predict_command(
    model_folder: Path, input_folder: Path, output_folder: Path, folds: Sequence[str], device: str, disable_tta: bool
) -> tuple[list[str], dict[str, str]]:
    """The nnUNetv2_predict command line (and nnUNet_results) for a `<results>/<dataset>/<trainer>__<plans>__<config>`
    model folder."""
    parts = model_folder.name.split("__")
    if len(parts) != 3:
        raise InputError(f"{model_folder}: expected a <trainer>__<plans>__<configuration> results folder")
    trainer, plans, configuration = parts
    command = console_command(
        "nnUNetv2_predict",
        "-i",
        str(input_folder),
        "-o",
        str(output_folder),
        "-d",
        model_folder.parent.name,
        "-tr",
        trainer,
        "-p",
        plans,
        "-c",
        configuration,
        "-f",
        *folds,
        "-device",
        device,
    )
    if disable_tta:
        command.append("--disable_tta")
    return command, {"nnUNet_results": str(model_folder.parent.parent)}


def lightecho_predict_command(
    model_folder: Path,
    input_folder: Path,
    output_folder: Path,
    folds: Sequence[str],
    device: str,
    cca: bool,
    extra: Sequence[str] = (),
) -> list[str]:
    """The `lightecho predict` command line, in this interpreter."""
    return console_command(
        "lightecho",
        "predict",
        "-m",
        str(model_folder),
        "-i",
        str(input_folder),
        "-o",
        str(output_folder),
        "-f",
        *folds,
        "--device",
        device,
        "--cca" if cca else "--no-cca",
        *extra,
    )


def mask_agreement(folder_a: Path, folder_b: Path, labels: Sequence[int], min_pixels: int = 1) -> dict:
    """Per-structure Dice between the same-named masks of two folders, over the cases where the structure has at
    least `min_pixels` pixels in either folder."""

    cases_a, cases_b = list_cases(folder_a), list_cases(folder_b)
    if set(cases_a) != set(cases_b):
        raise AssertionError(
            f"{folder_a} and {folder_b} hold different cases: {sorted(set(cases_a) ^ set(cases_b))[:5]}"
        )
    dice: dict[int, list[tuple[float, str, int, int]]] = {label: [] for label in labels}
    differing = 0
    for case in sorted(cases_a):
        a, _ = read_segmentation(cases_a[case])
        b, _ = read_segmentation(cases_b[case])
        if a.shape != b.shape:
            raise AssertionError(f"case {case}: shapes {a.shape} and {b.shape} differ")
        differing += int((a != b).sum())
        for label in labels:
            size_a, size_b = int((a == label).sum()), int((b == label).sum())
            if max(size_a, size_b) >= min_pixels:
                dice[label].append((dice_score(a == label, b == label), case, size_a, size_b))
    worst = {str(k): min(v) for k, v in dice.items() if v}
    return {
        "cases": len(cases_a),
        "differing_pixels": differing,
        "min_pixels": min_pixels,
        "min_dice": {str(k): min(v)[0] if v else None for k, v in dice.items()},
        "mean_dice": {str(k): float(np.mean([d for d, *_ in v])) if v else None for k, v in dice.items()},
        # Where the lowest Dice is, and the structure's size in pixels in each folder: a low Dice on a
        # structure of a few pixels is a different matter from one on a whole ventricle.
        "worst_case": {k: {"case": case, "pixels_a": n_a, "pixels_b": n_b} for k, (_, case, n_a, n_b) in worst.items()},
    }


def _timed(name: str, command: list[str], env_extra: dict[str, str], log: Callable[[str], None] | None) -> float:
    env = {**os.environ, **env_extra}
    if log:
        log(f"[{name}] {shlex.join(command)}")
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {completed.returncode}):\n{completed.stdout[-3000:]}")
    if log:
        log(f"[{name}] {seconds:.2f} s")
    return seconds


def benchmark_end_to_end(
    model_folder: str | Path,
    input_folder: str | Path,
    work_folder: str | Path,
    folds: Sequence[str] = ("0",),
    device: str = "cpu",
    include_tta: bool = True,
    include_cca: bool = True,
    lightecho_options: Sequence[str] = (),
    variants: dict[str, Sequence[str]] | None = None,
    keep_outputs: bool = False,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Time nnUNetv2_predict (default, --disable_tta) and lightecho predict (--no-cca, --cca) on `input_folder`;
    `include_tta` / `include_cca` switch off the nnUNetv2_predict default run / the lightecho predict --cca run.
    `variants` adds `lightecho predict --no-cca` runs with other options, by name (e.g. {"bf16": ["--precision",
    "bf16"]}), so that they are timed against the same nnU-Net runs.

    Writes `work_folder/end_to_end.json` and returns it: seconds and ms per frame of each command, speedups of
    each lightecho predict --no-cca run over each nnU-Net run, and the Dice agreement of its masks with
    --disable_tta.
    """
    model_folder, input_folder, work_folder = Path(model_folder), Path(input_folder), Path(work_folder)
    if not input_folder.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_folder}")
    # Everything in the work folder is this run's (and, without keep_outputs, removed again): it must be new.
    if work_folder.exists() and (not work_folder.is_dir() or any(work_folder.iterdir())):
        raise InputError(f"work folder {work_folder} exists and is not empty: give a new one")
    dataset_json = json.loads((model_folder / "dataset.json").read_text())
    frames = len([p for p in input_folder.iterdir() if p.name.endswith("_0000" + dataset_json["file_ending"])])
    if frames == 0:
        raise InputError(f"no <case>_0000{dataset_json['file_ending']} images in {input_folder}")
    work_folder.mkdir(parents=True, exist_ok=True)
    folds = [str(f) for f in folds]
    runs: dict[str, tuple[list[str], dict[str, str]]] = {}
    if include_tta:
        runs["nnUNetv2_predict"] = nnunet_predict_command(
            model_folder, input_folder, work_folder / "nnunet_tta", folds, device, False
        )
    runs["nnUNetv2_predict --disable_tta"] = nnunet_predict_command(
        model_folder, input_folder, work_folder / "nnunet_no_tta", folds, device, True
    )
    for cca in (False, True) if include_cca else (False,):
        output = work_folder / ("lightecho_cca" if cca else "lightecho_no_cca")
        runs[f"lightecho predict {'--cca' if cca else '--no-cca'}"] = (
            lightecho_predict_command(model_folder, input_folder, output, folds, device, cca, list(lightecho_options)),
            {},
        )
    compared = {"lightecho predict --no-cca": work_folder / "lightecho_no_cca"}
    for name, options in (variants or {}).items():
        output = work_folder / f"lightecho_no_cca_{name}"
        compared[f"lightecho predict --no-cca ({name})"] = output
        runs[f"lightecho predict --no-cca ({name})"] = (
            lightecho_predict_command(
                model_folder, input_folder, output, folds, device, False, [*lightecho_options, *options]
            ),
            {},
        )
    seconds = {name: _timed(name, command, env, log) for name, (command, env) in runs.items()}
    labels = [int(v) for k, v in dataset_json["labels"].items() if k != "background" and isinstance(v, int)]
    baselines = {k: v for k, v in seconds.items() if not k.startswith("lightecho")}

    def compare(name: str, output: Path) -> dict:
        return {
            "speedup_vs": {k: round(v / seconds[name], 2) for k, v in baselines.items()},
            "inside_process": json.loads((output / "prediction_summary.json").read_text())["timing"],
            "agreement_with_disable_tta": mask_agreement(work_folder / "nnunet_no_tta", output, labels),
        }

    comparisons = {name: compare(name, output) for name, output in compared.items()}
    main = comparisons["lightecho predict --no-cca"]
    result = {
        "model_folder": str(model_folder),
        "input_folder": str(input_folder),
        "frames": frames,
        "device": device,
        "folds": folds,
        "commands": {name: shlex.join(command) for name, (command, _) in runs.items()},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "ms_per_frame": {k: round(1000 * v / frames, 2) for k, v in seconds.items()},
        "speedup_vs": main["speedup_vs"],
        "lightecho_inside_process": main["inside_process"],
        "agreement_no_tta_vs_lightecho": main["agreement_with_disable_tta"],
        "variants": {name: c for name, c in comparisons.items() if name != "lightecho predict --no-cca"},
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    (work_folder / "end_to_end.json").write_text(json.dumps(result, indent=2) + "\n")
    if not keep_outputs:
        for command, _ in runs.values():
            shutil.rmtree(command[command.index("-o") + 1], ignore_errors=True)
    return result
