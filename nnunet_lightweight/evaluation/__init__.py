"""Evaluation of nnU-Net prediction folders: metrics, anatomical plausibility, post-processing, model comparison.

Heavy plotting imports happen inside the functions that draw; importing this package stays cheap.
"""

from nnunet_lightweight.evaluation.anatomy import PlausibilityTolerances, check_plausibility, criteria_names
from nnunet_lightweight.evaluation.compare import compare_models, wilcoxon_paired
from nnunet_lightweight.evaluation.evaluate import Evaluation, evaluate_cases, evaluate_folder, summarize
from nnunet_lightweight.evaluation.io import (
    DEFAULT_LABELS,
    load_evaluation_metadata,
    parse_case_id,
    parse_labels,
    read_segmentation,
)
from nnunet_lightweight.evaluation.metrics import dice_score, segmentation_metrics, structure_metrics, surface_distances
from nnunet_lightweight.evaluation.overlays import save_overlays
from nnunet_lightweight.evaluation.postprocessing import (
    keep_largest_component_per_label,
    morphological_filter,
    postprocess,
    postprocess_segmentation,
)

__all__ = [
    "DEFAULT_LABELS",
    "Evaluation",
    "PlausibilityTolerances",
    "check_plausibility",
    "compare_models",
    "criteria_names",
    "dice_score",
    "evaluate_cases",
    "evaluate_folder",
    "keep_largest_component_per_label",
    "load_evaluation_metadata",
    "morphological_filter",
    "parse_case_id",
    "parse_labels",
    "postprocess",
    "postprocess_segmentation",
    "read_segmentation",
    "save_overlays",
    "segmentation_metrics",
    "structure_metrics",
    "summarize",
    "surface_distances",
    "wilcoxon_paired",
]
