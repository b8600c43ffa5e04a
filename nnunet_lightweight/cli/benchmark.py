"""lightecho benchmark: params, GMACs and ms per frame of LightEcho and nnU-Net's default network, per path."""

import argparse
import json
from pathlib import Path

from nnunet_lightweight.cli import bounded


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="speed of LightEcho vs nnU-Net's default 2d network (params, GMACs, ms/frame, frames/s)",
        description="Builds each model's network with its trainer (random weights: speed does not depend on "
        "them), counts parameters and GMACs per frame, then times every execution path (eager fp32, "
        "optimised torch fp32/bf16 on CPU or fp16/bf16 with CUDA graphs on GPU, ONNX Runtime, "
        "OpenVINO fp32/bf16 on CPU, torch.compile) at each batch size: warm-up, then up to "
        "--iterations runs or --max-seconds, median and 10th/90th percentiles in ms per frame. Prints "
        "a table; the last line is JSON with light_ms_per_frame, default_ms_per_frame (batch 1, "
        "fastest path of each, timed head to head in alternating rounds) and speedup. Other processes "
        "on the machine slow it down: the JSON records the load average. With --train it times real "
        "nnU-Net training steps instead (see --train).",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="device (default cpu)")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["nnUNetTrainerLightEcho", "nnUNetTrainer"],
        help="trainer class names (default: nnUNetTrainerLightEcho nnUNetTrainer); LightEcho "
        "trainers use their architecture, stock nnU-Net trainers the default 2d plan for "
        "256x256 frames (plans/nnunet_default_2d_256.json)",
    )
    parser.add_argument(
        "--size",
        type=bounded(int, 32, 4096),
        default=None,
        help="frame size in pixels (square; default 256, with --train 224 as in the CAMUS copy)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=bounded(int, 1, 4096),
        nargs="+",
        default=[1, 32],
        help="batch sizes: latency at 1, throughput at the others (default 1 32)",
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        default=None,
        help="execution paths backend-precision[-graphs] (default: all for the device, e.g. "
        "eager-fp32 torch-fp32 torch-bf16 onnx-fp32 openvino-fp32 openvino-bf16 on CPU)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time torch.compile paths (default on; each takes tens of seconds to compile)",
    )
    parser.add_argument("--warmup", type=bounded(int, 0), default=3, help="untimed runs per measurement (default 3)")
    parser.add_argument(
        "--iterations", type=bounded(int, 1), default=50, help="most timed runs per measurement (default 50)"
    )
    parser.add_argument("--min-iterations", type=bounded(int, 1), default=5, help="fewest timed runs (default 5)")
    parser.add_argument(
        "--max-seconds",
        type=bounded(float, 0, low_open=True),
        default=10.0,
        help="stop timing a measurement after this long once --min-iterations ran (default 10)",
    )
    parser.add_argument(
        "--rounds",
        type=bounded(int, 0),
        default=5,
        help="after the sweep, time the fastest batch-1 path of LightEcho and of the default network "
        "in this many alternating rounds; the summary's light/default ms and speedup come from "
        "them, so that drifting machine speed does not bias the ratio (default 5; 0: from the "
        "sweep)",
    )
    parser.add_argument(
        "--threads", type=bounded(int, 1), default=None, help="CPU threads (default: all available cores)"
    )
    parser.add_argument("--output-json", type=Path, default=None, help="also write every row and the summary here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-json file")
    train = parser.add_argument_group(
        "training speed (--train)",
        "Times real training steps on the CPU: each trainer's own train_step (forward, deep-supervision loss, "
        "backward, optimizer step) on random batches of --train-batch-size frames of --size pixels, for "
        "LightEcho and nnU-Net's default 2d network (its plan for 224x224 frames), on the same paths: nnU-Net's "
        "plain fp32, channels_last, bf16 autocast where the CPU has native bf16, and with --compile "
        "torch.compile (its compile time is reported as warm-up). The two trainers alternate step by step. The "
        "last line is JSON with train_light_frames_per_s, train_default_frames_per_s, train_speedup and the "
        "CPU model and flags. --models, --batch-sizes, --paths, --rounds and --device do not apply.",
    )
    train.add_argument("--train", action="store_true", help="benchmark training steps instead of inference")
    train.add_argument(
        "--train-batch-size", type=bounded(int, 1, 4096), default=32, help="frames per training step (default 32)"
    )
    train.add_argument(
        "--train-steps",
        type=bounded(int, 1),
        default=3,
        help="timed steps per trainer and path, after one warm-up step (default 3)",
    )
    parser.set_defaults(func=_run)


# A key of every --output-json file: how --overwrite tells a file of ours from a user's.
WRITTEN_BY = "lightecho benchmark"


def _is_benchmark_json(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("written_by") == WRITTEN_BY
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):  # unreadable, not JSON, not an object
        return False


def _check_output_json(args: argparse.Namespace) -> None:
    """Refuse, before minutes of timing, an --output-json that exists (without --overwrite, or not ours) or
    cannot be written."""
    from nnunet_lightweight.core.output import check_output_file

    if args.output_json is not None:
        check_output_file(args.output_json, args.overwrite, "benchmark JSON", _is_benchmark_json)


def _write_output_json(args: argparse.Namespace, result: dict) -> None:
    from nnunet_lightweight.core.output import write_text_atomically

    if args.output_json is not None:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(args.output_json, json.dumps({**result, "written_by": WRITTEN_BY}, indent=2) + "\n")


def _run(args: argparse.Namespace) -> int:
    _check_output_json(args)
    if args.train:
        return _run_training(args)
    from nnunet_lightweight.inference.benchmark import benchmark, format_table, summary_json

    result = benchmark(
        args.models,
        device=args.device,
        size=args.size or 256,
        batch_sizes=args.batch_sizes,
        paths=args.paths,
        compile=args.compile,
        warmup=args.warmup,
        iterations=args.iterations,
        max_seconds=args.max_seconds,
        min_iterations=args.min_iterations,
        num_threads=args.threads,
        rounds=args.rounds,
    )
    print(format_table(result))
    _write_output_json(args, result)
    print(summary_json(result))
    return 0


def _run_training(args: argparse.Namespace) -> int:
    from nnunet_lightweight.training.benchmark import benchmark_training

    result = benchmark_training(
        size=args.size or 224,
        batch_size=args.train_batch_size,
        steps=args.train_steps,
        compile=args.compile,
        num_threads=args.threads,
    )
    _write_output_json(args, result)
    print(json.dumps(result["summary"]))
    return 0
