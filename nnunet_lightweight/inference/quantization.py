"""Int8 networks for the OpenVINO engine: post-training quantization of a network with NNCF, and where a model
folder keeps each fold's int8 network (`workflows.quantize` makes a model folder with them from a folder of frames).

A fold's int8 network is `fold_X/openvino_int8/network.xml` (+ `network.bin`): an OpenVINO model with NNCF's
quantize/dequantize nodes, made from the fold's network. Its runtime info records the SHA-256 of the fold's
weights: `load_int8_network` refuses an int8 network made from other weights (a retrained checkpoint) instead of
running it.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.inference.model_folder import weights_fingerprint

INT8_FOLDER = "openvino_int8"
INT8_NETWORK = "network.xml"
# The runtime-info section of an int8 network that lightecho writes (weights_sha256, calibration_frames, ...).
RT_INFO = "lightecho"


def load_int8_network(model_folder: str | os.PathLike, fold: int | str, weights: dict[str, torch.Tensor]):
    """The int8 network of `fold` (an OpenVINO model, read once, for the engine to compile); InputError where there is
    none, where lightecho did not write it, or where it was made from other weights."""
    import openvino as ov

    path = Path(model_folder) / f"fold_{fold}" / INT8_FOLDER / INT8_NETWORK
    made_by = f"lightecho quantize -m {model_folder} -i FRAMES -o INT8_MODEL_FOLDER"
    if not path.is_file():
        raise InputError(
            f"--precision int8: fold {fold} of {model_folder} has no int8 network ({path}); make an int8 model folder "
            f"with `{made_by}` and pass --model INT8_MODEL_FOLDER"
        )
    try:
        network = ov.Core().read_model(str(path))
    except RuntimeError as error:
        raise InputError(f"cannot read the int8 network {path}: {str(error).splitlines()[0]}") from None
    if not network.has_rt_info([RT_INFO, "weights_sha256"]):
        raise InputError(f"{path} was not written by lightecho quantize: no record of the weights it was made from")
    if network.get_rt_info([RT_INFO, "weights_sha256"]).astype(str) != weights_fingerprint(weights):
        raise InputError(
            f"{path} was made from other weights than fold {fold}'s checkpoint (replaced since?): make the int8 "
            f"model folder again with `{made_by}`"
        )
    return network


def quantize_network(network: torch.nn.Module, frames: np.ndarray):
    """An int8 OpenVINO model of `network`, calibrated on `frames` (N, C, H, W) one at a time, for any batch and frame
    size, with the fingerprint of the network's weights in its runtime info.

    The network is converted by OpenVINO's PyTorch frontend, not from the ONNX export: ONNX spells Mish as
    x * tanh(softplus(x)), between whose parts NNCF puts quantizers (88 against 34), which keeps OpenVINO from
    fusing each convolution with its activation; on a 2-core Zen 4 EPYC (batch 2, 2 threads) that int8 network ran
    at 41-45 frames/s against 87-93 from the PyTorch frontend (bf16 floating point: 62-70). NNCF's MIXED preset
    (symmetric int8 weights, asymmetric int8 activations) is the one its documentation recommends for non-ReLU
    activations such as Mish, whose outputs reach down to -0.31 only; it was chosen for that before any measurement
    (its PERFORMANCE preset, symmetric activations, ran at 100-106 frames/s; its accuracy was not measured)."""
    # nncf imports torch's C++-extension helper, which logs a warning on machines without CUDA.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf
    import openvino as ov

    network = copy.deepcopy(network).float().eval().cpu()
    # OpenVINO's PyTorch frontend traces with torch.jit, which warns that it is deprecated: nothing for users to do.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        converted = ov.convert_model(
            network, example_input=torch.from_numpy(frames[:1]), input=[(-1, frames.shape[1], -1, -1)]
        )
    dataset = nncf.Dataset([frame[None] for frame in frames])
    quantized = nncf.quantize(converted, dataset, preset=nncf.QuantizationPreset.MIXED, subset_size=len(frames))
    quantized.set_rt_info(weights_fingerprint(network.state_dict()), [RT_INFO, "weights_sha256"])
    return quantized
