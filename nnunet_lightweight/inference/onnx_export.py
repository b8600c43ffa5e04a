"""ONNX export of a trained network (dynamic batch and frame size) with a parity check against PyTorch."""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.output import check_not_input, check_output_file, follow_umask, write_bytes_atomically
from nnunet_lightweight.inference.model_folder import load_trained_model, weights_fingerprint

DEFAULT_OPSET = 17
# The decoders upsample to computed sizes, which ONNX can express from opset 9 on.
MIN_OPSET = 9
# Keys of the metadata `_add_metadata` writes: `--overwrite` replaces only an ONNX file that has them.
METADATA_KEYS = ("trainer", "patch_size", "normalization")
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
# Where `cached_network_onnx` keeps exports; "off" turns the cache off.
CACHE_ENV = "LIGHTECHO_CACHE_DIR"


def onnxruntime_available() -> bool:
    """Whether onnxruntime (and onnx) can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def network_to_onnx(network: nn.Module, example_shape: tuple[int, ...], opset: int = DEFAULT_OPSET) -> bytes:
    """The serialized ONNX model of `network` (eval mode, fp32) with dynamic batch, height and width axes."""
    network = copy.deepcopy(network).float().eval().cpu()
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.inference_mode():
        # The TorchScript-based exporter is deprecated in favour of the dynamo one, which needs onnxscript and
        # handles these plain convolutional networks no better.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (torch.zeros(example_shape),),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
            do_constant_folding=True,
        )
    return buffer.getvalue()


def onnx_cache_folder() -> Path | None:
    """The folder of exported networks: $LIGHTECHO_CACHE_DIR, else $XDG_CACHE_HOME/nnunet_lightweight/onnx, else
    ~/.cache/nnunet_lightweight/onnx; None where LIGHTECHO_CACHE_DIR is `off`."""
    configured = os.environ.get(CACHE_ENV)
    if configured == "off":
        return None
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nnunet_lightweight" / "onnx"


def network_fingerprint(network: nn.Module, example_shape: tuple[int, ...], opset: int = DEFAULT_OPSET) -> str:
    """A hash of everything `network_to_onnx` depends on: the weights and buffers, the source files of the folders
    that define the network's own module classes (their helpers live beside them, e.g. network/
    upsampled_convolution.py; torch's are covered by its version), the example shape and the opset."""
    digest = hashlib.sha256(repr((torch.__version__, tuple(example_shape), opset)).encode())
    folders = {
        Path(inspect.getfile(type(module))).parent
        for module in network.modules()
        if not type(module).__module__.startswith("torch")
    }
    sources = {source for folder in folders for source in folder.glob("*.py")}
    for source in sorted(sources):
        digest.update(Path(source).read_bytes())
    digest.update(weights_fingerprint(network.state_dict()).encode())
    return digest.hexdigest()


def cached_network_onnx(network: nn.Module, example_shape: tuple[int, ...], opset: int = DEFAULT_OPSET) -> bytes:
    """`network_to_onnx`, kept in `onnx_cache_folder()` under the network's fingerprint: the export (about a second,
    and torch.onnx's imports) happens once per network, not at every start. Each entry ends with the SHA-256 of
    its export and is written whole (temporary file, then renamed); one that does not check out is exported again
    and replaced, and a cache that cannot be written is skipped."""
    folder = onnx_cache_folder()
    if folder is None:
        return network_to_onnx(network, example_shape, opset)
    path = folder / f"{network_fingerprint(network, example_shape, opset)}.onnx"
    try:
        entry = path.read_bytes()
    except OSError:
        entry = b""
    onnx_bytes, checksum = entry[:-32], entry[-32:]
    if len(entry) > 32 and hashlib.sha256(onnx_bytes).digest() == checksum:
        return onnx_bytes
    onnx_bytes = network_to_onnx(network, example_shape, opset)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, onnx_bytes + hashlib.sha256(onnx_bytes).digest())
    except OSError:
        pass  # a read-only or full cache costs the export next time, nothing else
    return onnx_bytes


