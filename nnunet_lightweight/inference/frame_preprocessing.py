"""nnU-Net's DefaultPreprocessor for single frames at the model's spacing, without the work that changes nothing.

For an inference frame (no segmentation given) that is one 2D slice already at the plans' spacing,
`DefaultPreprocessor.run_case_npy` spends most of its time (0.8 of 1.2 ms for a 224x224 frame) in
`crop_to_nonzero`'s hole filling of the nonzero mask, which in nnU-Net's (1, rows, cols) layout of a 2D image can
never fill anything: every pixel touches the array's border along the first axis, so no background pixel is
enclosed (and a filled hole could not move the bounding box either). Its resampling then finds the shape unchanged
and returns the input. `FramePreprocessor.run_case_npy` returns for such frames what nnU-Net's returns, equal to
the bit (tested): the same bounding box from the same nonzero mask with acvl_utils' `get_bbox_from_mask`, the same
crop, the same -1/0 mask of the nonzero region, the plans' normalisation schemes run as nnU-Net's `_normalize` runs
them (it looks each scheme's class up by walking nnU-Net's package, 0.15 ms per frame; here once per
configuration), the same properties. Every other case (a segmentation, several slices, another spacing, a transposed plan, another
resampling function) is nnU-Net's `run_case_npy` itself. It matters where every frame of a video goes through it:
the preprocessing shares the CPU with the network.
"""

from __future__ import annotations

from os.path import join

import nnunetv2
import numpy as np
from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice, get_bbox_from_mask
from nnunetv2.preprocessing.normalization.default_normalization_schemes import ImageNormalization
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

# The resampling function of nnU-Net's plans that returns its input unchanged where the shape does not change.
_DEFAULT_RESAMPLING = "resample_data_or_seg_to_shape"
# What crop_to_nonzero writes outside the nonzero region of the mask it returns.
_OUTSIDE_NONZERO = np.int8(-1)


class FramePreprocessor(DefaultPreprocessor):
    """`DefaultPreprocessor` with a shortcut for single 2D frames at the plans' spacing (module docstring)."""

    def __init__(self, verbose: bool = True):
        super().__init__(verbose)
        self._normalizers: tuple[ConfigurationManager, list[ImageNormalization]] | None = None

    def _plan_normalizers(
        self, plans_manager: PlansManager, configuration_manager: ConfigurationManager
    ) -> list[ImageNormalization]:
        """The plans' normaliser of each channel, as nnU-Net's `_normalize` builds them, made once per
        configuration (nnU-Net's normalisers keep nothing from one image to the next)."""
        if self._normalizers is None or self._normalizers[0] is not configuration_manager:
            intensities = plans_manager.foreground_intensity_properties_per_channel
            normalizers = []
            for channel, scheme in enumerate(configuration_manager.normalization_schemes):
                normalizer_class = recursive_find_python_class(
                    join(nnunetv2.__path__[0], "preprocessing", "normalization"),
                    scheme,
                    "nnunetv2.preprocessing.normalization",
                )
                if normalizer_class is None:
                    return []  # nnU-Net's own `_normalize` raises its error
                normalizers.append(
                    normalizer_class(
                        use_mask_for_norm=configuration_manager.use_mask_for_norm[channel],
                        intensityproperties=intensities[str(channel)],
                    )
                )
            self._normalizers = (configuration_manager, normalizers)
        return self._normalizers[1]

    def run_case_npy(
        self,
        data: np.ndarray,
        seg: np.ndarray | None,
        properties: dict,
        plans_manager: PlansManager,
        configuration_manager: ConfigurationManager,
        dataset_json: dict | str,
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        if (
            seg is not None
            or data.ndim != 4
            or data.shape[1] != 1
            or list(plans_manager.transpose_forward) != [0, 1, 2]
            or configuration_manager.configuration.get("resampling_fn_data") != _DEFAULT_RESAMPLING
        ):
            return super().run_case_npy(data, seg, properties, plans_manager, configuration_manager, dataset_json)
        normalizers = self._plan_normalizers(plans_manager, configuration_manager)
        if len(normalizers) != data.shape[0]:
            return super().run_case_npy(data, seg, properties, plans_manager, configuration_manager, dataset_json)
        image = data.astype(np.float32)  # a copy, as nnU-Net's: the input stays as it is
        nonzero = image[0] != 0
        for channel in image[1:]:
            nonzero |= channel != 0
        bbox = get_bbox_from_mask(nonzero)
        slicer = bounding_box_to_slice(bbox)
        cropped_shape = nonzero[slicer].shape
        spacing = list(properties["spacing"])
        if list(compute_new_shape(cropped_shape, spacing, [spacing[0], *configuration_manager.spacing])) != list(
            cropped_shape
        ):
            return super().run_case_npy(data, seg, properties, plans_manager, configuration_manager, dataset_json)
        properties["shape_before_cropping"] = image.shape[1:]
        properties["bbox_used_for_cropping"] = bbox
        properties["shape_after_cropping_and_before_resampling"] = cropped_shape
        seg = np.where(nonzero[slicer][None], np.int8(0), _OUTSIDE_NONZERO)
        image = image[(slice(None), *slicer)]
        for channel, normalizer in enumerate(normalizers):
            image[channel] = normalizer.run(image[channel], seg[0])
        return image, seg, properties
