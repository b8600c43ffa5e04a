"""`lightecho plan`: nnU-Net's default 2d plans and preprocessing (if missing), then nnUNetPlansLightEcho."""
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dataset_conversion.common import install_splits
from nnunet_lightweight.errors import InputError
from nnunet_lightweight.planning.nnUNetPlannerLightEcho import DEFAULT_PLANS, LIGHTECHO_PLANS, nnUNetPlannerLightEcho


def dataset_name(dataset: int | str) -> str:
    """nnU-Net's DatasetXXX_Name for an id or name, with a clear error where nnUNet_raw lacks it."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(dataset)
    except RuntimeError as error:
        raise InputError(f"dataset {dataset!r} not found in nnUNet_raw / nnUNet_preprocessed: {error}") from error


@contextmanager
def _planner_safe_thread_setting() -> Iterator[None]:
    """nnU-Net's planner calls torch.set_num_threads(nnUNet_n_proc_DA), which fails for the valid setting 0."""
    original = os.environ.get("nnUNet_n_proc_DA")
    if original == "0":
        os.environ["nnUNet_n_proc_DA"] = "1"
    try:
        yield
    finally:
        if original is not None:
            os.environ["nnUNet_n_proc_DA"] = original


def plan(dataset: int | str, num_processes: int = 2, verify_dataset_integrity: bool = False,
         preset: str = "lightecho") -> Path:
    """Plan and preprocess `dataset` for nnU-Net's default 2d configuration where not done yet, then write the
    LightEcho plans (same preprocessed data). Returns the LightEcho plans file."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                      plan_experiment_dataset, preprocess_dataset)
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw

    for variable in (nnUNet_raw, nnUNet_preprocessed):
        if not variable.is_set():
            raise InputError(f"environment variable {variable.env_var_name} is not set")
    name = dataset_name(dataset)
    dataset_id = int(name[7:10])
    preprocessed = Path(nnUNet_preprocessed.get()) / name
    if not (preprocessed / f"{DEFAULT_PLANS}.json").is_file():
        print(f"[lightecho plan] {name}: fingerprint and nnU-Net default plans")
        extract_fingerprint_dataset(dataset_id, num_processes=num_processes,
                                    check_dataset_integrity=verify_dataset_integrity, clean=False)
        with _planner_safe_thread_setting():
            plan_experiment_dataset(dataset_id)
    if not (preprocessed / f"{DEFAULT_PLANS}_2d").is_dir():
        print(f"[lightecho plan] {name}: preprocessing the 2d configuration (shared by both plans)")
        preprocess_dataset(dataset_id, DEFAULT_PLANS, ["2d"], [num_processes])
    raw_splits = Path(nnUNet_raw.get()) / name / "splits_final.json"
    if raw_splits.is_file() and not (preprocessed / "splits_final.json").is_file():
        # The converters write patient-level splits next to dataset.json; nnU-Net reads them from here.
        install_splits(name)
        print(f"[lightecho plan] {name}: installed the patient-level splits_final.json")
    plans_name = LIGHTECHO_PLANS if preset == "lightecho" else f"{LIGHTECHO_PLANS}_{preset}"
    print(f"[lightecho plan] {name}: writing {plans_name} from preset {preset!r}")
    with _planner_safe_thread_setting():
        nnUNetPlannerLightEcho(dataset_id, plans_name=plans_name, preset=preset).plan_experiment()
    return preprocessed / f"{plans_name}.json"
