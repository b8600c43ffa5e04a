"""nnU-Net trainers of this package: LightEcho, its ablation variants and published comparison models."""

import importlib
import pkgutil

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


def discover_trainers() -> dict[str, type[nnUNetTrainer]]:
    """Import every module below this package and return its nnUNetTrainer subclasses by name."""
    found: dict[str, type[nnUNetTrainer]] = {}
    for info in pkgutil.walk_packages(__path__, prefix=__name__ + "."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if isinstance(obj, type) and issubclass(obj, nnUNetTrainer) and obj.__module__ == module.__name__:
                found[name] = obj
    return dict(sorted(found.items()))
