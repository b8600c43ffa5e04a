"""Training-speed benchmark: real nnU-Net training steps of LightEcho and of nnU-Net's default network, side by side.

Each model is a real trainer instance (its own network, deep-supervision loss, Adam or SGD, gradient clipping)
built on synthetic plans for square frames, and every timed step is that trainer's own `train_step` on a random
batch: forward, loss, backward, optimizer step. Both networks run the same execution paths of
`cpu_training.FastCPUTraining` (nnU-Net's plain fp32 path, channels_last, bf16 autocast where the CPU has native
bf16, optionally torch.compile), and within each path the two trainers' steps alternate, so that a machine whose
speed drifts does not bias their ratio.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_lightweight.core.cpu_features import cpu_flags, cpu_has_bf16, cpu_model
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.nnunet_paths import environment_variable
from nnunet_lightweight.network import count_parameters
from nnunet_lightweight.planning.configuration import trainer_architecture
from nnunet_lightweight.training.cpu_training import FastCPUTraining
from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho


@dataclass(frozen=True)
class TrainingPath:
    """How a training step runs on the CPU: precision, memory layout, torch.compile, fused Mish (LightEcho only)."""

    precision: str
    channels_last: bool
    compile: bool = False
    fused_mish: bool = True

    @property
    def name(self) -> str:
        return ("compile-" if self.compile else "") + self.precision + ("-channels_last" if self.channels_last else "")


PLAIN_PATH = TrainingPath("fp32", False, fused_mish=False)  # what nnU-Net itself does on a CPU
TRAINING_PATHS = (PLAIN_PATH, TrainingPath("fp32", True), TrainingPath("bf16", True))
COMPILE_TRAINING_PATHS = (TrainingPath("fp32", True, True), TrainingPath("bf16", True, True))


def _synthetic_plans(architecture: dict, size: int, batch_size: int) -> dict:
    """Plans with one 2d configuration of `architecture` on `size` x `size` frames (z-scored, 1x1 spacing)."""
    return {
        "dataset_name": "Dataset999_TrainingBenchmark",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [999.0, 1.0, 1.0],
        "original_median_shape_after_transp": [1, size, size],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "label_manager": "LabelManager",
        "continue_training": False,
        "foreground_intensity_properties_per_channel": {
            "0": {
                "mean": 0.0,
                "std": 1.0,
                "min": -5.0,
                "max": 5.0,
                "median": 0.0,
                "percentile_00_5": -3.0,
                "percentile_99_5": 3.0,
            }
        },
        "configurations": {
            "2d": {
                "data_identifier": "nnUNetPlans_2d",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": batch_size,
                "patch_size": [size, size],
                "median_image_size_in_voxels": [size, size],
                "spacing": [1.0, 1.0],
                "normalization_schemes": ["ZScoreNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {
                    "is_seg": False,
                    "order": 1,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "architecture": architecture,
                "batch_dice": True,
            }
        },
    }


_DATASET_JSON = {
    "channel_names": {"0": "echo"},
    "labels": {"background": 0, "LV": 1, "MYO": 2, "LA": 3},
    "numTraining": 1,
    "file_ending": ".nii.gz",
}


def build_benchmark_trainer(trainer_class: type, size: int, batch_size: int, path: TrainingPath, work_dir: str):
    """An initialized trainer of `trainer_class` (made a FastCPUTraining if it is not one) running `path` on CPU.

    LightEcho trainers bring their own architecture; stock nnU-Net trainers get nnU-Net's default 2d plan for
    224x224 frames. The trainer's log goes to `work_dir`.
    """
    if not issubclass(trainer_class, FastCPUTraining):
        trainer_class = type(trainer_class.__name__, (FastCPUTraining, trainer_class), {})
    # Stock trainers get nnU-Net's plan for the 224x224 CAMUS copy, whatever --size is timed.
    plans = _synthetic_plans(trainer_architecture(trainer_class, 224), size, batch_size)
    with environment_variable("nnUNet_results", work_dir):  # nnU-Net's trainer writes its log under nnUNet_results
        trainer = trainer_class(plans, "2d", 0, _DATASET_JSON, torch.device("cpu"))
    if trainer.configuration_manager.batch_size != batch_size:
        # LightEcho trainers write their own batch size into the plans; the benchmark compares equal batches.
        trainer.configuration_manager.configuration["batch_size"] = batch_size
    trainer.cpu_precision, trainer.cpu_channels_last = path.precision, path.channels_last
    trainer.cpu_compile, trainer.cpu_fused_mish = path.compile, path.fused_mish
    # initialize() infers the dataset format from the preprocessed folder's file endings; no case is ever read.
    trainer.preprocessed_dataset_folder = os.path.join(work_dir, "preprocessed")
    os.makedirs(trainer.preprocessed_dataset_folder, exist_ok=True)
    open(os.path.join(trainer.preprocessed_dataset_folder, "case.b2nd"), "w").close()
    trainer.initialize()
    trainer.network.train()
    return trainer


def random_batch(trainer, batch_size: int, size: int, seed: int = 0) -> dict:
    """A batch shaped as the trainer's dataloader makes it: z-scored images and a target per deep-supervision scale."""
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(batch_size, 1, size, size, generator=generator)
    target = torch.randint(0, 4, (batch_size, 1, size, size), generator=generator).float()
    scales = trainer._get_deep_supervision_scales()
    if scales is None:
        return {"data": data, "target": target}
    targets = [
        torch.nn.functional.interpolate(target, size=[round(size * s) for s in scale[:2]], mode="nearest")
        for scale in scales
    ]
    return {"data": data, "target": targets}


