"""Frames per second end to end (decode -> sector -> masks -> volumes -> beats -> EF) for 112x112 AVI clips, against
the network alone with the same engine and precision.

The clips are EchoNet-Dynamic-sized (112x112, 50 fps) AVIs built from a real CAMUS patient's ED and ES frames
(morphed ED -> ES -> ED over several beats), or any folder of clips given with --input. The shipped LightEcho
model's predictor (its input convention: the sector resized to 224x224) segments every frame; the network-alone
rate runs the same engine on batches of 224x224 frames, nothing else. Prints the CPU model and flags. With
--stages it also times each stage of the first clip on its own, one after the other (decode, sector placement and
nnU-Net's preprocessing, segmentation with the masks put back, the network alone on the same frames, measuring),
in ms per frame: what each stage costs the CPU, which the overlapped pipeline has to fit beside the network.

"fastest" (the default precision) is chosen by measurement: the network alone is timed at each precision this CPU
can run (fp32; bf16 where it has native bf16 instructions; int8 with an int8 copy of the shipped model, which
`lightecho quantize` makes in the temporary folder from 64 frames of 16 CAMUS training-subgroup patients unless
--int8-model names one) and the fastest is benchmarked.

Example (the 2-core CI machine):
    python scripts/benchmark_video.py --clips 4 --frames 100
Targets (issue 17): >= 60 frames/s end to end on the 2-core CI machine at the fastest precision the CPU supports,
and >= 80 % of the network-alone rate on any CPU.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from nnunet_lightweight.core.cpu_features import cpu_has_bf16, describe_cpu
from nnunet_lightweight.core.video_readers import read_clip
from nnunet_lightweight.inference.fast_predictor import FastPredictor
from nnunet_lightweight.inference.model_folder import load_trained_model
from nnunet_lightweight.inference.settings import PredictorSettings
from nnunet_lightweight.pretrained import shipped_model_folder
from nnunet_lightweight.workflows.cine_batch import cine_batch, list_clips, measure_masks
from nnunet_lightweight.workflows.quantize import quantize_model_folder

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CAMUS = REPO.parent / "shared" / "camus224" / "CAMUS_public"
CLIP_SIZE = 112
CLIP_FPS = 50
BEAT_FRAMES = 40  # 0.8 s cycles at 50 fps


def write_camus_clips(camus_root: Path, folder: Path, count: int, frames: int) -> list[Path]:
    """`count` 112x112 AVIs of `frames` frames morphing a CAMUS patient's 4CH ED and ES frames (a grey-level blend:
    speed, not accuracy, is measured here)."""
    import av

    case = camus_root / "database_nifti" / "patient0001" / "patient0001_4CH"
    ed, es = (
        sitk.GetArrayFromImage(sitk.ReadImage(f"{case}_{phase}.nii.gz")).astype(np.float32) for phase in ("ED", "ES")
    )
    ed, es = (ndimage.zoom(image, CLIP_SIZE / image.shape[0], order=1) for image in (ed, es))
    paths = []
    for number in range(count):
        weights = (1 - np.cos(2 * np.pi * (np.arange(frames) + 7 * number) / BEAT_FRAMES)) / 2
        path = folder / f"clip{number:03d}_4CH.avi"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=Fraction(CLIP_FPS))
            stream.width = stream.height = CLIP_SIZE
            stream.pix_fmt = "yuv420p"
            for w in weights:
                frame = np.round((1 - w) * ed + w * es).clip(0, 255).astype(np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
            container.mux(stream.encode())
        paths.append(path)
    return paths


def int8_shipped_model(camus_root: Path, folder: Path, patients: int = 16) -> Path:
    """An int8 copy of the shipped model in `folder`, calibrated on the ED and ES frames of both views of the first
    `patients` patients of the CAMUS training subgroup (never the validation subgroup)."""
    names = (camus_root / "database_split" / "subgroup_training.txt").read_text().split()[:patients]
    calibration = folder / "calibration"
    calibration.mkdir()
    for patient in names:
        for frame in sorted((camus_root / "database_nifti" / patient).glob(f"{patient}_[24]CH_E[DS].nii.gz")):
            (calibration / frame.name.replace(".nii.gz", "_0000.nii.gz")).symlink_to(frame)
    quantize_model_folder(calibration, folder / "model_int8", log=None)
    return folder / "model_int8"


def fastest_precision(args: argparse.Namespace, models: dict[str, Path], frames: int = 200) -> str:
    """The precision whose network alone runs the most frames/s here, each timed twice, alternating (printed)."""
    rates: dict[str, list[float]] = {precision: [] for precision in models}
    predictors = {
        precision: FastPredictor(
            load_trained_model(model),
            PredictorSettings(args.device, args.backend, precision, args.batch_size),
            log=None,
        )
        for precision, model in models.items()
    }
    for _ in range(2):
        for precision, predictor in predictors.items():
            rates[precision].append(network_alone_fps(predictor, frames))
    print("network alone, frames/s: " + ", ".join(f"{p} {max(r):.1f}" for p, r in rates.items()), flush=True)
    return max(rates, key=lambda precision: max(rates[precision]))


def network_alone_fps(predictor: FastPredictor, frames: int) -> float:
    """Frames per second of the predictor's engine alone on batches of model-sized frames (after a warm-up)."""
    batch = torch.zeros((predictor.batch_size, predictor.model.num_input_channels, *predictor.patch))
    predictor.logits(batch)
    runs = max(1, frames // predictor.batch_size)
    start = time.perf_counter()
    for _ in range(runs):
        predictor.logits(batch)
    return runs * predictor.batch_size / (time.perf_counter() - start)


def stage_costs(predictor: FastPredictor, source: Path, rounds: int = 3) -> dict[str, float | int]:
    """Milliseconds per frame of each stage for the first clip of `source`, each run on its own (best of `rounds`).

    "segment" is the network with the masks put back (argmax, uncrop, largest-component filter, the clip's size);
    "masks_back" is what it takes beyond the network alone on the same frames."""
    entry = list_clips(source)[0]
    best: dict[str, float] = {}

    def timed(stage: str, work):
        start = time.perf_counter()
        result = work()
        best[stage] = min(best.get(stage, float("inf")), time.perf_counter() - start)
        return result

    for _ in range(max(1, rounds)):
        clip = timed("decode", lambda: read_clip(entry.path))
        stack = np.asarray(clip.frames, dtype=np.float32)[None]
        spacing = [999.0, 1.0, 1.0]  # nnU-Net's 2D layout in unit pixels, as `cine --clips` segments a clip
        frames = timed("prepare", lambda: predictor.prepare(stack, spacing, clip.coloured))
        masks = timed("segment", lambda: predictor.segment(frames))
        batches = [
            torch.stack([frame.padded for frame in frames[i : i + predictor.batch_size]])
            for i in range(0, len(frames), predictor.batch_size)
        ]
        timed("network", lambda: [predictor.logits(batch) for batch in batches])
        masks = np.stack([mask.reshape(mask.shape[-2:]) for mask in masks])
        timed("measure", lambda: measure_masks(entry, clip, masks))
    count = len(clip.frames)
    costs = {stage: round(seconds * 1000 / count, 3) for stage, seconds in best.items()}
    costs["masks_back"] = round(costs["segment"] - costs["network"], 3)
    return {"frames": count, **costs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, help="a folder, glob or CSV of clips (default: clips built from CAMUS)")
    parser.add_argument("--camus", type=Path, default=DEFAULT_CAMUS, help="CAMUS_public folder for the built clips")
    parser.add_argument("--clips", type=int, default=4, help="built clips (default 4)")
    parser.add_argument("--frames", type=int, default=100, help="frames per built clip (default 100)")
    parser.add_argument(
        "--precision",
        default="fastest",
        choices=("fastest", "auto", "fp32", "bf16", "int8"),
        help="fastest (measured here among fp32, bf16 where the CPU has native bf16, and int8), or one of them",
    )
    parser.add_argument(
        "--int8-model",
        type=Path,
        help="an int8 model folder from `lightecho quantize` of the shipped model (default: made from CAMUS "
        "training-subgroup frames in the temporary folder)",
    )
    parser.add_argument("--backend", default="auto", help="predictor backend (default auto: OpenVINO on CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="end-to-end and network-alone runs, alternated; medians are reported (default 3: a shared or "
        "virtual machine's speed drifts by 10 %% between runs)",
    )
    parser.add_argument(
        "--stages", action="store_true", help="also time each stage of the first clip on its own (ms per frame)"
    )
    args = parser.parse_args()
    print(f"CPU: {describe_cpu()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="benchmark_video_") as work:
        work = Path(work)
        models = {"fp32": shipped_model_folder()}
        if cpu_has_bf16():
            models["bf16"] = shipped_model_folder()
        if args.precision in ("fastest", "int8"):
            models["int8"] = args.int8_model or int8_shipped_model(args.camus, work)
        precision = fastest_precision(args, models) if args.precision == "fastest" else args.precision
        source = args.input
        if source is None:
            (work / "clips").mkdir()
            write_camus_clips(args.camus, work / "clips", args.clips, args.frames)
            source = work / "clips"
        settings = PredictorSettings(
            device=args.device, backend=args.backend, precision=precision, batch_size=args.batch_size
        )
        predictor = FastPredictor(load_trained_model(models.get(precision, shipped_model_folder())), settings, log=None)
        print(f"engine: {predictor.describe()}", flush=True)
        cine_batch(source, work / "warmup", predictor, curves=False, progress=None)  # first calls build kernels
        end_to_end_rates, network_rates, network_shares = [], [], []
        for repeat in range(max(1, args.repeats)):
            predictor.network_seconds = 0.0
            summary = cine_batch(source, work / f"out{repeat}", predictor, curves=False, progress=None)
            end_to_end_rates.append(summary["frames_per_second"])
            network_shares.append(predictor.network_seconds / summary["seconds"])
            network_rates.append(network_alone_fps(predictor, summary["frames"]))
            print(
                f"run {repeat + 1}: {end_to_end_rates[-1]:.1f} frames/s end to end, {network_rates[-1]:.1f} network "
                "alone",
                flush=True,
            )
        stages = stage_costs(predictor, source) if args.stages else None
    end_to_end, network = statistics.median(end_to_end_rates), statistics.median(network_rates)
    network_share = statistics.median(network_shares)
    result = {
        "cpu": describe_cpu(),
        "engine": predictor.describe(),
        "precision": precision,
        "clips": summary["clips"],
        "frames": summary["frames"],
        "measured": summary["measured"],
        "repeats": len(end_to_end_rates),
        "end_to_end_frames_per_second": round(end_to_end, 2),
        "network_alone_frames_per_second": round(network, 2),
        "end_to_end_share_of_network": round(end_to_end / network, 3),
        "network_share_of_end_to_end_time": round(network_share, 3),
    }
    if stages is not None:
        result["stage_ms_per_frame"] = stages
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
