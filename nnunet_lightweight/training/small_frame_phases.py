"""Trainer mixin: the first epochs train on smaller frames (resized down, or cropped), the rest on whole frames.

A training step's arithmetic grows with the pixel count, so an epoch of 128x128 frames costs about a third of one
at 224x224. Two ways to get there: `resize` shows the whole frame at a lower resolution (progressive resizing;
structures appear smaller than at inference), `crop` shows a random window at full resolution (as nnU-Net itself
trains on patches smaller than the image; structures keep their inference-time size, the window loses context).
The last epochs train on whole frames either way. Augmentation still runs on whole frames (nnU-Net's loader and
transforms are unchanged); the augmented batch is resized or cropped in the training step. Validation and
inference always see whole frames. The phase follows `current_epoch`, so `--c` resumes into the right one.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F


def _map_batch(batch: dict, image: Callable, labels: Callable) -> dict:
    """A copy of nnU-Net's batch {'data', 'target', ...} with `image` applied to its images and `labels` to its label
    maps (one tensor, or a list with deep supervision)."""
    mapped = dict(batch)
    mapped["data"] = image(batch["data"])
    target = batch["target"]
    mapped["target"] = [labels(t) for t in target] if isinstance(target, list) else labels(target)
    return mapped


def resize_batch(batch: dict, size: int) -> dict:
    """`batch` with image and label maps resized to `size` x `size`: the image with antialiased bilinear
    interpolation, the labels with nearest neighbours."""
    return _map_batch(
        batch,
        lambda data: F.interpolate(data, size=(size, size), mode="bilinear", antialias=True, align_corners=False),
        lambda target: F.interpolate(target.float(), size=(size, size), mode="nearest-exact").to(target.dtype),
    )


def crop_batch(batch: dict, size: int) -> dict:
    """`batch` cut to a `size` x `size` window per frame, at a random position (torch's global generator, which
    the trainer seeds), the same for the image and every label map of that frame."""
    rows, cols = batch["data"].shape[-2:]
    tops = torch.randint(0, rows - size + 1, (len(batch["data"]),)).tolist()
    lefts = torch.randint(0, cols - size + 1, (len(batch["data"]),)).tolist()

    def crop(tensor: torch.Tensor) -> torch.Tensor:
        return torch.stack([t[..., y : y + size, x : x + size] for t, y, x in zip(tensor, tops, lefts)])

    return _map_batch(batch, crop, crop)


SMALL_FRAME_BATCHES = {"resize": resize_batch, "crop": crop_batch}


class SmallFramePhases:
    """nnUNetTrainer mixin: the first epochs train on the frame sizes of `small_frame_phases`, the rest on whole
    frames.

    `small_frame_phases` is ((epochs, size), ...) in training order, e.g. ((3, 128), (2, 160)): epochs 0-2 at
    128x128, epochs 3-4 at 160x160, then the configuration's patch size. `small_frame_mode` is "resize" or "crop".
    Each size must be divisible by the network's total stride (32 for LightEcho's five 2x2 pools).
    """

    small_frame_phases: tuple[tuple[int, int], ...] = ()
    small_frame_mode: str = "resize"

    def training_size(self, epoch: int) -> int | None:
        """The square frame size epoch `epoch` trains at, None for whole frames."""
        end = 0
        for epochs, size in self.small_frame_phases:
            end += epochs
            if epoch < end:
                return size
        return None

    def on_train_start(self):
        if self.small_frame_mode not in SMALL_FRAME_BATCHES:
            raise ValueError(
                f"small_frame_mode must be one of {tuple(SMALL_FRAME_BATCHES)}, not {self.small_frame_mode!r}"
            )
        super().on_train_start()

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        size = self.training_size(self.current_epoch)
        if size is not None:
            self.print_to_log_file(f"Training on {size}x{size} frames ({self.small_frame_mode})")

    def train_step(self, batch: dict) -> dict:
        size = self.training_size(self.current_epoch)
        if size is not None:
            batch = SMALL_FRAME_BATCHES[self.small_frame_mode](batch, size)
        return super().train_step(batch)