def benchmark_training(
    trainers: Sequence[type] = (nnUNetTrainerLightEcho, nnUNetTrainer),
    size: int = 224,
    batch_size: int = 32,
    steps: int = 3,
    warmup: int = 1,
    compile: bool = False,
    num_threads: int | None = None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Frames/s of real training steps of two trainer classes (LightEcho's, then the default's) on every CPU
    training path, the trainers alternating step by step.

    Returns {"rows": [...], "summary": {...}}; the summary has train_light_frames_per_s and
    train_default_frames_per_s (the fastest path of each), train_speedup, and the CPU's model and flags.
    """
    if len(trainers) != 2:
        raise InputError("the training benchmark compares two trainers: LightEcho's and the default's")
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    classes, trainers = list(trainers), [cls.__name__ for cls in trainers]
    paths = list(TRAINING_PATHS) + (list(COMPILE_TRAINING_PATHS) if compile else [])
    if log:
        log(
            f"CPU: {cpu_model()}, flags {' '.join(cpu_flags())}, {torch.get_num_threads()} torch threads; "
            f"batch {batch_size}, {size}x{size}, {steps} timed steps per trainer and path after {warmup} warm-up"
        )
    rows = []
    with tempfile.TemporaryDirectory(prefix="lightecho-train-benchmark-") as work_dir:
        for path in paths:
            if path.precision == "bf16" and not cpu_has_bf16():
                if log:
                    log(f"  {path.name}: skipped (this CPU has no native bf16 instructions)")
                continue
            rows.extend(_time_path(trainers, classes, path, size, batch_size, steps, warmup, work_dir, log))
    return {"rows": rows, "summary": _training_summary(rows, trainers, size, batch_size)}


def _time_path(
    names: Sequence[str],
    classes: Sequence[type],
    path: TrainingPath,
    size: int,
    batch_size: int,
    steps: int,
    warmup: int,
    work_dir: str,
    log: Callable[[str], None] | None,
) -> list[dict]:
    runs = []
    for name, trainer_class in zip(names, classes):
        start = time.perf_counter()
        trainer = build_benchmark_trainer(trainer_class, size, batch_size, path, work_dir)
        batch = random_batch(trainer, batch_size, size)
        for _ in range(warmup):  # the first step includes compilation and the allocator's first touch
            trainer.train_step(batch)
        runs.append(
            {
                "name": name,
                "trainer": trainer,
                "batch": batch,
                "times": [],
                "warmup_seconds": time.perf_counter() - start,
            }
        )
    for _ in range(steps):
        for run in runs:
            start = time.perf_counter()
            loss = run["trainer"].train_step(run["batch"])["loss"]
            run["times"].append(time.perf_counter() - start)
            run["loss"] = float(loss)
    rows = []
    for run in runs:
        seconds = statistics.median(run["times"])
        row = {
            "model": run["name"],
            "path": path.name,
            "batch": batch_size,
            "seconds_per_step": round(seconds, 4),
            "frames_per_s": round(batch_size / seconds, 3),
            "steps": steps,
            "warmup_seconds": round(run["warmup_seconds"], 2),
            "last_loss": round(run["loss"], 4),
            "params": count_parameters(run["trainer"].network),
        }
        rows.append(row)
        if log:
            log(
                f"  {path.name:<28} {run['name']:<26} {row['frames_per_s']:7.2f} frames/s "
                f"({row['seconds_per_step']:.2f} s per step of {batch_size}; warm-up incl. build/compile "
                f"{row['warmup_seconds']:.1f} s)"
            )
    return rows


def _training_summary(rows: list[dict], trainers: Sequence[str], size: int, batch_size: int) -> dict:
    light_name, default_name = trainers

    def fastest(name: str) -> dict:
        return max((r for r in rows if r["model"] == name), key=lambda r: r["frames_per_s"])

    light, default = fastest(light_name), fastest(default_name)
    per_path = {}
    for path in dict.fromkeys(r["path"] for r in rows):
        pair = {r["model"]: r["frames_per_s"] for r in rows if r["path"] == path}
        per_path[path] = round(pair[light_name] / pair[default_name], 3)
    plain = {r["model"]: r["frames_per_s"] for r in rows if r["path"] == PLAIN_PATH.name}
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "bf16_native": cpu_has_bf16(),
        "torch_threads": torch.get_num_threads(),
        "frame_size": size,
        "batch_size": batch_size,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "train_light_frames_per_s": light["frames_per_s"],
        "train_light_path": light["path"],
        "train_default_frames_per_s": default["frames_per_s"],
        "train_default_path": default["path"],
        "train_speedup": round(light["frames_per_s"] / default["frames_per_s"], 3),
        "train_speedup_per_path": per_path,
        "train_light_speedup_over_plain_fp32": round(light["frames_per_s"] / plain[light_name], 3),
    }