def check_onnx_parity(
    network: nn.Module, onnx_model: bytes | str | Path, inputs: list[np.ndarray], num_threads: int | None = None
) -> dict:
    """Compare ONNX Runtime with eager PyTorch (fp32) on `inputs`: largest logit difference (absolute, and relative
    to the largest logit) and the fraction of pixels whose argmax agrees."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    model = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    network = copy.deepcopy(network).float().eval().cpu()
    max_abs, max_logit, agree, total = 0.0, 1.0, 0, 0
    for batch in inputs:
        with torch.inference_mode():
            expected = network(torch.from_numpy(batch)).numpy()
        actual = session.run(None, {INPUT_NAME: batch})[0]
        if actual.shape != expected.shape:
            raise AssertionError(f"ONNX output shape {actual.shape} differs from PyTorch {expected.shape}")
        max_abs = max(max_abs, float(np.abs(actual - expected).max()))
        max_logit = max(max_logit, float(np.abs(expected).max()))
        agree += int((actual.argmax(1) == expected.argmax(1)).sum())
        total += expected.shape[0] * int(np.prod(expected.shape[2:]))
    return {
        "max_abs_diff": max_abs,
        "max_rel_diff": max_abs / max_logit,
        "argmax_agreement": agree / total,
        "shapes": [list(b.shape) for b in inputs],
    }


def export_onnx(
    model_folder: str | Path,
    output: str | Path,
    fold: int | str | None = None,
    checkpoint_name: str = "checkpoint_final.pth",
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> dict:
    """Export one fold of a trained model folder to ONNX and check it against PyTorch.

    The model takes nnU-Net-preprocessed frames (B, C, H, W) with H and W multiples of the network's total
    stride and returns logits (B, classes, H, W). The check runs a batch of 2 at the patch size and a batch of 3 at
    another size; it raises when the largest logit difference exceeds `tolerance` times the largest logit.
    Returns the parity figures and the output path.
    """

    output = Path(output)
    if not onnxruntime_available():
        raise InputError("export-onnx needs the onnx and onnxruntime packages (pip install onnx onnxruntime)")
    check_not_input(output, [model_folder], "ONNX file")
    check_output_file(output, overwrite, "ONNX file", _is_lightecho_onnx)
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise InputError(
            f"--opset must be an integer of at least {MIN_OPSET} (the network's upsampling needs it), got {opset}"
        )
    model = load_trained_model(model_folder, [fold] if fold is not None else None, checkpoint_name)
    if len(model.folds) > 1:
        model = load_trained_model(model_folder, [model.folds[0]], checkpoint_name)
    patch = model.patch_size
    if len(patch) != 2:
        raise InputError(f"export-onnx supports 2d configurations; {model.configuration_name} has patch {patch}")
    stride = _total_stride(model.configuration_manager)
    example = (1, model.num_input_channels, *patch)
    try:
        onnx_bytes = network_to_onnx(model.network, example, opset)
    except RuntimeError as error:
        # an operator this opset cannot express (OnnxExporterError), or an opset newer than torch knows
        if not isinstance(error, torch.onnx.OnnxExporterError) and "onnx_opset_version" not in str(error):
            raise
        raise InputError(f"cannot export to ONNX opset {opset}: {str(error).splitlines()[0]}") from None
    _add_metadata(onnx_bytes, model, output)
    rng = np.random.default_rng(seed)
    other = tuple(max(s, 2 * t) - t for s, t in zip(patch, stride))
    inputs = [
        rng.standard_normal((2, model.num_input_channels, *patch)).astype(np.float32),
        rng.standard_normal((3, model.num_input_channels, *other)).astype(np.float32),
    ]
    parity = check_onnx_parity(model.network, output, inputs)
    if parity["max_rel_diff"] > tolerance:
        output.unlink()
        raise AssertionError(f"ONNX export differs from PyTorch: {parity}")
    return {
        "output": str(output),
        "fold": model.folds[0],
        "trainer": model.trainer_name,
        "opset": opset,
        "input_shape": [
            "batch",
            model.num_input_channels,
            f"height (multiple of {stride[0]})",
            f"width (multiple of {stride[1]})",
        ],
        **parity,
    }


def _is_lightecho_onnx(path: Path) -> bool:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and OSError: anything that is no ONNX model
        return False
    return set(METADATA_KEYS) <= {entry.key for entry in proto.metadata_props}


def _total_stride(configuration_manager) -> tuple[int, ...]:
    strides = configuration_manager.network_arch_init_kwargs.get("strides")
    if strides is None:
        return tuple(int(s) for s in np.prod(configuration_manager.pool_op_kernel_sizes, axis=0))
    strides = [[s] * len(configuration_manager.patch_size) if isinstance(s, int) else s for s in strides]
    return tuple(int(s) for s in np.prod(strides, axis=0))


def _add_metadata(onnx_bytes: bytes, model, output: Path) -> None:
    """Write the ONNX file atomically, with what a user needs to feed it in its metadata."""
    import onnx

    proto = onnx.load_from_string(onnx_bytes)
    metadata = {
        "trainer": model.trainer_name,
        "configuration": model.configuration_name,
        "fold": str(model.folds[0]),
        "patch_size": json.dumps(list(model.patch_size)),
        "labels": json.dumps(model.dataset_json.get("labels", {})),
        "normalization": json.dumps(model.configuration_manager.normalization_schemes),
        "input": "nnU-Net-preprocessed frames (B, C, H, W): cropped to nonzero, resampled to the plans' spacing, "
        "normalised per the plans; output: logits (B, classes, H, W)",
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(handle)
    try:
        onnx.save(proto, temporary)
        follow_umask(temporary)  # mkstemp makes the file private (0600); the output follows the umask instead
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
