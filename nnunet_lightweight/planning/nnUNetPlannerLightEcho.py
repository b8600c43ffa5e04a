"""nnUNetPlannerLightEcho: writes nnUNetPlansLightEcho, the LightEcho network on nnU-Net's default data."""

from typing import Union

from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

from nnunet_lightweight.core.presets import load_preset
from nnunet_lightweight.planning.configuration import lightecho_configuration, preset_architecture

DEFAULT_PLANS = "nnUNetPlans"
LIGHTECHO_PLANS = "nnUNetPlansLightEcho"


class nnUNetPlannerLightEcho(ExperimentPlanner):
    """Plans like nnU-Net's default planner, then swaps in a LightEcho preset (network, batch size, patch)."""

    def __init__(
        self,
        dataset_name_or_id: Union[str, int],
        gpu_memory_target_in_gb: float = 8,
        preprocessor_name: str = "DefaultPreprocessor",
        plans_name: str = LIGHTECHO_PLANS,
        overwrite_target_spacing=None,
        suppress_transpose: bool = False,
        preset: str = "lightecho",
    ):
        super().__init__(
            dataset_name_or_id,
            gpu_memory_target_in_gb,
            preprocessor_name,
            plans_name,
            overwrite_target_spacing,
            suppress_transpose,
        )
        self.preset = load_preset(preset)

    def generate_data_identifier(self, configuration_name: str) -> str:
        # Same identifier as the default plans: training reads the default preprocessed data, no second copy.
        return f"{DEFAULT_PLANS}_{configuration_name}"

    def get_plans_for_configuration(self, *args, **kwargs) -> dict:
        plan = super().get_plans_for_configuration(*args, **kwargs)
        return lightecho_configuration(plan, preset_architecture(self.preset), self.preset["batch_size"])
