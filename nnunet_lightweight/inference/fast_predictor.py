"""FastPredictor: nnU-Net's answer for 2D frames and cine loops, batched, on an optimised engine.

What is nnU-Net's own code here: image reading and writing (the plans' reader/writer, so the output has the
input's geometry), preprocessing (`preprocessor.run_case_npy`: transpose, crop to the nonzero bounding box,
the plans' normalisation, resampling to the plans' spacing; for nnU-Net's DefaultPreprocessor a subclass,
`inference.frame_preprocessing`, returns its results for single frames at the plans' spacing without the work
that changes nothing for them, tested equal), centred zero padding to the patch (`pad_nd_image`),
export (argmax, resampling back, reverting the crop; `convert_predicted_logits_to_segmentation_with_correct_shape`
wherever a frame was resampled). The largest-component filter has nnU-Net's semantics (its
`remove_all_but_largest_component_from_segmentation` per label) in one faster pass (`core.labels`), tested equal.

What differs from `nnUNetv2_predict --disable_tta`, and why the masks still match:
- frames that fit the patch are stacked into batches and run once; nnU-Net runs each frame alone through its
  sliding window, which for a frame that fits is one window whose Gaussian weight cancels out (it keeps the
  logits in fp16 meanwhile; argmax ties may fall differently in a handful of pixels);
- argmax and, on GPU, the largest-component filter run on the device (on CPU the argmax is a first-maximum
  pass in numpy, with torch's tie rule); frames needing no resampling skip the logit export to CPU;
- frames larger than the patch go through nnU-Net's own sliding-window code, unchanged;
- a file with several frames (a 2D+t cine loop) is preprocessed frame by frame (each frame cropped and
  normalised on its own, as the training frames were), whereas nnU-Net would normalise the whole stack at once;
- several folds are averaged on the logits, as nnU-Net does;
- mirroring (test-time augmentation over the axes the model's checkpoint allows) is an explicit setting, off by
  default as in `nnUNetv2_predict --disable_tta`; when on, it is nnU-Net's own
  `nnUNetPredictor._internal_maybe_mirror_and_predict` over the batched engine.

`predict`, `lightecho cine`, the demo and the ablation runner all segment through this one predictor, so the same
frames give the same masks from every command with the same `PredictorSettings`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import check_image_content, check_one_component
from nnunet_lightweight.core.labels import keep_largest_component_per_label
from nnunet_lightweight.core.output import OutputLayout, check_output_dir, staged_output
from nnunet_lightweight.core.video_readers import (
    CLIP_SUFFIXES,
    DICOM_SUFFIXES,
    NO_SPACING,
    STILL_IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    clip_kind,
    is_still_image,
    prefetched,
    read_loop,
    read_still,
)
from nnunet_lightweight.inference.components import keep_largest_component
from nnunet_lightweight.inference.engines import (
    RunningBatch,
    build_engine,
    resolve_backend,
    resolve_device,
    resolve_precision,
    set_cpu_threads,
)
from nnunet_lightweight.inference.input_convention import InputConvention, Placement
from nnunet_lightweight.inference.model_folder import DEFAULT_CHECKPOINT, TrainedModel, load_trained_model
from nnunet_lightweight.inference.quantization import load_int8_network
from nnunet_lightweight.inference.settings import PredictorSettings

# On 2 CPU cores batch 2 was fastest per frame (224x224: 30 ms; batch 8: 37 ms, activations outgrow the caches).
DEFAULT_BATCH_SIZE = {"cpu": 2, "cuda": 64}
_CHANNEL_SUFFIX = re.compile(r"_(\d{4})$")
# read_case's property of a video, DICOM clip or still image: its pixel size (row, col) in mm, None where unknown.
CLIP_SPACING = "clip_spacing_mm"
# nnU-Net's 2D convention (its SimpleITK reader): a dummy first axis with a huge spacing.
_DUMMY_SPACING = 999.0


@dataclass
class Frame:
    """One preprocessed frame: data (C, 1, rows, cols) float32 and nnU-Net's preprocessing properties, and where
    the frame was brought to the model's input convention, how its mask goes back to the input's size. A frame
    that fits the patch also carries its zero-padded copy (C, patch rows, patch cols) and the slicer of the frame
    in it, made where it was preprocessed (a reader thread), so that batches go to the network without delay."""

    data: np.ndarray
    properties: dict
    placement: Placement | None = None
    padded: torch.Tensor | None = None
    slicer: tuple | None = None


@dataclass
class Case:
    """An input case: its output name and its files (one per channel), or a video file."""

    name: str
    files: list[Path]
    video: bool = False


@dataclass
class Timing:
    """Wall-clock seconds spent per stage of a prediction run (stages overlap when threads run them)."""

    frames: int = 0
    cases: int = 0
    network: float = 0.0
    total: float = 0.0
    setup: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        ms = 1000.0 / max(self.frames, 1)
        return {
            "cases": self.cases,
            "frames": self.frames,
            "setup_seconds": round(self.setup, 3),
            "seconds": round(self.total, 3),
            "ms_per_frame": round(self.total * ms, 3),
            "network_ms_per_frame": round(self.network * ms, 3),
            **{f"{k}_seconds": round(v, 3) for k, v in self.stages.items()},
        }


class FastPredictor:
    """Predicts 2D frames with a trained nnU-Net model folder: batched, optimised engine, argmax (+CCA) on device.

    The predictor owns `model.network` from then on: load the model again for another predictor.
    """

    def __init__(
        self,
        model: TrainedModel,
        settings: PredictorSettings = PredictorSettings(),
        log: Callable[[str], None] | None = print,
    ):
        if len(model.patch_size) != 2:
            raise InputError(
                f"{model.folder}: the fast predictor handles 2d configurations, not "
                f"{model.configuration_name} (patch {model.patch_size}); use nnUNetv2_predict"
            )
        if model.label_manager.has_regions:
            raise InputError(f"{model.folder}: region-based models are not supported; use nnUNetv2_predict")
        self.model = model
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.num_threads = set_cpu_threads(settings.num_threads) if self.device.type == "cpu" else None
        self.backend = resolve_backend(settings.backend, self.device)
        self.precision = resolve_precision(settings.precision, self.device)
        self.batch_size = int(settings.batch_size or DEFAULT_BATCH_SIZE[self.device.type])
        if self.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {settings.batch_size}")
        self.cca = settings.cca
        # nnU-Net mirrors only where asked and where the checkpoint allows it (its `use_mirroring` semantics).
        self.mirror_axes = model.allowed_mirroring_axes if settings.mirroring else None
        self.labels = [int(label) for label in model.label_manager.foreground_labels]
        self.patch = model.patch_size
        example = (self.batch_size, model.num_input_channels, *self.patch)
        self.engines = []
        # The engines take model.network itself for the first fold (copying it costs 0.1 s at every start) and copies
        # of it, made before any engine changes it in place (device, memory format, activations), for the others.
        networks = [model.network] + [copy.deepcopy(model.network) for _ in model.fold_weights[1:]]
        for fold, network, weights in zip(model.folds, networks, model.fold_weights):
            network.load_state_dict(weights)
            int8_network = (
                load_int8_network(model.folder, fold, network.state_dict()) if self.precision == "int8" else None
            )
            self.engines.append(
                build_engine(
                    network.eval(),
                    self.backend,
                    self.device,
                    self.precision,
                    example,
                    self.num_threads,
                    settings.cuda_graphs,
                    log,
                    int8_network,
                )
            )
        # Compiled engines and CUDA graphs are built per input shape: pad short batches instead of rebuilding.
        self.fixed_batch = any(getattr(e, "compiled", False) or getattr(e, "cuda_graphs", False) for e in self.engines)
        from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

        from nnunet_lightweight.inference.frame_preprocessing import FramePreprocessor

        preprocessor_class = model.configuration_manager.preprocessor_class
        # nnU-Net's default preprocessing, without its work that changes nothing for single frames (tested equal).
        self.preprocessor = (FramePreprocessor if preprocessor_class is DefaultPreprocessor else preprocessor_class)(
            verbose=False
        )
        self.reader_writer = model.plans_manager.image_reader_writer_class()
        self.convention = InputConvention.of_model_folder(model.folder)
        self._sliding_window_predictor = None
        self._mirroring_predictor = self._nnunet_predictor(self._ensemble_logits) if self.mirror_axes else None
        self.network_seconds = 0.0
        self._network_busy_until = 0.0

    def _nnunet_predictor(self, network: Callable[[torch.Tensor], torch.Tensor] | torch.nn.Module):
        """nnU-Net's predictor around `network`, with this model's plans, folds and mirroring."""
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        predictor = nnUNetPredictor(
            use_mirroring=self.mirror_axes is not None,
            device=self.device,
            perform_everything_on_device=self.device.type == "cuda",
            allow_tqdm=False,
        )
        predictor.manual_initialization(
            network,
            self.model.plans_manager,
            self.model.configuration_manager,
            self.model.fold_weights,
            self.model.dataset_json,
            self.model.trainer_name,
            self.mirror_axes,
        )
        return predictor

    @property
    def model_folder(self) -> Path:
        """The model folder: an input, which no command writes its output over."""
        return self.model.folder

    def describe(self) -> str:
        """One line: engine, folds, batch size, CCA."""
        return (
            f"{self.engines[0].describe()}, {len(self.engines)} fold(s) {self.model.folds}, batch "
            f"{self.batch_size}, CCA {'on ' + ('device' if self._cca_on_device else 'CPU') if self.cca else 'off'}"
            + (f", mirroring axes {self.mirror_axes}" if self.mirror_axes else "")
            + (f", {self.num_threads} CPU threads" if self.num_threads else "")
        )

    @property
    def _cca_on_device(self) -> bool:
        # The torch filter needs a few dozen whole-image passes: cheap on a GPU, slower than scikit-image on CPU.
        return self.device.type == "cuda"

    def preprocess(self, data: np.ndarray, properties: dict) -> Frame:
        """nnU-Net's preprocessing of one image (C, 1, rows, cols) with its reader's properties."""
        if data.shape[0] != self.model.num_input_channels:
            raise InputError(
                f"the model expects {self.model.num_input_channels} channel(s), the image has {data.shape[0]}"
            )
        from acvl_utils.cropping_and_padding.padding import pad_nd_image

        data, _, properties = self.preprocessor.run_case_npy(
            data, None, properties, self.model.plans_manager, self.model.configuration_manager, self.model.dataset_json
        )
        frame = Frame(np.ascontiguousarray(data, dtype=np.float32), properties)
        if self._fits_patch(frame):
            frame.padded, frame.slicer = pad_nd_image(
                torch.from_numpy(frame.data[:, 0]), self.patch, "constant", {"value": 0}, True
            )
        return frame

    def _fits_patch(self, frame: Frame) -> bool:
        """Whether the frame is one 2D image no larger than the patch (it is then batched, padded to the patch)."""
        return frame.data.shape[1] == 1 and all(s <= p for s, p in zip(frame.data.shape[2:], self.patch))

    def prepare(self, stack: np.ndarray, spacing: list[float], coloured: np.ndarray | None = None) -> list[Frame]:
        """Preprocessed frames of an image stack (C, frames, rows, cols) with nnU-Net's 3-axis `spacing`.

        Where the model folder records an input convention, the stack is first blanked outside its ultrasound
        sector (found over all frames, never in the `coloured` (rows, cols) pixels the reader marked), cropped to
        the sector's bounding box and resized to the convention's frame size; frames in the convention (resized, or
        of its size already) are at the model's own spacing, whatever their header says (no resampling); `segment`
        maps the masks back.
        """
        return list(self._prepared(stack, spacing, coloured))

    def _prepared(self, stack: np.ndarray, spacing: list[float], coloured: np.ndarray | None) -> Iterator[Frame]:
        """`prepare`, frame by frame."""
        placement = self.convention.place(stack[0], coloured) if self.convention else None
        if placement is not None:
            stack = placement.to_model(stack)
        if self.convention is not None:
            # The convention is geometric: a frame in it (resized here, or of its size already) is at the model's
            # own spacing whatever its header says, so nnU-Net's preprocessing must not resample it by that.
            spacing = [spacing[0], *self.model.configuration_manager.spacing]
        for z in range(stack.shape[1]):
            frame = self.preprocess(stack[:, z : z + 1], {"spacing": list(spacing)})
            frame.placement = placement
            yield frame

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a preprocessed (B, C, H, W) batch on the engine device, averaged over folds."""
        start = time.perf_counter()
        frames = batch.shape[0]
        if self.fixed_batch and frames < self.batch_size:
            batch = torch.cat((batch, batch.new_zeros((self.batch_size - frames, *batch.shape[1:]))))
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        if self._mirroring_predictor is not None:
            logits = self._mirroring_predictor._internal_maybe_mirror_and_predict(batch)
        else:
            logits = self._ensemble_logits(batch)
        logits = logits[:frames]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.network_seconds += time.perf_counter() - start
        return logits

    def submit_logits(self, batch: torch.Tensor) -> RunningBatch:
        """`logits` started in the background where the engine can (one fold, no mirroring, no padding to a fixed
        batch: OpenVINO on CPU); elsewhere computed now. Collect each result before the submission after next."""
        if len(self.engines) > 1 or self._mirroring_predictor is not None or self.fixed_batch:
            start = time.perf_counter()
            logits = self.logits(batch)
            return RunningBatch(lambda: logits, start, time.perf_counter() - start)
        running = self.engines[0].submit(batch)

        def logits() -> torch.Tensor:
            result = running()
            # Batches queue behind each other: count the network's busy time once.
            end = running.started + running.seconds
            self.network_seconds += max(0.0, end - max(running.started, self._network_busy_until))
            self._network_busy_until = max(self._network_busy_until, end)
            return result

        return RunningBatch(logits, running.started)

    def _ensemble_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a device batch averaged over the folds' engines, as nnU-Net averages its folds."""
        logits = self.engines[0](batch)
        for engine in self.engines[1:]:
            logits = logits + engine(batch)
        return logits / len(self.engines) if len(self.engines) > 1 else logits

    def segment(self, frames: Iterable[Frame]) -> list[np.ndarray]:
        """Label maps of preprocessed frames, each in its original geometry (nnU-Net's layout, e.g. (1, rows, cols)).

        `frames` may be a generator that another thread fills (`__call__` preprocesses that way). Three things
        overlap: the engine runs a batch while the next one is queued behind it (`submit_logits`), this thread
        collects the previous batch's logits, and a worker thread puts that batch's masks back into their frames
        (argmax on CPU, uncrop, CCA, input size).
        """
        finished: list[tuple[list[int], Future]] = []
        batch: list[tuple[int, Frame]] = []
        running: list[tuple[list[tuple[int, Frame]], RunningBatch]] = []
        with ThreadPoolExecutor(max_workers=1) as finishing:

            def collect() -> None:
                indexed, logits = running.pop(0)
                finish = self._finish_batch([frame for _, frame in indexed], logits())
                finished.append(([index for index, _ in indexed], finishing.submit(finish)))

            def flush() -> None:
                running.append((list(batch), self.submit_logits(torch.stack([frame.padded for _, frame in batch]))))
                batch.clear()
                if len(running) > 1:
                    collect()

            for index, frame in enumerate(frames):
                if self._fits_patch(frame):
                    batch.append((index, frame))
                    if len(batch) == self.batch_size:
                        flush()
                else:
                    mask = self._segment_sliding_window(frame)
                    finished.append(([index], finishing.submit(_at_input_size, [frame], [mask])))
            if batch:
                flush()
            while running:
                collect()
            results: dict[int, np.ndarray] = {}
            for indices, future in finished:
                results.update(zip(indices, future.result()))
        return [results[index] for index in range(len(results))]

    def _finish_batch(self, frames: list[Frame], logits: torch.Tensor) -> Callable[[], list[np.ndarray]]:
        """After the network: argmax and CCA on a GPU; returns the rest of the work, which needs no engine (on a CPU
        the argmax too): the label maps in each frame's original geometry."""
        slicers = [frame.slicer for frame in frames]
        direct = [
            tuple(f.properties["shape_after_cropping_and_before_resampling"][1:]) == f.data.shape[2:] for f in frames
        ]
        segmentation = None
        if any(direct) and logits.device.type != "cpu":
            segmentation = logits.argmax(1).to(torch.uint8)
            valid = torch.zeros(segmentation.shape, dtype=torch.bool)
            for b, slicer in enumerate(slicers):
                valid[(b, *slicer[1:])] = True
            segmentation = segmentation * valid.to(segmentation.device)
            if self.cca and self._cca_on_device:
                segmentation = keep_largest_component(segmentation, self.labels)
            segmentation = segmentation.cpu().numpy()
        resampled = {
            b: logits[b][(slice(None), *slicers[b][1:])][:, None].float().cpu()
            for b in range(len(frames))
            if not direct[b]
        }

        def finish() -> list[np.ndarray]:
            labels = segmentation
            if labels is None and any(direct):
                # On CPU the padding is sliced off below, before the CCA: no mask needed.
                labels = first_max_channel(logits.float().numpy())
            masks = [
                self._revert_crop(
                    labels[b][slicers[b][1:]][None], frame.properties, self.cca and not self._cca_on_device
                )
                if direct[b]
                else self._export(resampled[b], frame.properties)
                for b, frame in enumerate(frames)
            ]
            return _at_input_size(frames, masks)

        return finish

    def _revert_crop(self, segmentation: np.ndarray, properties: dict, cca: bool) -> np.ndarray:
        """Put a (1, rows, cols) map of the cropped frame back into the full frame and undo the transpose."""
        from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

        full = np.zeros(properties["shape_before_cropping"], dtype=np.uint8)
        full = insert_crop_into_image(full, segmentation, properties["bbox_used_for_cropping"])
        full = full.transpose(self.model.plans_manager.transpose_backward)
        return self._keep_largest(full) if cca else full

    def _export(self, logits: torch.Tensor, properties: dict) -> np.ndarray:
        """nnU-Net's export for frames that were resampled: logits back to the original shape, argmax, uncrop."""
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        segmentation = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits,
            self.model.plans_manager,
            self.model.configuration_manager,
            self.model.label_manager,
            properties,
            num_threads_torch=torch.get_num_threads(),
        )
        segmentation = np.asarray(segmentation, dtype=np.uint8)
        return self._keep_largest(segmentation) if self.cca else segmentation

    def _keep_largest(self, segmentation: np.ndarray) -> np.ndarray:
        return keep_largest_component_per_label(segmentation, {str(label): label for label in self.labels})

    def _segment_sliding_window(self, frame: Frame) -> np.ndarray:
        """nnU-Net's own sliding-window prediction (mirroring as set) for frames larger than the patch."""
        if self._sliding_window_predictor is None:
            self._sliding_window_predictor = self._nnunet_predictor(copy.deepcopy(self.model.network))
        start = time.perf_counter()
        logits = self._sliding_window_predictor.predict_logits_from_preprocessed_data(torch.from_numpy(frame.data))
        self.network_seconds += time.perf_counter() - start
        return self._export(logits.float(), frame.properties)

    def __call__(
        self, frames: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0), coloured: np.ndarray | None = None
    ) -> np.ndarray:
        """Label maps (T, rows, cols) uint8 of grey-level frames (T, rows, cols) whose pixels are `spacing` (row, col),
        with the (rows, cols) pixels a clip reader found `coloured` (overlays, see `prepare`).

        Frames go through nnU-Net's preprocessing one by one (z-score per frame for the default plans), so this is
        a drop-in segmenter for cine loops (`clinical.cine.segment_sequence` calls it with `spacing` and
        `coloured`)."""
        frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3:
            raise InputError(f"expected frames (T, rows, cols), got shape {frames.shape}")
        spacing_3d = [_DUMMY_SPACING, float(spacing[0]), float(spacing[1])]
        # Frames are preprocessed in a thread while the network segments the ones before them.
        prepared = prefetched(
            self._prepared(frames.astype(np.float32)[None], spacing_3d, coloured), 2 * self.batch_size
        )
        return np.stack([s.reshape(frames.shape[1:]) for s in self.segment(prepared)])

    def read_case(self, case: Case) -> tuple[list[Frame], dict]:
        """Read and preprocess a case's frames; returns the frames and the reader's properties (for videos, DICOM
        and still images {CLIP_SPACING: (row, col) mm or None})."""
        if case.video:
            path = case.files[0]
            # A still frame is valid, saved as a video too.
            sequence = read_still(path) if is_still_image(path) else read_loop(path, min_frames=1)
            spacing = [_DUMMY_SPACING, *sequence.spacing]
            frames = self.prepare(np.asarray(sequence.frames, dtype=np.float32)[None], spacing, sequence.coloured)
            return frames, {CLIP_SPACING: sequence.spacing if sequence.spacing_source != NO_SPACING else None}
        try:
            data, properties = self.reader_writer.read_images([str(f) for f in case.files])
        except Exception as error:  # SimpleITK raises RuntimeError; other readers their own kinds
            raise InputError(f"cannot read {', '.join(map(str, case.files))}: {error}") from None
        if len(properties["spacing"]) != data.ndim - 1:
            # A colour frame: the reader returns its components as one more image axis than its spacing has.
            check_one_component(case.files[0], data.shape[-1])
        for channel, path in enumerate(case.files):
            check_image_content(path, data[channel])  # truncated files and NaN, which the reader lets through
        # e.g. a 4D NIfTI, whose last axis the reader takes for channels
        if data.shape[0] != self.model.num_input_channels:
            raise InputError(
                f"{case.files[0]}: the model expects {self.model.num_input_channels} channel(s), the image has "
                f"{data.shape[0]} (shape {data.shape})"
            )
        if self.model.plans_manager.transpose_forward[0] != 0 and data.shape[1] > 1:
            raise InputError(f"{case.files[0]}: multi-frame input with a transposed 2d plan is not supported")
        return self.prepare(data, list(properties["spacing"])), properties


