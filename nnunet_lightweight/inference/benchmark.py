"""Speed benchmark: LightEcho against nnU-Net's default 2d network, per execution path, in one run.

Networks are chosen by trainer class name and built by that trainer's own `build_network_architecture`, from
its architecture (subclasses of nnUNetTrainerLightEcho) or from nnU-Net's default 2d plan for 256x256 frames
(stock nnU-Net trainers). Weights are random: speed does not depend on them.

Every (network, path, batch size) is timed after warm-up over many iterations (until `iterations` or
`max_seconds`, at least `min_iterations`); the median and the 10th/90th percentiles are reported in ms per frame.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.inference.engines import (
    build_engine,
    count_gmacs,
    openvino_available,
    resolve_device,
    set_cpu_threads,
)
from nnunet_lightweight.inference.model_folder import find_trainer_class
from nnunet_lightweight.inference.onnx_export import onnxruntime_available
from nnunet_lightweight.inference.settings import BACKENDS, PRECISIONS
from nnunet_lightweight.network import count_parameters
from nnunet_lightweight.planning.configuration import total_stride, trainer_architecture

LIGHTECHO_TRAINER = "nnUNetTrainerLightEcho"
DEFAULT_TRAINER = "nnUNetTrainer"
DEFAULT_MODELS = (LIGHTECHO_TRAINER, DEFAULT_TRAINER)


@dataclass(frozen=True)
class ExecutionPath:
    """A way of running a network: engine backend, precision and (GPU) CUDA graphs."""

    backend: str
    precision: str
    cuda_graphs: bool = False

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}" + ("-graphs" if self.cuda_graphs else "")


CPU_PATHS = (
    ExecutionPath("eager", "fp32"),
    ExecutionPath("torch", "fp32"),
    ExecutionPath("torch", "bf16"),
    ExecutionPath("onnx", "fp32"),
    ExecutionPath("openvino", "fp32"),
    ExecutionPath("openvino", "bf16"),
)
CUDA_PATHS = (
    ExecutionPath("eager", "fp32"),
    ExecutionPath("torch", "fp16"),
    ExecutionPath("torch", "fp16", True),
    ExecutionPath("torch", "bf16", True),
)
COMPILE_PATHS = {
    "cpu": (ExecutionPath("compile", "fp32"), ExecutionPath("compile", "bf16")),
    "cuda": (ExecutionPath("compile", "fp16"),),
}


def parse_path(name: str) -> ExecutionPath:
    """`backend-precision[-graphs]`, e.g. torch-fp16-graphs, as printed in the benchmark table."""
    parts = name.split("-")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "graphs"):
        raise InputError(f"execution path {name!r}: expected backend-precision[-graphs], e.g. torch-fp32")
    for part, choices, what in ((parts[0], BACKENDS, "backend"), (parts[1], PRECISIONS, "precision")):
        if part == "auto" or part not in choices:
            known = ", ".join(c for c in choices if c != "auto")
            raise InputError(f"execution path {name!r}: unknown {what} {part!r} (one of {known})")
    return ExecutionPath(parts[0], parts[1], len(parts) == 3)


def network_for_trainer(
    trainer_name: str, num_input_channels: int = 1, num_classes: int = 4, patch: Sequence[int] = (256, 256)
) -> nn.Module:
    """The 2D network `trainer_name` trains (eval mode, random weights), built by the trainer class itself."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    trainer = find_trainer_class(trainer_name)
    architecture = trainer_architecture(trainer, 256)  # the official CAMUS frame size
    total = total_stride(architecture)
    if any(p % t or p < 2 * t for p, t in zip(patch, total)):
        # The bottleneck must keep at least 2x2 pixels: instance normalisation cannot normalise a single pixel.
        raise InputError(
            f"frame size {tuple(patch)} must be a multiple of {trainer_name}'s total stride {total}, at least twice it"
        )
    plans = PlansManager(
        {"configurations": {"2d": {"architecture": architecture, "patch_size": list(patch), "spacing": [1.0, 1.0]}}}
    )
    configuration = plans.get_configuration("2d")
    network = trainer.build_network_architecture(
        plans, configuration, num_input_channels, num_classes, enable_deep_supervision=False
    )
    return network.eval()


