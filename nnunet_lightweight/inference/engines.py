"""Inference engines: one network, one way of running it (eager, optimised torch, torch.compile, ONNX Runtime,
OpenVINO).

Every engine maps a float32 (B, C, H, W) batch to float32 logits on its device, so the predictor and the
benchmark treat them alike. The optimisations keep the network's arithmetic (BatchNorm folded into the preceding
convolution, channels_last memory layout) unless a lower precision is asked for: fp16/bf16 autocast, or on CPU an
int8 network that `lightecho quantize` made (OpenVINO).
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from nnunet_lightweight.core.allocator import retain_freed_memory
from nnunet_lightweight.core.cpu_features import cpu_has_bf16
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.inference.onnx_export import cached_network_onnx, onnxruntime_available
from nnunet_lightweight.inference.settings import BACKENDS, PRECISIONS
from nnunet_lightweight.network.activations import replace_mish

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device) -> torch.device:
    """`auto` is cuda where available, else cpu; cuda without a GPU is an InputError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available to torch on this machine")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device}: use cpu or cuda")
    return device


def resolve_backend(backend: str, device: torch.device | None = None) -> str:
    """`auto` is OpenVINO on CPU where it is installed, else the optimised torch engine.

    On 2 CPU cores (256x256 LightEcho frame, batch 1) OpenVINO took 23.5 ms in fp32 against 42 ms for the
    optimised torch engine and 78 ms for ONNX Runtime: it fuses Conv+BatchNorm+Mish into one oneDNN primitive,
    which neither ONNX Runtime nor torch can, and it compiles in 0.05 s (torch.compile: tens of seconds, 31 ms).
    On GPU the torch engine has fp16 autocast and CUDA graphs.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    on_cpu = device is None or torch.device(device).type == "cpu"
    return "openvino" if on_cpu and openvino_available() else "torch"


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: fp16 autocast on GPU (as nnU-Net predicts there), fp32 on CPU (as nnU-Net does)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and device.type != "cpu":
        raise InputError("--precision int8 runs on CPU (OpenVINO); use fp16 on GPU")
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def openvino_available() -> bool:
    """Whether OpenVINO can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def fold_batch_norm(network: nn.Module) -> nn.Module:
    """A copy of `network` (eval mode) with every Conv->BatchNorm pair folded into one convolution.

    torch.fx finds the pairs wherever they are called from; networks fx cannot trace fall back to folding
    adjacent Conv/BatchNorm modules inside nn.Sequential containers (dynamic_network_architectures'
    ConvDropoutNormReLU runs its layers through one).
    """
    from torch.fx.experimental.optimization import fuse

    network = copy.deepcopy(network).eval()
    try:
        return fuse(network)
    except Exception:  # fx raises many kinds for untraceable Python control flow
        return _fold_sequential_batch_norm(network)


def _fold_sequential_batch_norm(network: nn.Module) -> nn.Module:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    replaced: dict[int, tuple[nn.Module, nn.Module]] = {}  # id of a layer -> (that layer, what replaces it)
    for module in network.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for index in range(len(module) - 1):
            conv, norm = module[index], module[index + 1]
            if (
                isinstance(conv, nn.modules.conv._ConvNd)
                and not isinstance(conv, nn.modules.conv._ConvTransposeNd)
                and isinstance(norm, nn.modules.batchnorm._BatchNorm)
                and norm.track_running_stats
            ):
                module[index], module[index + 1] = fuse_conv_bn_eval(conv, norm), nn.Identity()
                replaced[id(conv)], replaced[id(norm)] = (conv, module[index]), (norm, module[index + 1])
    # Where a container also names the layers it runs through its Sequential (ConvDropoutNormReLU's `conv` and
    # `norm`), that name gets the folded layer too.
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if id(child) in replaced:
                setattr(module, name, replaced[id(child)][1])
    return network