def find_cases(
    input_path: str | Path,
    file_ending: str,
    num_channels: int = 1,
    readable_endings: Iterable[str] = (".nii.gz", ".nii", ".mha", ".nrrd"),
) -> list[Case]:
    """The cases of INPUT: a folder of nnU-Net images (`<case>_0000<ending>`, channels `_0001`...) or of frame files,
    still frame images (PNG, JPEG, ...; named `<case><suffix>`) or videos, a single image file, or a single cine loop
    (2D+t image or video)."""
    input_path = Path(input_path)
    if not input_path.exists():
        raise FileNotFoundError(f"input not found: {input_path}")
    endings = sorted({file_ending, *readable_endings}, key=len, reverse=True)

    def split(path: Path) -> tuple[str, str] | None:
        ending = next((e for e in endings if path.name.endswith(e)), None)
        return (path.name[: -len(ending)], ending) if ending else None

    if input_path.is_file():
        files = [input_path]
    else:
        entries = sorted(p for p in input_path.iterdir() if not p.name.startswith("."))
        broken = [p for p in entries if p.is_symlink() and not p.exists()]
        if broken:
            raise InputError(f"missing file: {broken[0]} is a link to {os.readlink(broken[0])}, which does not exist")
        files = [p for p in entries if p.is_file()]
    videos: list[Case] = []
    channels: dict[str, dict[int, Path]] = {}
    for path in files:
        if clip_kind(path) in ("video", "dicom") or is_still_image(path):
            # DICOM from scanners often has no suffix, or a UID with dots for a name: only a known suffix goes.
            suffix = next((s for s in CLIP_SUFFIXES + STILL_IMAGE_SUFFIXES if path.name.lower().endswith(s)), "")
            videos.append(Case(path.name[: len(path.name) - len(suffix)], [path], video=True))
            continue
        parts = split(path)
        if parts is None:
            if input_path.is_file():
                raise InputError(
                    f"{path}: not an image this model's reader handles ({', '.join(endings)}) "
                    f"nor a still frame ({', '.join(STILL_IMAGE_SUFFIXES)}) nor a video or DICOM clip "
                    f"({', '.join(VIDEO_SUFFIXES + DICOM_SUFFIXES)}, or DICM marker)"
                )
            continue
        match = _CHANNEL_SUFFIX.search(parts[0])
        name = parts[0][: match.start()] if match else parts[0]
        channel = int(match.group(1)) if match else 0
        if channel in channels.setdefault(name, {}):
            raise InputError(
                f"case {name!r}: {channels[name][channel]} and {path} are both its channel _{channel:04d} (a file "
                "without a channel suffix is channel _0000); rename one"
            )
        channels[name][channel] = path
    result = []
    for name, found in channels.items():
        if sorted(found) != list(range(num_channels)):
            raise InputError(
                f"case {name!r}: the model needs channels {list(range(num_channels))} (files "
                f"<case>_0000...), found {[str(p) for _, p in sorted(found.items())]}"
            )
        result.append(Case(name, [found[c] for c in range(num_channels)]))
    clashes = sorted({v.name for v in videos} & set(channels))
    if clashes:
        raise InputError(f"videos and images share the case name(s) {clashes} in {input_path}")
    names = [v.name for v in videos]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # each case writes <name>.nii.gz: one would replace the other
        files = [str(v.files[0]) for v in videos if v.name == repeated[0]]
        raise InputError(f"{' and '.join(files)} share the case name {repeated[0]!r}: rename one")
    result += videos
    if not result:
        raise InputError(
            f"no images ({', '.join(endings)}), still frames ({', '.join(STILL_IMAGE_SUFFIXES)}) or videos in "
            f"{input_path}"
        )
    return result


