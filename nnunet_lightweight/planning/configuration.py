"""The one place that turns an nnU-Net plans configuration into a LightEcho configuration."""

import math
from copy import deepcopy

import numpy as np

ARCHITECTURE_KEYS = ("network_class_name", "arch_kwargs", "_kw_requires_import")


def preset_architecture(preset: dict) -> dict:
    """The nnU-Net `architecture` block of a preset (drops the preset's description and training hints)."""
    return {key: deepcopy(preset[key]) for key in ARCHITECTURE_KEYS}


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
    divisor = np.prod(architecture["arch_kwargs"]["strides"], axis=0)
    configuration["patch_size"] = [int(math.ceil(s / d) * d) for s, d in zip(median_size, divisor)]
    return configuration
