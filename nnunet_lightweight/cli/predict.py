"""lightecho predict [-m MODEL_FOLDER] -i INPUT -o OUTPUT: fast nnU-Net inference for 2D frames and cine loops."""

import argparse
from pathlib import Path

from nnunet_lightweight.cli import bounded
from nnunet_lightweight.inference.settings import BACKENDS, DEVICES, PRECISIONS, PredictorSettings


def add_predictor_options(parser: argparse.ArgumentParser, mirroring_default: bool = False) -> None:
    """The options of `PredictorSettings` (device, engine, precision, batch, CCA, threads, CUDA graphs, mirroring),
    shared by `predict` and `cine`, with the library's choices and defaults."""
    defaults = PredictorSettings(mirroring=mirroring_default)
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default=defaults.device,
        help="where the network runs (default auto: cuda if available)",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=defaults.backend,
        help="engine: eager (plain PyTorch), torch (BatchNorm folded, channels_last, CUDA graphs "
        "on GPU), compile (torch.compile; compiles for tens of seconds first), onnx (ONNX "
        "Runtime), openvino (CPU only: Conv+BN+Mish fused); auto = openvino on CPU (about twice "
        "as fast as torch on 2 cores), torch on GPU",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults.precision,
        help="auto = fp16 autocast on GPU (as nnU-Net), fp32 on CPU (as nnU-Net); bf16 on CPU "
        "halves the time again where the CPU has bf16 instructions (AVX512-BF16, AMX); int8 (CPU, "
        "OpenVINO) runs the int8 networks of a model folder that `lightecho quantize` wrote",
    )
    parser.add_argument(
        "--batch-size",
        type=bounded(int, 1),
        default=defaults.batch_size,
        help="frames per network call (default 2 on CPU, 64 on GPU)",
    )
    parser.add_argument(
        "--cca",
        action=argparse.BooleanOptionalAction,
        default=defaults.cca,
        help="keep the largest connected component of each structure (the paper's post-processing; "
        "default on; --no-cca gives nnUNetv2_predict's raw masks)",
    )
    parser.add_argument(
        "--threads",
        type=bounded(int, 1),
        default=defaults.num_threads,
        help="CPU threads (default: all available cores)",
    )
    parser.add_argument(
        "--no-cuda-graphs",
        dest="cuda_graphs",
        action="store_false",
        help="do not capture CUDA graphs (GPU, torch backend)",
    )
    parser.add_argument(
        "--mirroring",
        action=argparse.BooleanOptionalAction,
        default=defaults.mirroring,
        help="nnU-Net's mirroring test-time augmentation over the axes the model's checkpoint allows "
        f"(default {'on' if defaults.mirroring else 'off'}; the LightEcho trainers allow none)",
    )


def predictor_settings(args: argparse.Namespace) -> PredictorSettings:
    """The `PredictorSettings` of parsed `add_predictor_options` options."""
    return PredictorSettings(
        device=args.device,
        backend=args.backend,
        precision=args.precision,
        batch_size=args.batch_size,
        cca=args.cca,
        num_threads=args.threads,
        cuda_graphs=args.cuda_graphs,
        mirroring=args.mirroring,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="fast prediction of frames, cine loops and videos with a trained nnU-Net model folder",
        description="Segments INPUT with a trained nnU-Net model folder (<trainer>__<plans>__<configuration>, e.g. "
        "nnUNet_results/Dataset500_CAMUS/nnUNetTrainerLightEcho__nnUNetPlans__2d) and writes "
        "<case>.nii.gz masks with the input's geometry, as nnUNetv2_predict --disable_tta would "
        "(nnU-Net's own reading, preprocessing and export), but with frames batched, BatchNorm folded, "
        "mixed precision and CUDA graphs on GPU, channels_last on CPU, and argmax plus the "
        "largest-component filter on the device. INPUT is a folder of nnU-Net images "
        "(<case>_0000.nii.gz) or of frame files, one frame file, still frame images (PNG, JPEG, BMP, TIFF, "
        "WebP; grey or colour, any size), a 2D+t cine loop (e.g. a CAMUS "
        "half-sequence NIfTI, segmented frame by frame), a video (AVI/MP4, needs PyAV) or a multi-frame "
        "DICOM clip (.dcm or any file with the DICM marker). The output "
        "folder also gets dataset.json, plans.json and prediction_summary.json (settings, timings). Where the "
        "model folder records an input convention (input_convention.json, as the shipped model does), "
        "each frame or loop is cropped to its ultrasound sector, resized to the convention's size "
        "and its masks are pasted back at the input's own size.",
    )
    parser.add_argument(
        "-m",
        "--model",
        type=Path,
        default=None,
        help="trained nnU-Net model folder (default: the LightEcho model shipped with this package, "
        "trained on the 400 CAMUS training patients; frames of any size are brought to its "
        "input convention, the sector resized to 224x224)",
    )
    parser.add_argument(
        "-i",
        "--input",
        type=Path,
        required=True,
        help="input folder, frame file, still frame image, cine loop, video or DICOM clip",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "-f",
        "--folds",
        nargs="+",
        default=None,
        help="folds to use (default: every fold with a checkpoint); several are ensembled by "
        "averaging their logits, as nnU-Net does",
    )
    parser.add_argument(
        "-chk",
        "--checkpoint",
        default="checkpoint_final.pth",
        help="checkpoint file name in each fold folder (default checkpoint_final.pth)",
    )
    add_predictor_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.inference.fast_predictor import predict
    from nnunet_lightweight.pretrained import shipped_model_folder

    predict(
        args.model or shipped_model_folder(),
        args.input,
        args.output,
        predictor_settings(args),
        args.folds,
        args.checkpoint,
        args.overwrite,
    )
    return 0