def first_max_channel(logits: np.ndarray) -> np.ndarray:
    """Argmax over the channels of (B, C, H, W) logits as uint8 labels, the first maximum winning ties (as torch's
    and numpy's argmax): one pass per channel over contiguous planes, several times faster on a CPU than an argmax
    along a strided axis, which matters for every frame of a video."""
    best = logits[:, 0].copy()
    labels = np.zeros(best.shape, dtype=np.uint8)
    for channel in range(1, logits.shape[1]):
        greater = logits[:, channel] > best
        labels[greater] = channel
        np.maximum(best, logits[:, channel], out=best)
    return labels


def _at_input_size(frames: list[Frame], masks: list[np.ndarray]) -> list[np.ndarray]:
    """Masks of frames that were brought to the model's input convention, mapped back to the input's size."""
    return [frame.placement.to_input(mask) if frame.placement else mask for frame, mask in zip(frames, masks)]


def predict_cases(
    predictor: FastPredictor, cases: list[Case], output_folder: Path, progress: Callable[[str], None] | None = print
) -> Timing:
    """Segment `cases` and write `<case><file_ending>` masks (with the input's geometry) into `output_folder`."""
    file_ending = predictor.model.dataset_json["file_ending"]
    timing = Timing(cases=len(cases))
    start = time.perf_counter()
    predictor.network_seconds = 0.0
    read_seconds = [0.0]

    def read_all():
        for case in cases:
            t = time.perf_counter()
            frames, properties = predictor.read_case(case)
            read_seconds[0] += time.perf_counter() - t
            yield case, frames, properties

    pending: list[tuple[Case, list[Frame], dict | None]] = []
    writes: list[Future] = []
    done_frames, last_report = 0, start

    with ThreadPoolExecutor(max_workers=1) as writer:

        def flush():
            nonlocal done_frames, last_report
            frames = [f for _, case_frames, _ in pending for f in case_frames]
            segmentations = iter(predictor.segment(frames))
            for case, case_frames, properties in pending:
                masks = [next(segmentations) for _ in case_frames]
                writes.append(
                    writer.submit(
                        _write_case, predictor, case, masks, properties, output_folder / f"{case.name}{file_ending}"
                    )
                )
            done_frames += len(frames)
            pending.clear()
            if progress and time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                progress(f"  {done_frames} frames segmented ({last_report - start:.1f} s)")

        for item in prefetched(read_all(), depth=4):
            pending.append(item)
            timing.frames += len(item[1])
            if sum(len(f) for _, f, _ in pending) >= predictor.batch_size:
                flush()
        if pending:
            flush()
        for future in writes:
            future.result()
    timing.total = time.perf_counter() - start
    timing.network = predictor.network_seconds
    timing.stages = {"read_preprocess": read_seconds[0]}
    return timing