def count_gmacs(network: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Multiply-accumulates (10^9) of one forward pass on a zero input of `input_shape` (convolutions and matmuls,
    counted by torch's FlopCounterMode; normalisation and activations are not MACs)."""
    from torch.utils.flop_counter import FlopCounterMode

    network = copy.deepcopy(network).eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        network(torch.zeros(input_shape))
    return counter.get_total_flops() / 2e9


class Engine:
    """Runs a network on float32 (B, C, H, W) batches and returns float32 logits on `device`."""

    name = "engine"

    def __init__(self, device: torch.device, precision: str):
        self.device = device
        self.precision = precision

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def submit(self, images: torch.Tensor) -> RunningBatch:
        """Start the network on `images`; the result waits for the logits. Engines that cannot run in the background
        compute them here. Collect each result before the submission after next (at most two run at once)."""
        start = time.perf_counter()
        logits = self(images)
        return RunningBatch(lambda: logits, start, time.perf_counter() - start)

    def describe(self) -> str:
        """One line for logs: backend, precision, device and what is on."""
        return f"{self.name} {self.precision} on {self.device}"


class RunningBatch:
    """A batch submitted to an engine at `started` (perf_counter): calling it waits for and returns its logits;
    `seconds` is then the time from `started` to the end of the network's work on it (queued behind another batch
    included)."""

    def __init__(self, wait: Callable[[], torch.Tensor], started: float, seconds: float = 0.0):
        self._wait = wait
        self.started = started
        self.seconds = seconds

    def __call__(self) -> torch.Tensor:
        return self._wait()


class TorchEngine(Engine):
    """Eager PyTorch; with `optimize`: BatchNorm folded, channels_last, inference mode, CUDA graphs on GPU;
    with `compiled`: also torch.compile (Mish in its one-exponential form, weights frozen as constants)."""

    def __init__(
        self,
        network: nn.Module,
        device: torch.device,
        precision: str = "fp32",
        optimize: bool = True,
        cuda_graphs: bool = True,
        compiled: bool = False,
    ):
        super().__init__(device, precision)
        self.optimize = optimize
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels, as nnU-Net does
        else:
            retain_freed_memory()
        network = fold_batch_norm(network) if optimize else copy.deepcopy(network).eval()
        self.memory_format = torch.channels_last if optimize else torch.contiguous_format
        self.network = network.to(device=device, memory_format=self.memory_format)
        self.compiled = compiled
        if compiled:
            replace_mish(self.network)
            # Freezing folds the weights into the graph (and prepacks them for oneDNN on CPU);
            # on GPU, "cudagraphs" also captures CUDA graphs (what mode="reduce-overhead" does).
            options = {"freezing": True, "triton.cudagraphs": device.type == "cuda"}
            self.network = torch.compile(self.network, options=options, dynamic=False)
        self.name = "eager" if not optimize else ("compile" if compiled else "torch")
        self.cuda_graphs = optimize and cuda_graphs and device.type == "cuda" and not compiled
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def describe(self) -> str:
        features = []
        if self.optimize:
            features += ["BN folded", "channels_last"]
        if self.compiled:
            features.append(
                "torch.compile (frozen weights, one-exp Mish"
                + (", CUDA graphs)" if self.device.type == "cuda" else ")")
            )
        if self.cuda_graphs:
            features.append("CUDA graphs")
        return super().describe() + (f" ({', '.join(features)})" if features else "")

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        if self.precision == "fp32":
            return self.network(images).float()
        # No autocast weight cache: CUDA graph capture cannot use tensors cast outside the graph.
        with torch.autocast(self.device.type, dtype=_DTYPES[self.precision], cache_enabled=False):
            return self.network(images).float()

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not self.cuda_graphs:
            logits = self._forward(images)
            # torch.compile's CUDA graphs reuse their output buffers on the next call.
            return logits.clone() if self.compiled and self.device.type == "cuda" else logits
        key = tuple(images.shape)
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(images)
            except RuntimeError as error:
                warnings.warn(f"CUDA graph capture failed ({error}); running {self.name} without CUDA graphs")
                self.cuda_graphs = False
                return self._forward(images)
        graph, static_input, static_output = self._graphs[key]
        static_input.copy_(images, non_blocking=True)
        graph.replay()
        return static_output.clone()

    def _capture(self, images: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_input = images.to(self.device).clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm-up (cuDNN autotuning, allocator) outside the graph
                self._forward(static_input)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self._forward(static_input)
        return graph, static_input, static_output


class OnnxEngine(Engine):
    """ONNX Runtime (graph optimisations on: BatchNorm folding, fused activations) on CPU or its CUDA provider."""

    name = "onnx"

    def __init__(
        self, network: nn.Module, example_shape: tuple[int, ...], device: torch.device, num_threads: int | None = None
    ):
        super().__init__(device, "fp32")
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise InputError(
                    "the installed onnxruntime has no CUDA provider (install onnxruntime-gpu) "
                    "or use --backend torch on GPU"
                )
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(cached_network_onnx(network, example_shape), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.session.run(None, {self.input_name: images.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(logits).to(self.device)


class OpenVinoEngine(Engine):
    """OpenVINO on CPU, from the network's ONNX export (dynamic batch and frame size, compiled once).

    OpenVINO folds BatchNorm and fuses each convolution with its activation, Mish included, into one oneDNN
    primitive, so activations are written once per layer; bf16 runs where the CPU has native bf16 instructions
    (AVX512-BF16, AMX) and falls back to fp32 elsewhere, which `describe` reports. int8 runs the fold's int8
    network (`int8_network`, the OpenVINO model `quantization.load_int8_network` read) instead of the export: convolutions in int8 (VNNI and AMX
    instructions where the CPU has them), what stays in floating point in bf16 where native, else fp32.
    """

    name = "openvino"
    _PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": None}

    def __init__(
        self,
        network: nn.Module,
        example_shape: tuple[int, ...],
        device: torch.device,
        precision: str = "fp32",
        num_threads: int | None = None,
        int8_network=None,
    ):
        if device.type != "cpu":
            raise InputError("the openvino backend runs on CPU; use --backend torch on GPU")
        if precision not in self._PRECISIONS:
            raise InputError(f"the openvino backend runs fp32, bf16 or int8, not {precision}")
        if (precision == "int8") != (int8_network is not None):
            raise ValueError("an int8 network goes with precision int8, and only with it")
        super().__init__(device, precision)
        import openvino as ov

        core = ov.Core()
        floating = self._PRECISIONS[precision] or ("bf16" if cpu_has_bf16() else "f32")
        config = {
            "INFERENCE_PRECISION_HINT": floating,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(num_threads or torch.get_num_threads()),
        }
        if int8_network is not None:
            model = int8_network
        else:
            model = core.read_model(model=cached_network_onnx(network, example_shape))
        # Compiled for any batch and frame size: unlike torch.compile and CUDA graphs, short batches need no padding.
        self.compiled_model = core.compile_model(model, "CPU", config)
        # Two requests take turns: the next batch is queued while the caller collects the last one's logits, so
        # the network does not wait for the caller between batches (2-3 % more frames/s in alternating video runs).
        self.requests = [self.compiled_model.create_infer_request() for _ in range(2)]
        self._turn = 0

    def describe(self) -> str:
        runs_in = self.compiled_model.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        threads = self.compiled_model.get_property("INFERENCE_NUM_THREADS")
        if self.precision == "int8":
            return super().describe() + f" (int8 network; the rest in {runs_in}, {threads} threads)"
        return super().describe() + f" (inference precision {runs_in}, {threads} threads, Conv+BN+activation fused)"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.submit(images)()

    def submit(self, images: torch.Tensor) -> RunningBatch:
        request = self.requests[self._turn]
        self._turn = 1 - self._turn
        # The input is read in place (the closure keeps it alive until the request is done); the output is copied
        # out, since the request reuses its buffer.
        array = images.detach().cpu().float().contiguous().numpy()
        running = RunningBatch(lambda: _finished_output(request, running, array), time.perf_counter())
        request.start_async({0: array}, share_inputs=True)
        return running


def _finished_output(request, running: RunningBatch, array: np.ndarray) -> torch.Tensor:
    """The logits of an OpenVINO request once it is done (its latency, from start to end, into `running.seconds`);
    `array` is the input the request reads in place, held until then."""
    request.wait()
    running.seconds = request.latency / 1000
    return torch.from_numpy(request.get_output_tensor(0).data.copy())


def build_engine(
    network: nn.Module,
    backend: str,
    device: torch.device,
    precision: str,
    example_shape: tuple[int, ...],
    num_threads: int | None = None,
    cuda_graphs: bool = True,
    log: Callable[[str], None] | None = print,
    int8_network=None,
) -> Engine:
    """An engine for `network` (not modified); backends that cannot run here fall back to `torch` with a message.
    Precision int8 runs `int8_network` (an OpenVINO model from `quantization.load_int8_network`), on the openvino
    backend only."""
    if precision == "int8" and backend != "openvino":
        raise InputError(f"--precision int8 runs on the openvino backend (CPU), not {backend}")
    if backend == "openvino":
        if openvino_available():
            return OpenVinoEngine(network, example_shape, device, precision, num_threads, int8_network)
        if precision == "int8":
            raise InputError("--precision int8 needs OpenVINO (pip install openvino)")
        if log:
            log("openvino is not installed: falling back to the torch backend (pip install openvino)")
        backend = "torch"
    if backend == "onnx":
        if precision != "fp32":
            raise InputError(f"the onnx backend runs fp32 only, not {precision}")
        if not onnxruntime_available():
            if log:
                log("onnxruntime is not installed: falling back to the torch backend (pip install onnxruntime onnx)")
            backend = "torch"
        else:
            return OnnxEngine(network, example_shape, device, num_threads)
    if backend == "compile":
        try:
            engine = TorchEngine(network, device, precision, compiled=True)
            engine(torch.zeros(example_shape))  # compile now, so that a failure falls back here and not later
            return engine
        except Exception as error:  # inductor fails in many ways (no compiler, unsupported op)
            if log:
                log(
                    f"torch.compile failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}): "
                    "falling back to the torch backend"
                )
            backend = "torch"
    if backend not in ("eager", "torch"):
        raise InputError(f"unknown backend {backend!r}")
    return TorchEngine(network, device, precision, optimize=backend == "torch", cuda_graphs=cuda_graphs)


def set_cpu_threads(num_threads: int | None) -> int:
    """Set torch's intra-op threads (default: the CPUs this process may use) and return the number."""
    if num_threads is None:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(int(num_threads))
    return int(num_threads)
