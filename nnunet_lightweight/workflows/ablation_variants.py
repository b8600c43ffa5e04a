"""The ablation study's variants (paper Sec. II-C, Table VI): the trainers of each step, the incremental ladder, the
nnU-Net-side ablations, `--variants` groups and parameter counts."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.json_files import read_json_object
from nnunet_lightweight.network import count_parameters
from nnunet_lightweight.planning.configuration import trainer_architecture
from nnunet_lightweight.planning.plan import dataset_name
from nnunet_lightweight.training import discover_trainers
from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho

CONFIGURATION = "2d"
PLANS = "nnUNetPlans"
CCA = "cca"
FINAL_TRAINER = "nnUNetTrainerLightEcho"
NNUNET_BASELINE = "nnUNetTrainer_100epochs"
NNUNET_STEP = "nnU-Net"
POSTPROCESSING_STEP = "Postprocessing"
# Table VI's rows in order, then what the paper reports outside it; variants/<kind>/ maps onto them.
STEPS = (
    "Baseline",
    "Normalization",
    "Activation",
    POSTPROCESSING_STEP,
    "Data augmentation",
    "Loss function",
    "Deep supervision",
    "LR schedule",
    "Size",
    "Architecture",
    NNUNET_STEP,
)
KIND_STEPS = {
    "baseline": "Baseline",
    "normalization": "Normalization",
    "activation": "Activation",
    "augmentation": "Data augmentation",
    "loss": "Loss function",
    "deep_supervision": "Deep supervision",
    "lr_schedule": "LR schedule",
    "network_size": "Size",
    "network_architecture": "Architecture",
    "nnunet_default": NNUNET_STEP,
}
# Table VI: each step adds the component the paper kept; Size and Architecture are alternatives to the final model.
LADDER = (
    "nnUNetTrainerLightEcho_UNet1Baseline",
    "nnUNetTrainerLightEcho_UNet1_BN",
    "nnUNetTrainerLightEcho_UNet1_BN_Mish",
    CCA,
    "nnUNetTrainerLightEcho_UNet1_BN_Mish_Affine",
    "nnUNetTrainerLightEcho_UNet1_BN_Mish_Affine_DiceCE",
    FINAL_TRAINER,
    "nnUNetTrainerLightEcho_UNet0",
    "nnUNetTrainerLightEcho_UNet2",
    "nnUNetTrainerLightEcho_UNet3",
    "nnUNetTrainerLightEcho_Residual",
    "nnUNetTrainerLightEcho_TranspConv",
)
# Sec. III-B: nnU-Net (100 epochs, as in the paper) and what it loses without augmentation / deep supervision.
NNUNET_ABLATIONS = (
    NNUNET_BASELINE,
    "nnUNetTrainer_100epochs_NoDA",
    "nnUNetTrainer_100epochs_NoDeepSupervision",
    "nnUNetTrainer_100epochs_NoDA_NoDeepSupervision",
)
VARIANTS_PACKAGE = "nnunet_lightweight.training.variants"


@lru_cache(maxsize=None)
def _trainers() -> dict[str, type]:
    from nnunetv2.training.nnUNetTrainer.variants.training_length.nnUNetTrainer_Xepochs import nnUNetTrainer_100epochs

    found = {name: cls for name, cls in discover_trainers().items() if cls.__module__.startswith(VARIANTS_PACKAGE)}
    return {**found, FINAL_TRAINER: nnUNetTrainerLightEcho, NNUNET_BASELINE: nnUNetTrainer_100epochs}


def ablation_variants() -> dict[str, type]:
    """Every trainer of the study by name, in table order: the variants package, LightEcho and nnU-Net's baseline."""
    order = {name: index for index, name in enumerate(LADDER + NNUNET_ABLATIONS)}
    ranked = sorted(_trainers(), key=lambda name: (STEPS.index(variant_step(name)), order.get(name, len(order)), name))
    return {name: _trainers()[name] for name in ranked}