def _write_case(predictor: FastPredictor, case: Case, masks: list[np.ndarray], properties: dict, path: Path) -> None:
    if CLIP_SPACING in properties:  # a video, DICOM clip or still image: its pixel size where it has one, else 1
        import SimpleITK as sitk

        volume = np.stack([m.reshape(m.shape[-2:]) for m in masks]).astype(np.uint8)
        image = sitk.GetImageFromArray(volume)
        if properties[CLIP_SPACING] is not None:
            row, col = properties[CLIP_SPACING]
            image.SetSpacing((float(col), float(row), 1.0))
        sitk.WriteImage(image, str(path), True)
        return
    segmentation = masks[0] if len(masks) == 1 else np.concatenate(masks, axis=0)
    predictor.reader_writer.write_seg(segmentation, str(path), properties)


def predict(
    model_folder: str | Path,
    input_path: str | Path,
    output_folder: str | Path,
    settings: PredictorSettings = PredictorSettings(),
    folds: list[int | str] | None = None,
    checkpoint_name: str = DEFAULT_CHECKPOINT,
    overwrite: bool = False,
    verbose: bool = True,
) -> dict:
    """`lightecho predict`: segment INPUT (frames folder, frame file, cine loop or video) into OUTPUT with a trained
    nnU-Net model folder; returns (and writes as prediction_summary.json) settings and timings."""
    log = print if verbose else None
    output_folder = Path(output_folder)
    # What predict writes: how a prediction folder of a version before the marker file is recognised.
    layout = OutputLayout("prediction_summary.json", ("*.nii.gz", "dataset.json", "plans.json"))
    target = check_output_dir(output_folder, overwrite, inputs=[input_path, model_folder], layout=layout)
    setup_start = time.perf_counter()
    model = load_trained_model(model_folder, folds, checkpoint_name)
    cases = find_cases(input_path, model.dataset_json["file_ending"], model.num_input_channels)
    predictor = FastPredictor(model, settings, log)
    setup = time.perf_counter() - setup_start
    if log:
        log(f"[lightecho predict] {len(cases)} case(s) from {input_path}; {predictor.describe()}")
    with staged_output(target) as staging:
        timing = predict_cases(predictor, cases, staging, log)
        timing.setup = setup
        shutil.copy(model.folder / "dataset.json", staging / "dataset.json")
        shutil.copy(model.folder / "plans.json", staging / "plans.json")
        summary = {
            "model_folder": str(model.folder),
            "trainer": model.trainer_name,
            "folds": model.folds,
            "input": str(input_path),
            "device": str(predictor.device),
            "backend": predictor.backend,
            "precision": predictor.precision,
            "batch_size": predictor.batch_size,
            "cca": settings.cca,
            "mirroring": predictor.mirror_axes is not None,
            "engine": predictor.describe(),
            "timing": timing.as_dict(),
        }
        (staging / "prediction_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if log:
        t = timing.as_dict()
        log(
            f"[lightecho predict] {t['frames']} frames in {t['seconds']} s ({t['ms_per_frame']} ms/frame, network "
            f"{t['network_ms_per_frame']} ms/frame; setup {t['setup_seconds']} s) -> {output_folder}"
        )
    return summary
