"""What the one predictor can be asked to do: its devices, engines, precisions and settings (no torch import, so
the CLI builds its options from these without paying for torch)."""

from __future__ import annotations

from dataclasses import dataclass

from nnunet_lightweight.core.errors import InputError

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "eager", "torch", "compile", "onnx", "openvino")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class PredictorSettings:
    """How `FastPredictor` runs a model; the CLI options of `predict` and `cine` take their choices and defaults
    from here.

    Args:
        device: one of `DEVICES`; auto is cuda where available, else cpu.
        backend: one of `BACKENDS`; auto is OpenVINO on CPU where installed, the torch engine on GPU.
        precision: one of `PRECISIONS`; auto is fp16 autocast on GPU, fp32 on CPU (as nnU-Net); int8 runs each
            fold's int8 network (`lightecho quantize`) with OpenVINO on CPU.
        batch_size: frames per network call; None for `DEFAULT_BATCH_SIZE` of the device.
        cca: keep the largest connected component of each structure.
        num_threads: CPU threads; None for all available cores.
        cuda_graphs: capture CUDA graphs (GPU, torch backend).
        mirroring: nnU-Net's mirroring test-time augmentation over the axes the checkpoint allows (none for the
            LightEcho trainers, which train without mirroring).
    """

    device: str = "auto"
    backend: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    cca: bool = True
    num_threads: int | None = None
    cuda_graphs: bool = True
    mirroring: bool = False

    def __post_init__(self) -> None:
        for name, value, choices in (
            ("device", self.device, DEVICES),
            ("backend", self.backend, BACKENDS),
            ("precision", self.precision, PRECISIONS),
        ):
            if value not in choices:
                raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
