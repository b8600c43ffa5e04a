"""lightecho quantize: a copy of a trained model folder with an int8 network per fold, calibrated on the user's frames.

Each fold's int8 network (`inference.quantization`) is calibrated on frames after the predictor's own
preprocessing (the input convention's sector placement, nnU-Net's normalisation, padding to the patch), so its
activation ranges are those `predict` and `cine` feed it. The output is a new model folder (what prediction reads
of the input model, plus `fold_X/openvino_int8/`), written whole; the input model folder is never written to, so
the shipped model, inside the installed package, is quantized like any other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.output import check_output_dir, staged_output
from nnunet_lightweight.inference.fast_predictor import FastPredictor, find_cases
from nnunet_lightweight.inference.model_folder import TrainedModel, load_trained_model
from nnunet_lightweight.inference.quantization import INT8_FOLDER, INT8_NETWORK, RT_INFO, quantize_network
from nnunet_lightweight.inference.settings import PredictorSettings
from nnunet_lightweight.pretrained import copy_prediction_files, shipped_model_folder

DEFAULT_CALIBRATION_FRAMES = 128


def calibration_frames(model: TrainedModel, images: str | os.PathLike, count: int) -> np.ndarray:
    """Up to `count` frames (N, C, patch rows, patch cols) of the images, stills or clips in `images`, evenly spread
    over its cases in name order and over each clip's frames, preprocessed as the predictor does."""
    cases = find_cases(images, model.dataset_json["file_ending"], model.num_input_channels)
    predictor = FastPredictor(model, PredictorSettings(device="cpu", backend="eager", precision="fp32"), log=None)
    picked = [cases[int(i)] for i in np.unique(np.linspace(0, len(cases) - 1, min(count, len(cases))).round())]
    per_case = -(-count // len(picked))
    frames = []
    for case in picked:
        prepared = [frame.padded for frame in predictor.read_case(case)[0] if frame.padded is not None]
        if len(prepared) > per_case:
            prepared = [prepared[int(i)] for i in np.linspace(0, len(prepared) - 1, per_case).round()]
        frames += prepared
    if not frames:
        raise InputError(f"{images}: no frame of these images fits the model's patch {model.patch_size}")
    return torch.stack(frames[:count]).numpy()


def quantize_model_folder(
    images: str | os.PathLike,
    output: str | os.PathLike,
    model_folder: str | os.PathLike | None = None,
    frames: int = DEFAULT_CALIBRATION_FRAMES,
    folds: list[int | str] | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = print,
) -> list[dict]:
    """Write to `output` a copy of `model_folder` (default: the shipped model) whose folds (default: all) each
    have an int8 network, calibrated on up to `frames` frames of `images`.

    Returns, per fold, the int8 network's path, the frames used and the share of calibration pixels whose label
    (argmax) the int8 network gives as the fp32 network does."""
    import openvino as ov

    if frames < 1:
        raise InputError(f"--frames must be at least 1, got {frames}")
    model_folder = Path(model_folder) if model_folder is not None else shipped_model_folder()
    target = check_output_dir(output, overwrite, "int8 model folder", inputs=[model_folder, images])
    model = load_trained_model(model_folder, folds)
    calibration = calibration_frames(model, images, frames)
    results = []
    with staged_output(target) as staging:
        copy_prediction_files(model_folder, staging, model.folds)
        for fold, weights in zip(model.folds, model.fold_weights):
            if log:
                log(f"fold {fold}: calibrating on {len(calibration)} frames of {images}")
            model.network.load_state_dict(weights)
            network = model.network.eval()
            quantized = quantize_network(network, calibration)
            quantized.set_rt_info(str(len(calibration)), [RT_INFO, "calibration_frames"])
            quantized.set_rt_info(str(Path(images).absolute()), [RT_INFO, "calibration_images"])
            (staging / f"fold_{fold}" / INT8_FOLDER).mkdir()
            ov.save_model(quantized, staging / f"fold_{fold}" / INT8_FOLDER / INT8_NETWORK, compress_to_fp16=False)
            results.append(
                {
                    "fold": fold,
                    "path": str(Path(output) / f"fold_{fold}" / INT8_FOLDER / INT8_NETWORK),
                    "frames": len(calibration),
                    "argmax_agreement": _argmax_agreement(quantized, network, calibration),
                }
            )
    return results


def _argmax_agreement(quantized, network: torch.nn.Module, frames: np.ndarray) -> float:
    """Share of the pixels of `frames` whose argmax the compiled int8 model gives as the fp32 network does."""
    import openvino as ov

    compiled = ov.Core().compile_model(quantized, "CPU")
    agree = 0
    for frame in frames:
        with torch.inference_mode():
            expected = network(torch.from_numpy(frame[None])).argmax(1).numpy()
        actual = np.asarray(compiled(frame[None])[0]).argmax(1)
        agree += int((actual == expected).sum())
    return agree / (len(frames) * int(np.prod(frames.shape[2:])))
