"""The one place that turns an nnU-Net plans configuration into a LightEcho configuration."""

import math
from copy import deepcopy

import numpy as np

from nnunet_lightweight.core.presets import load_preset

ARCHITECTURE_KEYS = ("network_class_name", "arch_kwargs", "_kw_requires_import")
# Stock nnU-Net's 2d plans, recorded under plans/: for the 224x224 CAMUS copy and the official 256x256 size.
NNUNET_DEFAULT_PRESETS = {224: "nnunet_default_2d_224", 256: "nnunet_default_2d_256"}


def preset_architecture(preset: dict) -> dict:
    """The nnU-Net `architecture` block of a preset (drops the preset's description and training hints)."""
    return {key: deepcopy(preset[key]) for key in ARCHITECTURE_KEYS}


def trainer_architecture(trainer_class: type, nnunet_plan_size: int) -> dict:
    """The architecture `trainer_class` trains when no plans say otherwise: a LightEcho trainer's own; for nnU-Net's
    trainers, its default 2d plan recorded for `nnunet_plan_size` x `nnunet_plan_size` frames (224 or 256)."""
    if hasattr(trainer_class, "architecture"):
        return trainer_class.architecture()
    return preset_architecture(load_preset(NNUNET_DEFAULT_PRESETS[nnunet_plan_size]))


def total_stride(architecture: dict) -> tuple[int, ...]:
    """The network's total downsampling factor per axis: frames must be a multiple of it."""
    return tuple(int(s) for s in np.prod(architecture["arch_kwargs"]["strides"], axis=0))


def lightecho_configuration(configuration: dict, architecture: dict, batch_size: int) -> dict:
    """A copy of `configuration` that runs `architecture` on whole frames with `batch_size`.

    The patch is the median frame size rounded up to the network's total downsampling factor, so every frame
    is seen whole (nnU-Net pads the few larger-than-median ones in sliding-window prediction).
    """
    configuration = deepcopy(configuration)
    configuration["architecture"] = deepcopy(architecture)
    configuration["batch_size"] = int(batch_size)
    median_size = configuration.get("median_image_size_in_voxels")
    if median_size is None:
        median_size = configuration["patch_size"]
    divisor = total_stride(architecture)
    configuration["patch_size"] = [int(math.ceil(s / d) * d) for s, d in zip(median_size, divisor)]
    return configuration
