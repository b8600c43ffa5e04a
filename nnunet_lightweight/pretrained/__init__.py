"""The LightEcho model shipped inside the package, laid out like an nnU-Net results folder, and its export.

`Dataset500_CAMUS/nnUNetTrainerLightEcho_CPU1h_Batch8__nnUNetPlans__2d/` below this folder is a regular nnU-Net
model folder (plans.json, dataset.json, fold_0/checkpoint_final.pth with the network weights only, nnU-Net's
learning curve progress.png and validation summary.json), plus `input_convention.json` and `MODEL_CARD.md`. Stock
`nnUNetv2_predict_from_modelfolder` reads it as it is; `lightecho export-model` zips it in the format of
`nnUNetv2_install_pretrained_model_from_zip`. The weights were trained on CAMUS and inherit its licence,
CC BY-NC-SA 4.0 (non-commercial research use only), unlike the code (Apache-2.0).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.nnunet_paths import environment_variable
from nnunet_lightweight.core.output import check_not_input, check_output_file, follow_umask
from nnunet_lightweight.inference.input_convention import CONVENTION_FILE, InputConvention
from nnunet_lightweight.inference.model_folder import available_folds
from nnunet_lightweight.inference.quantization import INT8_FOLDER

PRETRAINED_RESULTS = Path(__file__).resolve().parent  # an nnUNet_results folder holding the shipped model
SHIPPED_DATASET = "Dataset500_CAMUS"
SHIPPED_TRAINER = "nnUNetTrainerLightEcho_CPU1h_Batch8"
SHIPPED_MODEL = PRETRAINED_RESULTS / SHIPPED_DATASET / f"{SHIPPED_TRAINER}__nnUNetPlans__2d"
MODEL_CARD = "MODEL_CARD.md"
# What this project adds to a model folder beyond nnU-Net's own files.
EXTRA_FILES = (CONVENTION_FILE, MODEL_CARD)
# The checkpoint entries nnU-Net's predictor reads; the optimizer state and logs only serve resuming training.
INFERENCE_CHECKPOINT_KEYS = (
    "network_weights",
    "init_args",
    "trainer_name",
    "inference_allowed_mirroring_axes",
    "current_epoch",
)
# nnU-Net files of a trained model folder that the export needs (progress.png and the validation summary too).
MODEL_FILES = ("plans.json", "dataset.json", "dataset_fingerprint.json")
FOLD_FILES = ("progress.png", "debug.json", "validation/summary.json")


def shipped_model_folder() -> Path:
    """The shipped LightEcho model folder; InputError where this installation has none."""
    if not (SHIPPED_MODEL / "fold_0" / "checkpoint_final.pth").is_file():
        raise InputError(
            f"no shipped model in this installation ({SHIPPED_MODEL} has no fold_0/"
            "checkpoint_final.pth): pass a trained model folder with --model"
        )
    return SHIPPED_MODEL


def package_model(
    results_folder: str | os.PathLike,
    destination: str | os.PathLike,
    convention: InputConvention,
    folds: list[int | str] | None = None,
    model_card: str | os.PathLike | None = None,
) -> Path:
    """Copy a trained nnU-Net model folder to `destination` for shipping: nnU-Net's model files, each fold's
    checkpoint_final.pth reduced to what prediction reads, the input convention and the model card."""
    source, destination = Path(results_folder), Path(destination)
    if destination.exists():
        raise InputError(f"{destination} exists: package into a new folder")
    folds = folds or available_folds(source)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    try:
        copy_prediction_files(source, staging, folds)
        convention.write(staging)
        if model_card is not None:
            shutil.copy2(model_card, staging / MODEL_CARD)
        follow_umask(staging)
        staging.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def copy_prediction_files(source: str | os.PathLike, destination: str | os.PathLike, folds: list[int | str]) -> None:
    """Copy into the folder `destination` what prediction with the model folder `source` reads: nnU-Net's model
    files, each fold's checkpoint_final.pth reduced to `INFERENCE_CHECKPOINT_KEYS` (no optimizer state), its
    learning curve and validation summary, and this project's files (input convention, model card), each where
    present."""
    source, destination = Path(source), Path(destination)
    for name in MODEL_FILES + EXTRA_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, destination / name)
    for fold in folds:
        fold_dir = f"fold_{fold}"
        checkpoint = torch.load(source / fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        (destination / fold_dir / "validation").mkdir(parents=True)
        torch.save(
            {key: checkpoint[key] for key in INFERENCE_CHECKPOINT_KEYS if key in checkpoint},
            destination / fold_dir / "checkpoint_final.pth",
        )
        for name in FOLD_FILES:
            if (source / fold_dir / name).is_file():
                shutil.copy2(source / fold_dir / name, destination / fold_dir / name)


def export_model(
    output_zip: str | os.PathLike, model_folder: str | os.PathLike | None = None, overwrite: bool = False
) -> Path:
    """Zip a model folder (default: the shipped one) with nnU-Net's `export_pretrained_model`, plus its input
    convention, model card and int8 networks (`lightecho quantize`), for `nnUNetv2_install_pretrained_model_from_zip`.
    Written to a temporary file beside OUTPUT and renamed into place when complete."""
    from nnunetv2.model_sharing.model_export import export_pretrained_model

    model_folder = Path(model_folder) if model_folder is not None else shipped_model_folder()
    output_zip = Path(output_zip)
    check_not_input(output_zip, [model_folder], "model archive")
    check_output_file(output_zip, overwrite, "model archive", is_model_archive, suffix=".zip")
    trainer, plans, configuration = _model_folder_parts(model_folder)
    folds = available_folds(model_folder)
    if not folds:
        raise InputError(f"no fold_X/checkpoint_final.pth in {model_folder}")
    for fold in folds:
        for name in ("progress.png", "validation/summary.json"):
            if not (model_folder / f"fold_{fold}" / name).is_file():
                raise InputError(f"{model_folder / f'fold_{fold}' / name} is missing: nnU-Net's export needs it")
    output_zip.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{output_zip.name}.partial-", dir=output_zip.parent)
    os.close(handle)
    try:
        # nnU-Net's export finds the model under nnUNet_results/<dataset>/<trainer>__<plans>__<configuration>.
        with environment_variable("nnUNet_results", str(model_folder.parent.parent)):
            export_pretrained_model(
                model_folder.parent.name,
                partial,
                configurations=(configuration,),
                trainer=trainer,
                plans_identifier=plans,
                folds=tuple(folds),
            )
        with zipfile.ZipFile(partial, "a", zipfile.ZIP_DEFLATED) as archive:
            prefix = f"{model_folder.parent.name}/{model_folder.name}"
            for name in EXTRA_FILES:
                if (model_folder / name).is_file():
                    archive.write(model_folder / name, f"{prefix}/{name}")
            for fold in folds:
                for path in sorted((model_folder / f"fold_{fold}" / INT8_FOLDER).glob("network.*")):
                    archive.write(path, f"{prefix}/{path.relative_to(model_folder)}")
        follow_umask(partial)
        os.replace(partial, output_zip)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return output_zip


def is_model_archive(path: str | os.PathLike) -> bool:
    """Whether `path` is a zip of nnU-Net model folders (`DatasetXXX_Name/<trainer>__<plans>__<configuration>/`
    with plans.json), as `export_model` and nnU-Net's own export write."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(re.fullmatch(r"Dataset\d{3}_[^/]+/[^/]+__[^/]+__[^/]+/plans\.json", name) for name in names)


def _model_folder_parts(model_folder: Path) -> tuple[str, str, str]:
    parts = model_folder.name.split("__")
    if len(parts) != 3 or not model_folder.parent.name.startswith("Dataset"):
        raise InputError(
            f"{model_folder} is not an nnU-Net model folder "
            "(<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>)"
        )
    return parts[0], parts[1], parts[2]
