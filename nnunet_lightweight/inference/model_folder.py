"""A trained nnU-Net model folder (plans.json, dataset.json, fold_X/checkpoint) loaded the way nnU-Net loads it.

The network is rebuilt by the checkpoint's trainer class with `build_network_architecture(plans_manager,
configuration_manager, ...)`, exactly as `nnUNetPredictor.initialize_from_trained_model_folder` does, so any
trainer variant (ours, nnU-Net's, or one found through nnUNet_extTrainer) gives the network it was trained with.

The one start-up shortcut: the trainers this package defines keep nnUNetTrainer's `build_network_architecture`
(the network comes from the plans), so for them the network is built by the same `get_network_from_plans` call
without importing the trainer classes. Importing any trainer imports nnUNetTrainer, its logger and their
dependencies (torch._dynamo, seaborn, scipy.stats, pandas): seconds at every `lightecho predict`.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.label_handling.label_handling import LabelManager, determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.json_files import read_json_object

if TYPE_CHECKING:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

DEFAULT_CHECKPOINT = "checkpoint_final.pth"


@dataclass
class TrainedModel:
    """Everything needed to predict with a trained model: network (eval mode, CPU), per-fold weights, plans."""

    folder: Path
    trainer_name: str
    configuration_name: str
    folds: list[int | str]
    network: nn.Module
    fold_weights: list[dict[str, torch.Tensor]]
    plans_manager: PlansManager
    configuration_manager: ConfigurationManager
    dataset_json: dict
    label_manager: LabelManager
    allowed_mirroring_axes: tuple[int, ...] | None = None
    num_input_channels: int = field(default=1)

    @property
    def num_classes(self) -> int:
        """Number of network outputs (segmentation heads)."""
        return self.label_manager.num_segmentation_heads

    @property
    def patch_size(self) -> tuple[int, ...]:
        """The configuration's patch size (rows, cols for 2d)."""
        return tuple(int(s) for s in self.configuration_manager.patch_size)


_TRAINING_SOURCES = Path(__file__).resolve().parent.parent / "training"
_TRAINER_CLASS = re.compile(r"^class (nnUNetTrainer\w*)\(", re.MULTILINE)


@functools.cache
def package_trainer_names() -> frozenset[str]:
    """The trainers this package defines (nnU-Net's naming: `nnUNetTrainer*` classes), read from the sources of
    nnunet_lightweight/training without importing them; `test_trainer_lookup_shortcut_agrees_with_nnunet` checks
    it against the classes `discover_trainers` imports."""
    return frozenset(
        name for path in _TRAINING_SOURCES.rglob("*.py") for name in _TRAINER_CLASS.findall(path.read_text())
    )


def find_trainer_class(trainer_name: str) -> type[nnUNetTrainer]:
    """The trainer class nnU-Net's own lookup (`recursive_find_trainer_class_by_name`) finds for `trainer_name`.

    A trainer of this package is taken from `discover_trainers` (the classes nnU-Net finds through the
    nnUNet_extTrainer folder this package registers), without nnU-Net's import of every trainer module of its own
    tree; `test_trainer_lookup_shortcut_agrees_with_nnunet` checks that both give the same class.
    """
    # Imported here, not at the top: importing the trainers costs seconds that `load_trained_model` never pays.
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_lightweight.training import discover_trainers

    if trainer_name in package_trainer_names():
        return discover_trainers()[trainer_name]

    try:
        return recursive_find_trainer_class_by_name(trainer_name)
    except RuntimeError as error:
        raise InputError(f"trainer class {trainer_name!r} not found: {error}") from None


def available_folds(model_folder: Path, checkpoint_name: str = DEFAULT_CHECKPOINT) -> list[int]:
    """Folds of `model_folder` that have `checkpoint_name`, by nnU-Net's rule
    (`nnUNetPredictor.auto_detect_available_folds`): fold_X folders only, never fold_all, which must be asked for
    (`-f all`). Restated rather than called because importing nnU-Net's predictor imports torch._dynamo, seconds at
    every start; `test_fold_detection_agrees_with_nnunet` checks the two agree."""
    return sorted(
        int(p.name[5:])
        for p in Path(model_folder).glob("fold_*")
        if p.name[5:].isdigit() and (p / checkpoint_name).is_file()
    )