def variant_step(name: str) -> str:
    """The Table VI step a variant (or the `cca` item) belongs to."""
    if name == CCA:
        return POSTPROCESSING_STEP
    if name == FINAL_TRAINER:
        return "Deep supervision"
    if name == NNUNET_BASELINE:
        return NNUNET_STEP
    module = _trainers()[name].__module__
    return KIND_STEPS[module[len(VARIANTS_PACKAGE) + 1 :].split(".")[0]]


def variant_groups() -> dict[str, list[str]]:
    """Named lists for `--variants`: the Table VI ladder, the nnU-Net ablations, and everything in table order."""
    everything = list(ablation_variants())
    cca_position = max(i for i, name in enumerate(everything) if variant_step(name) == "Activation") + 1
    return {
        "ladder": list(LADDER),
        "nnunet": list(NNUNET_ABLATIONS),
        "all": everything[:cca_position] + [CCA] + everything[cca_position:],
    }


def expand_variants(items: list[str] | None) -> list[str]:
    """Trainer names, `cca` and group names (ladder, nnunet, all) expanded into the list of rows to run."""
    groups = variant_groups()
    expanded: list[str] = []
    for item in items or ["ladder"]:
        expanded += groups.get(item, [item])
    unknown = [name for name in expanded if name != CCA and name not in ablation_variants()]
    if unknown:
        raise InputError(
            f"unknown ablation variant(s): {', '.join(unknown)} (see `lightecho ablation --list`; "
            f"groups: {', '.join(groups)})"
        )
    if expanded and expanded[0] == CCA:
        raise InputError("`cca` post-processes the current best model, so a trained variant must come before it")
    return expanded


def count_variant_parameters(trainer: str, plans: dict | None = None, dataset_json: dict | None = None) -> int:
    """Trainable parameters of a variant's network for a dataset's plans and dataset.json.

    Without them: 1 input channel and 4 classes (CAMUS); nnU-Net's own trainers then get nnU-Net's default 2d
    architecture for 256x256 frames (the official CAMUS size), recorded in plans/nnunet_default_2d_256.json.
    """
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    if trainer not in _trainers():
        raise InputError(f"unknown ablation variant {trainer!r} (see `lightecho ablation --list`)")
    cls = _trainers()[trainer]
    if plans is not None and not issubclass(cls, nnUNetTrainerLightEcho):
        architecture = plans["configurations"][CONFIGURATION]["architecture"]
    else:
        architecture = trainer_architecture(cls, 256)
    channels, classes = (1, 4) if dataset_json is None else _channels_and_classes(dataset_json)
    with torch.device("meta"):  # counting needs no memory and no weight initialisation
        network = get_network_from_plans(
            architecture["network_class_name"],
            architecture["arch_kwargs"],
            architecture["_kw_requires_import"],
            channels,
            classes,
            allow_init=False,
        )
    return count_parameters(network)


def list_variants(dataset: str | int | None = None) -> list[tuple[str, int]]:
    """(trainer name, parameter count) of every variant; for a dataset's plans and classes when one is given."""
    plans = dataset_json = None
    if dataset is not None:
        preprocessed = preprocessed_folder(dataset)
        plans = read_json_object(preprocessed / f"{PLANS}.json", "nnU-Net plans")
        dataset_json = read_json_object(preprocessed / "dataset.json", "dataset.json")
    return [(name, count_variant_parameters(name, plans, dataset_json)) for name in ablation_variants()]


def preprocessed_folder(dataset: str | int) -> Path:
    """The dataset's nnU-Net preprocessed folder, which must hold the default plans."""
    from nnunetv2.paths import nnUNet_preprocessed

    if not nnUNet_preprocessed.is_set():
        raise InputError("environment variable nnUNet_preprocessed is not set")
    folder = Path(nnUNet_preprocessed.get()) / dataset_name(dataset)
    if not (folder / f"{PLANS}.json").is_file():
        raise InputError(
            f"{folder / f'{PLANS}.json'} not found: plan and preprocess the dataset first (lightecho plan -d {dataset})"
        )
    return folder


def _channels_and_classes(dataset_json: dict) -> tuple[int, int]:
    channels = dataset_json.get("channel_names", dataset_json.get("modality"))
    return len(channels), len([name for name in dataset_json["labels"] if name != "ignore"])