def time_engine(
    engine: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    device: torch.device,
    warmup: int = 3,
    iterations: int = 50,
    max_seconds: float = 10.0,
    min_iterations: int = 5,
) -> dict:
    """Milliseconds per frame of `engine(images)`: median, 10th and 90th percentile over the timed iterations."""

    def run() -> float:
        start = time.perf_counter()
        engine(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        run()
    times: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(times) < iterations and (len(times) < min_iterations or time.perf_counter() < deadline):
        times.append(run())
    per_frame = sorted(1000.0 * t / images.shape[0] for t in times)
    median = statistics.median(per_frame)
    return {
        "ms_per_frame": median,
        "p10": _percentile(per_frame, 10),
        "p90": _percentile(per_frame, 90),
        "iterations": len(times),
        "frames_per_second": 1000.0 / median,
    }


def _percentile(sorted_values: list[float], q: float) -> float:
    position = (len(sorted_values) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _agreement(reference: torch.Tensor, logits: torch.Tensor) -> float:
    return float((reference.argmax(1) == logits.argmax(1).to(reference.device)).float().mean())


def benchmark(
    models: Sequence[str] = DEFAULT_MODELS,
    device: str = "cpu",
    size: int = 256,
    batch_sizes: Sequence[int] = (1, 32),
    paths: Sequence[str] | None = None,
    compile: bool = True,
    warmup: int = 3,
    iterations: int = 50,
    max_seconds: float = 10.0,
    min_iterations: int = 5,
    num_threads: int | None = None,
    num_classes: int = 4,
    rounds: int = 5,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Params, GMACs per frame and ms per frame of every model on every execution path and batch size.

    Returns {"rows": [...], "models": {trainer: summary}, "summary": {...}}; the summary has light_ms_per_frame,
    default_ms_per_frame (batch 1, fastest path of each) and speedup. With `rounds`, those three come from a
    head-to-head run after the sweep: the fastest batch-1 path of LightEcho and of the default network, timed in
    alternation for `rounds` rounds (medians of the rounds), so that a machine whose speed drifts over the minutes
    of the sweep does not bias the ratio; the sweep's own figures stay in the rows.
    """
    torch_device = resolve_device(device)
    threads = set_cpu_threads(num_threads) if torch_device.type == "cpu" else None
    execution_paths = _execution_paths(torch_device, paths, compile, log)
    rows, per_model = [], {}
    for trainer in models:
        network = network_for_trainer(trainer, 1, num_classes, (size, size))
        info = {
            "params": count_parameters(network),
            "gmacs_per_frame": count_gmacs(network, (1, 1, size, size)),
            "network": type(network).__name__,
        }
        if log:
            log(
                f"{trainer}: {type(network).__name__}, {info['params']:,} parameters, "
                f"{info['gmacs_per_frame']:.2f} GMACs per {size}x{size} frame"
            )
        check_input = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            reference = network(check_input)
        for path in execution_paths:
            start = time.perf_counter()
            try:
                engine = build_engine(
                    network,
                    path.backend,
                    torch_device,
                    path.precision,
                    (1, 1, size, size),
                    threads,
                    path.cuda_graphs,
                    log=None,
                )
            except Exception as error:  # a path that cannot run here is reported, not fatal
                if log:
                    log(f"  {path.name}: skipped ({type(error).__name__}: {str(error).splitlines()[0][:160]})")
                continue
            build_seconds = time.perf_counter() - start
            agreement = _agreement(reference, engine(check_input.to(torch_device)).cpu())
            for batch in batch_sizes:
                images = torch.randn(batch, 1, size, size).to(torch_device)
                stats = time_engine(engine, images, torch_device, warmup, iterations, max_seconds, min_iterations)
                row = {
                    "model": trainer,
                    "path": path.name,
                    "batch": batch,
                    **stats,
                    "argmax_agreement_vs_eager_fp32": agreement,
                    "build_seconds": build_seconds,
                }
                rows.append(row)
                if log:
                    log(
                        f"  {path.name:<20} batch {batch:>3}: {stats['ms_per_frame']:9.3f} ms/frame "
                        f"(p10 {stats['p10']:.3f}, p90 {stats['p90']:.3f}, n={stats['iterations']}), "
                        f"{stats['frames_per_second']:9.1f} frames/s"
                    )
            del engine
        per_model[trainer] = {**info, **_fastest(rows, trainer, batch_sizes)}
    summary = _summary(per_model, torch_device, threads, size)
    if rounds and summary["speedup"]:
        summary.update(
            head_to_head(
                per_model,
                torch_device,
                threads,
                size,
                num_classes,
                rounds,
                warmup,
                iterations,
                max_seconds,
                min_iterations,
                log,
            )
        )
    return {"rows": rows, "models": per_model, "summary": summary}


def head_to_head(
    per_model: dict,
    device: torch.device,
    threads: int | None,
    size: int,
    num_classes: int,
    rounds: int,
    warmup: int,
    iterations: int,
    max_seconds: float,
    min_iterations: int,
    log: Callable[[str], None] | None,
) -> dict:
    """LightEcho's and the default network's fastest batch-1 paths timed in alternation: the medians over `rounds`
    rounds of each one's median ms per frame, and the median of the per-round speedups."""
    engines, images = {}, torch.randn(1, 1, size, size).to(device)
    for trainer in (LIGHTECHO_TRAINER, DEFAULT_TRAINER):
        path = parse_path(per_model[trainer]["batch1"]["fastest_path"])
        network = network_for_trainer(trainer, 1, num_classes, (size, size))
        engines[trainer] = build_engine(
            network, path.backend, device, path.precision, (1, 1, size, size), threads, path.cuda_graphs, log=None
        )
    times: dict[str, list[float]] = {trainer: [] for trainer in engines}
    for _ in range(rounds):
        for trainer, engine in engines.items():
            stats = time_engine(engine, images, device, warmup, iterations, max_seconds / rounds, min_iterations)
            times[trainer].append(stats["ms_per_frame"])
    light, default = times[LIGHTECHO_TRAINER], times[DEFAULT_TRAINER]
    result = {
        "light_ms_per_frame": round(statistics.median(light), 4),
        "default_ms_per_frame": round(statistics.median(default), 4),
        "speedup": round(statistics.median(d / li for li, d in zip(light, default)), 4),
        "head_to_head_rounds": rounds,
        "speedup_per_round": [round(d / li, 3) for li, d in zip(light, default)],
    }
    if log:
        log(
            f"head to head, {rounds} alternating rounds at batch 1: LightEcho {result['light_ms_per_frame']:.3f} "
            f"ms/frame, default {result['default_ms_per_frame']:.3f} ms/frame, speedup {result['speedup']:.2f}x "
            f"(per round {result['speedup_per_round']})"
        )
    return result


def _execution_paths(
    device: torch.device, names: Sequence[str] | None, compile: bool, log: Callable[[str], None] | None
) -> list[ExecutionPath]:
    if names:
        chosen = [parse_path(n) for n in names]
    else:
        chosen = list(CPU_PATHS if device.type == "cpu" else CUDA_PATHS)
        if compile:
            chosen.extend(COMPILE_PATHS[device.type])
    for backend, available, package in (
        ("onnx", onnxruntime_available, "onnx onnxruntime"),
        ("openvino", openvino_available, "openvino"),
    ):
        if any(p.backend == backend for p in chosen) and not available():
            if log:
                log(f"{backend} is not installed: the {backend} paths are skipped (pip install {package})")
            chosen = [p for p in chosen if p.backend != backend]
    return chosen


def _fastest(rows: list[dict], trainer: str, batch_sizes: Sequence[int]) -> dict:
    """Per batch size: the fastest path overall, the fastest fp32 path, and eager fp32."""
    result = {}
    for batch in batch_sizes:
        candidates = [r for r in rows if r["model"] == trainer and r["batch"] == batch]
        if not candidates:
            continue
        best = min(candidates, key=lambda r: r["ms_per_frame"])
        fp32 = [r for r in candidates if "-fp32" in r["path"]]
        eager = [r for r in candidates if r["path"] == "eager-fp32"]
        result[f"batch{batch}"] = {
            "fastest_path": best["path"],
            "ms_per_frame": best["ms_per_frame"],
            "frames_per_second": best["frames_per_second"],
            "fastest_fp32_path": min(fp32, key=lambda r: r["ms_per_frame"])["path"] if fp32 else None,
            "fp32_ms_per_frame": min(r["ms_per_frame"] for r in fp32) if fp32 else None,
            "eager_fp32_ms_per_frame": eager[0]["ms_per_frame"] if eager else None,
        }
    return result


def _summary(per_model: dict, device: torch.device, threads: int | None, size: int) -> dict:
    def pick(trainer: str, batch: str, key: str):
        return per_model.get(trainer, {}).get(batch, {}).get(key)

    light, default = pick(LIGHTECHO_TRAINER, "batch1", "ms_per_frame"), pick(DEFAULT_TRAINER, "batch1", "ms_per_frame")
    light_fp32, default_fp32 = (
        pick(LIGHTECHO_TRAINER, "batch1", "fp32_ms_per_frame"),
        pick(DEFAULT_TRAINER, "batch1", "fp32_ms_per_frame"),
    )
    largest = max(
        (k for m in per_model.values() for k in m if k.startswith("batch")), key=lambda k: int(k[5:]), default=None
    )
    summary = {
        "device": _device_name(device),
        "cpu_threads": threads,
        "frame_size": size,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "light_ms_per_frame": light,
        "default_ms_per_frame": default,
        "speedup": default / light if light and default else None,
        "light_path": pick(LIGHTECHO_TRAINER, "batch1", "fastest_path"),
        "default_path": pick(DEFAULT_TRAINER, "batch1", "fastest_path"),
        "light_fp32_ms_per_frame": light_fp32,
        "default_fp32_ms_per_frame": default_fp32,
        "fp32_speedup": default_fp32 / light_fp32 if light_fp32 and default_fp32 else None,
        "light_eager_ms_per_frame": pick(LIGHTECHO_TRAINER, "batch1", "eager_fp32_ms_per_frame"),
        "default_eager_ms_per_frame": pick(DEFAULT_TRAINER, "batch1", "eager_fp32_ms_per_frame"),
    }
    if largest and largest != "batch1":
        summary.update(
            {
                f"light_{largest}_frames_per_second": pick(LIGHTECHO_TRAINER, largest, "frames_per_second"),
                f"default_{largest}_frames_per_second": pick(DEFAULT_TRAINER, largest, "frames_per_second"),
            }
        )
    summary.update({f"{name}_params": m["params"] for name, m in per_model.items()})
    summary.update({f"{name}_gmacs": round(m["gmacs_per_frame"], 3) for name, m in per_model.items()})
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = "cpu"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            name = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), name)
    except OSError:
        pass
    return name


def format_table(result: dict) -> str:
    """The benchmark rows as a Markdown table."""
    lines = [
        "| model | path | batch | ms/frame (median) | p10 | p90 | frames/s | n |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['path']} | {r['batch']} | {r['ms_per_frame']:.3f} | {r['p10']:.3f} | "
            f"{r['p90']:.3f} | {r['frames_per_second']:.1f} | {r['iterations']} |"
        )
    return "\n".join(lines)


def summary_json(result: dict) -> str:
    """The one-line JSON summary the benchmark prints last."""
    return json.dumps(result["summary"], sort_keys=False)