def _model_file(model_folder: Path, name: str) -> dict:
    """plans.json or dataset.json of a model folder; a missing one means the folder is not a model folder."""
    if not (model_folder / name).is_file():
        raise InputError(f"{model_folder} is not a trained nnU-Net model folder: {name} is missing")
    return read_json_object(model_folder / name, "model file")


def _parse_fold(fold: int | str) -> int | str:
    if isinstance(fold, str) and fold != "all":
        if not fold.isdigit():
            raise InputError(f"fold must be an integer or 'all', got {fold!r}")
        return int(fold)
    return fold


def weights_fingerprint(weights: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict (a fold's weights): names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_trained_model(
    model_folder: str | Path, folds: list[int | str] | None = None, checkpoint_name: str = DEFAULT_CHECKPOINT
) -> TrainedModel:
    """Load an nnU-Net results folder (`<trainer>__<plans>__<configuration>`); all available folds by default."""
    model_folder = Path(model_folder)
    if not model_folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {model_folder}")
    plans = _model_file(model_folder, "plans.json")
    dataset_json = _model_file(model_folder, "dataset.json")
    missing = [key for key in ("labels", "file_ending") if key not in dataset_json]
    if "channel_names" not in dataset_json and "modality" not in dataset_json:
        missing.append("channel_names")
    if missing:
        raise InputError(
            f"{model_folder / 'dataset.json'} lacks {', '.join(missing)}: not nnU-Net's dataset.json of this model"
        )
    folds = [_parse_fold(f) for f in folds] if folds else available_folds(model_folder, checkpoint_name)
    repeated = sorted({str(fold) for fold in folds if folds.count(fold) > 1})
    if repeated:
        raise InputError(f"fold(s) {', '.join(repeated)} given more than once (each fold is ensembled once)")
    if not folds:
        hint = " (a model trained on all cases: ask for fold all)" if (model_folder / "fold_all").is_dir() else ""
        raise InputError(f"no fold_X/{checkpoint_name} in {model_folder}{hint}")
    checkpoints = []
    for fold in folds:
        path = model_folder / f"fold_{fold}" / checkpoint_name
        if not path.is_file():
            raise InputError(f"missing checkpoint {path}")
        try:
            checkpoints.append(torch.load(path, map_location="cpu", weights_only=False))
        except Exception as error:  # torch raises many kinds for truncated or foreign files
            raise InputError(f"cannot load checkpoint {path}: {error}") from None
        for key in ("network_weights", "trainer_name", "init_args"):
            if key not in checkpoints[-1]:
                raise InputError(f"{path} is not an nnU-Net checkpoint (no {key!r})")
    first = checkpoints[0]
    trainer_name = first["trainer_name"]
    configuration_name = first["init_args"]["configuration"]
    plans_manager = PlansManager(plans)
    if configuration_name not in plans["configurations"]:
        raise InputError(f"{model_folder / 'plans.json'} has no configuration {configuration_name!r}")
    configuration_manager = plans_manager.get_configuration(configuration_name)
    label_manager = plans_manager.get_label_manager(dataset_json)
    num_input_channels = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    if trainer_name in package_trainer_names():
        # nnUNetTrainer.build_network_architecture's own call, which this package's trainers keep (tested).
        network = get_network_from_plans(
            configuration_manager.network_arch_class_name,
            configuration_manager.network_arch_init_kwargs,
            configuration_manager.network_arch_init_kwargs_req_import,
            num_input_channels,
            label_manager.num_segmentation_heads,
            allow_init=True,
            deep_supervision=False,
        )
    else:
        network = find_trainer_class(trainer_name).build_network_architecture(
            plans_manager,
            configuration_manager,
            num_input_channels,
            label_manager.num_segmentation_heads,
            enable_deep_supervision=False,
        )
    weights = [c["network_weights"] for c in checkpoints]
    try:
        network.load_state_dict(weights[0])
    except RuntimeError as error:
        raise InputError(
            f"the checkpoint of fold {folds[0]} does not fit the network of {model_folder}: {error}"
        ) from None
    network.eval()
    return TrainedModel(
        model_folder,
        trainer_name,
        configuration_name,
        folds,
        network,
        weights,
        plans_manager,
        configuration_manager,
        dataset_json,
        label_manager,
        first.get("inference_allowed_mirroring_axes"),
        num_input_channels,
    )
