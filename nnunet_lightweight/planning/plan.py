"""`lightecho plan`: nnU-Net's default 2d plans and preprocessing (where needed), then nnUNetPlansLightEcho.

nnU-Net's own functions do the work (fingerprint, default planner, 2d preprocessing); this module decides what needs
doing. It records what it planned from in `lightecho_plan.json` beside what it writes in
nnUNet_preprocessed/DatasetXXX_NAME:

    raw     a fingerprint of the raw training set: per case its shape, spacing and file sizes/mtimes, and the hash
            of dataset.json
    owned   the parts lightecho plan wrote: "plans" (dataset_fingerprint.json, nnUNetPlans.json), "preprocessing"
            (nnUNetPlans_2d/, gt_segmentations/), "splits" (the installed splits_final.json)
    done    the parts that finished; a part is taken out before it is redone and put back only after it completed,
            so an interrupted preprocessing is never taken for complete and the next run finishes it

What it wrote itself it redoes when the raw data changed. What it did not write (a user's own
nnUNetv2_plan_and_preprocess) it never rewrites: when that no longer matches the raw data it stops, naming what
changed and the command that redoes it (`--force`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from nnunet_lightweight.conversion.splits import install_splits
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.json_files import read_json_object
from nnunet_lightweight.core.nnunet_paths import SPLITS_FILE
from nnunet_lightweight.core.presets import load_preset
from nnunet_lightweight.planning.nnUNetPlannerLightEcho import DEFAULT_PLANS, LIGHTECHO_PLANS, nnUNetPlannerLightEcho

STATE_FILE = "lightecho_plan.json"
FINGERPRINT_FILE = "dataset_fingerprint.json"
PREPROCESSED_2D = f"{DEFAULT_PLANS}_2d"
GT_FOLDER = "gt_segmentations"
_EXAMPLES = 3
_PART_NAMES = {
    "plans": f"nnU-Net plans ({DEFAULT_PLANS}.json, dataset_fingerprint.json)",
    "preprocessing": f"preprocessed data ({DEFAULT_PLANS}_2d/)",
    "splits": "splits_final.json",
}


def dataset_name(dataset: int | str) -> str:
    """nnU-Net's DatasetXXX_Name for an id or name, with a clear error where nnUNet_raw lacks it or the id has more
    than nnU-Net's three digits (nnU-Net reads the id as name[7:10], so Dataset1000_X would pass for id 100)."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    text = str(dataset)
    if text.isdigit() and not 1 <= int(text) <= 999:
        raise InputError(f"dataset id must be between 1 and 999 (nnU-Net's three-digit DatasetXXX names), got {text}")
    try:
        name = maybe_convert_to_dataset_name(int(text) if text.isdigit() else text)
    except RuntimeError as error:
        raise InputError(f"dataset {dataset!r} not found in nnUNet_raw / nnUNet_preprocessed: {error}") from error
    if not re.fullmatch(r"Dataset\d{3}_.+", name):
        raise InputError(
            f"dataset folder {name} does not follow nnU-Net's DatasetXXX_NAME naming with a three-digit "
            "id; convert it again with an id between 1 and 999"
        )
    return name


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


# ---------------------------------------------------------------------------------------------------------------
# What the plans were made from
# ---------------------------------------------------------------------------------------------------------------


def _file_hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _header(path: str) -> tuple[list[int] | None, list[float] | None]:
    """Shape and spacing (numpy axis order) from the image header alone; None where SimpleITK cannot read it (the
    file's size and mtime still tell a change; nnU-Net's own reader reports unreadable files)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None, None
    return list(reversed(reader.GetSize())), [round(s, 6) for s in reversed(reader.GetSpacing())]


def raw_fingerprint(raw_folder: Path, previous: Mapping | None = None) -> dict:
    """What nnU-Net's planning and preprocessing read from a raw dataset: its training cases (nnU-Net's own file
    lookup) with shape, spacing and size/mtime of every file, and the hash of dataset.json. Headers are read only for
    cases whose files differ in size or mtime from `previous` (an earlier fingerprint): a rerun stays cheap."""
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    dataset_json = read_json_object(
        raw_folder / "dataset.json",
        "dataset.json",
        "convert the dataset first: lightecho convert-camus / convert-generic",
    )
    # nnU-Net's fingerprinting reads these keys without checking them (a bare KeyError)
    missing = [key for key in ("labels", "file_ending", "channel_names") if key not in dataset_json]
    if missing and not (missing == ["channel_names"] and "modality" in dataset_json):
        raise InputError(
            f"{raw_folder / 'dataset.json'} lacks {', '.join(missing)} (see nnU-Net's "
            "dataset_format.md, or convert with lightecho convert-camus / convert-generic)"
        )
    try:
        dataset = get_filenames_of_train_images_and_targets(str(raw_folder), dataset_json)
    except (KeyError, FileNotFoundError, OSError) as error:
        raise InputError(f"cannot list the training cases of {raw_folder}: {error!r}") from None
    cases = {}
    for case, entry in sorted(dataset.items()):
        files = [*entry["images"], entry["label"]]
        try:
            stats = [os.stat(f) for f in files]
        except FileNotFoundError as error:
            raise InputError(f"{raw_folder}: case {case} lacks a file: {error.filename}") from None
        file_stats = [[s.st_size, s.st_mtime_ns] for s in stats]
        known = (previous or {}).get("cases", {}).get(case)
        if known and known.get("files") == file_stats:
            shape, spacing = known.get("shape"), known.get("spacing")
        else:
            shape, spacing = _header(files[0])
        cases[case] = {"shape": shape, "spacing": spacing, "files": file_stats}
    return {"dataset_json": _file_hash(raw_folder / "dataset.json"), "cases": cases}


def _preview(names: list[str]) -> str:
    return ", ".join(names[:_EXAMPLES]) + (f" and {len(names) - _EXAMPLES} more" if len(names) > _EXAMPLES else "")


def _size(shape: list | None) -> str:
    return "x".join(map(str, shape)) if shape else "unknown"


def describe_changes(before: Mapping, now: Mapping) -> list[str]:
    """What differs between two raw fingerprints, one phrase per kind of change (empty: nothing changed)."""
    changes = []
    old_cases, new_cases = before.get("cases", {}), now["cases"]
    added = sorted(set(new_cases) - set(old_cases))
    removed = sorted(set(old_cases) - set(new_cases))
    if added:
        changes.append(f"{len(added)} new case(s) ({_preview(added)})")
    if removed:
        changes.append(f"{len(removed)} case(s) gone ({_preview(removed)})")
    common = sorted(set(old_cases) & set(new_cases))
    reshaped = [c for c in common if old_cases[c].get("shape") != new_cases[c]["shape"]]
    if reshaped:
        first = reshaped[0]
        changes.append(
            f"{len(reshaped)} case(s) changed shape (e.g. {first}: {_size(old_cases[first].get('shape'))} "
            f"-> {_size(new_cases[first]['shape'])})"
        )
    respaced = [c for c in common if c not in reshaped and old_cases[c].get("spacing") != new_cases[c]["spacing"]]
    if respaced:
        first = respaced[0]
        changes.append(
            f"{len(respaced)} case(s) changed spacing (e.g. {first}: {old_cases[first].get('spacing')} "
            f"-> {new_cases[first]['spacing']})"
        )
    modified = [
        c
        for c in common
        if c not in reshaped and c not in respaced and old_cases[c].get("files") != new_cases[c]["files"]
    ]
    if modified:
        changes.append(f"{len(modified)} case file(s) rewritten ({_preview(modified)})")
    if before.get("dataset_json") != now["dataset_json"]:
        changes.append("dataset.json changed")
    return changes


def _foreign_changes(preprocessed: Path, now: Mapping, parts: set[str]) -> list[str]:
    """Signs that plans/preprocessed data written by someone else no longer match the raw data: cases missing from
    or extra in nnUNetPlans_2d (also an interrupted preprocessing), a fingerprint of another number of cases or other
    spacings, raw files modified after the fingerprint was taken."""
    changes = []
    cases = now["cases"]
    if "preprocessing" in parts:
        done = {p.name[: -len(".pkl")] for p in (preprocessed / PREPROCESSED_2D).glob("*.pkl")}
        missing, extra = sorted(set(cases) - done), sorted(done - set(cases))
        if missing:
            changes.append(
                f"{len(missing)} raw case(s) missing from {PREPROCESSED_2D}/ ({_preview(missing)}; "
                "new cases or an interrupted preprocessing)"
            )
        if extra:
            changes.append(
                f"{len(extra)} case(s) in {PREPROCESSED_2D}/ are no longer in the raw data ({_preview(extra)})"
            )
    fingerprint_file = preprocessed / FINGERPRINT_FILE
    if "plans" in parts and fingerprint_file.is_file():
        spacings = read_json_object(fingerprint_file, "nnU-Net dataset fingerprint").get("spacings", [])
        if len(spacings) != len(cases):
            changes.append(f"{FINGERPRINT_FILE} describes {len(spacings)} case(s), the raw data has {len(cases)}")
        else:
            # nnU-Net lists the cases in sorted order and gives 2D frames a dummy first axis
            respaced = [
                case
                for (case, entry), spacing in zip(sorted(cases.items()), spacings)
                if entry["spacing"] is not None
                and [round(s, 4) for s in spacing[-len(entry["spacing"]) :]] != [round(s, 4) for s in entry["spacing"]]
            ]
            if respaced:
                changes.append(
                    f"{len(respaced)} case(s) have another spacing than in {FINGERPRINT_FILE} ({_preview(respaced)})"
                )
        planned_at = fingerprint_file.stat().st_mtime_ns
        newer = sorted(case for case, entry in cases.items() if any(m > planned_at for _, m in entry["files"]))
        if newer and not changes:
            changes.append(f"{len(newer)} raw case(s) were written after {FINGERPRINT_FILE} ({_preview(newer)})")
    return changes


# ---------------------------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------------------------


def _read_state(preprocessed: Path) -> dict | None:
    path = preprocessed / STATE_FILE
    if not path.is_file():
        return None
    state = read_json_object(path, "lightecho plan state")
    if not isinstance(state.get("owned"), list) or not isinstance(state.get("done"), list):
        raise InputError(
            f"{path} is not a lightecho plan state file (no 'owned'/'done' lists); remove it and run "
            "lightecho plan --force to plan again"
        )
    return state


def _write_state(preprocessed: Path, raw: Mapping, owned: set[str], done: set[str], splits_sha256: str | None) -> None:
    """Written through a temporary file and a rename: an interruption leaves the previous state, never half a file.
    `splits_sha256`: the hash of the splits file as this command installed it (an edit of it is the user's)."""
    preprocessed.mkdir(parents=True, exist_ok=True)
    temporary = preprocessed / f".{STATE_FILE}.partial"
    state = {"format_version": 1, "owned": sorted(owned), "done": sorted(done), "raw": raw}
    temporary.write_text(json.dumps({**state, "splits_sha256": splits_sha256}))
    temporary.replace(preprocessed / STATE_FILE)


def _present_parts(preprocessed: Path) -> set[str]:
    parts = set()
    if (preprocessed / FINGERPRINT_FILE).is_file() or (preprocessed / f"{DEFAULT_PLANS}.json").is_file():
        parts.add("plans")
    if (preprocessed / PREPROCESSED_2D).is_dir():
        parts.add("preprocessing")
    return parts


def _fold_sets(path: Path) -> list[tuple[frozenset, frozenset]]:
    splits = json.loads(path.read_text())
    return [(frozenset(fold["train"]), frozenset(fold["val"])) for fold in splits]


def _splits_problem(raw_splits: Path, installed: Path, cases: Mapping) -> str | None:
    """Why the installed splits_final.json does not fit the raw dataset (None where it does or is absent): other
    folds than the raw dataset's own splits (nnU-Net's planner then fails on a bare assertion), or cases that are
    not in the raw data."""
    if not installed.is_file():
        return None
    try:
        folds = _fold_sets(installed)
        if raw_splits.is_file():
            wanted = _fold_sets(raw_splits)
            # nnU-Net's rule: every fold of the raw splits must be in the installed file, which may hold more
            if len(folds) < len(wanted) or folds[: len(wanted)] != wanted:
                return f"{SPLITS_FILE} holds other folds than {raw_splits}"
            return None
    except (OSError, ValueError, TypeError, KeyError) as error:
        return f"{SPLITS_FILE} is not a list of train/val folds ({error!r})"
    unknown = sorted({case for train, val in folds for case in train | val} - set(cases))
    return f"{SPLITS_FILE} lists {len(unknown)} case(s) not in the raw data ({_preview(unknown)})" if unknown else None


# ---------------------------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------------------------


def plan(
    dataset: int | str,
    num_processes: int = 2,
    verify_dataset_integrity: bool = False,
    preset: str = "lightecho",
    force: bool = False,
) -> Path:
    """Plan and preprocess `dataset` for nnU-Net's default 2d configuration where that is missing, unfinished or
    (when lightecho plan wrote it) made from other raw data, then write the LightEcho plans (same preprocessed
    data). `force` also redoes plans and preprocessing it did not write. Returns the LightEcho plans file."""
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw

    for variable in (nnUNet_raw, nnUNet_preprocessed):
        if not variable.is_set():
            raise InputError(f"environment variable {variable.env_var_name} is not set")
    try:
        load_preset(preset)  # before any work: a typo must not cost a whole preprocessing
    except KeyError as error:
        raise InputError(error.args[0]) from None
    name = dataset_name(dataset)
    dataset_id = int(name[7:10])
    raw_folder = Path(nnUNet_raw.get()) / name
    preprocessed = Path(nnUNet_preprocessed.get()) / name
    state = _read_state(preprocessed)
    raw = raw_fingerprint(raw_folder, state.get("raw") if state else None)
    if not raw["cases"]:
        raise InputError(
            f"{raw_folder} has no training cases (imagesTr is empty, e.g. converted with --split none): "
            "there is nothing to plan a training for"
        )
    owned, done = (set(state["owned"]), set(state["done"])) if state else (set(), set())
    changes = describe_changes(state["raw"], raw) if state and isinstance(state.get("raw"), dict) else []
    present = _present_parts(preprocessed)
    foreign = present - owned
    raw_splits, installed_splits = raw_folder / SPLITS_FILE, preprocessed / SPLITS_FILE
    splits_issue = _splits_problem(raw_splits, installed_splits, raw["cases"])
    foreign_splits = bool(splits_issue) and "splits" not in owned
    splits_sha256 = state.get("splits_sha256") if state else None  # None from versions that recorded none
    if not force and splits_issue and "splits" in owned and splits_sha256 not in (None, _file_hash(installed_splits)):
        raise InputError(
            f"{installed_splits} was changed since lightecho plan installed it, and {splits_issue}, as nnU-Net "
            f"does not allow (its planner asserts them): keep the folds of {raw_splits} first and add yours after "
            f"them, or edit that file instead; lightecho plan -d {dataset_id} --force installs the raw splits again, "
            "replacing your edit"
        )
    if not force:
        stale = (changes or _foreign_changes(preprocessed, raw, foreign)) if foreign else []
        if foreign_splits:
            stale = [*stale, splits_issue]
        if stale:
            written = [
                _PART_NAMES[part]
                for part in ("plans", "preprocessing", "splits")
                if part in foreign or (part == "splits" and foreign_splits)
            ]
            raise InputError(
                f"{preprocessed} holds {' and '.join(written)} that lightecho plan did not write (e.g. from "
                f"nnUNetv2_plan_and_preprocess) and they no longer match {raw_folder}: {'; '.join(stale)}. They are "
                f"left as they are; to plan and preprocess again, replacing them: lightecho plan -d {dataset_id} "
                "--force"
            )

    if force:
        redo = {"plans", "preprocessing"}
    else:
        redo = {
            part
            for part in ("plans", "preprocessing")
            if part not in foreign and (part not in present or part not in done or changes)
        }
        if "plans" in redo and "preprocessing" in foreign:
            raise InputError(
                f"{preprocessed / PREPROCESSED_2D} was not written by lightecho plan, but the plans it "
                f"belongs to are missing; to plan and preprocess again, replacing it: lightecho plan -d "
                f"{dataset_id} --force"
            )
        if "plans" in redo:
            redo.add("preprocessing")  # new plans, new preprocessed data
    if changes and redo:
        print(
            f"[lightecho plan] {name}: the raw data changed since it was planned ({'; '.join(changes)}): planning "
            "and preprocessing again"
        )
    elif present & redo:
        print(
            f"[lightecho plan] {name}: redoing {', '.join(sorted(present & redo))} "
            f"({'--force' if force else 'not finished last time'})"
        )
    owned |= redo
    done -= redo
    # Settled before any planner runs: nnU-Net's planner copies the raw splits itself where none are installed and
    # asserts that installed ones match them.
    if raw_splits.is_file() and (not installed_splits.is_file() or splits_issue):
        # the converters write patient-level splits next to dataset.json
        splits_sha256 = _file_hash(install_splits(name))
        owned.add("splits")
        print(f"[lightecho plan] {name}: installed the patient-level {SPLITS_FILE} of {raw_folder}")
    elif splits_issue and "splits" in owned:
        # the raw dataset no longer has the splits this command installed: nnU-Net makes its own folds instead
        installed_splits.unlink()
        owned.discard("splits")
        splits_sha256 = None
    elif splits_issue:
        raise InputError(
            f"{installed_splits}: {splits_issue}, and {raw_folder} has no {SPLITS_FILE} to replace it "
            "with: remove it and nnU-Net makes new folds"
        )
    _write_state(preprocessed, raw, owned, done, splits_sha256)

    try:
        if "plans" in redo:
            from nnunetv2.experiment_planning.plan_and_preprocess_api import (
                extract_fingerprint_dataset,
                plan_experiment_dataset,
            )

            print(f"[lightecho plan] {name}: fingerprint and nnU-Net default plans")
            extract_fingerprint_dataset(
                dataset_id, num_processes=num_processes, check_dataset_integrity=verify_dataset_integrity, clean=True
            )
            with _planner_safe_thread_setting():
                plan_experiment_dataset(dataset_id)
            done.add("plans")
            _write_state(preprocessed, raw, owned, done, splits_sha256)
        if "preprocessing" in redo:
            from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset

            print(f"[lightecho plan] {name}: preprocessing the 2d configuration (shared by both plans)")
            # nnU-Net replaces nnUNetPlans_2d itself but only adds to gt_segmentations: stale masks would stay
            shutil.rmtree(preprocessed / GT_FOLDER, ignore_errors=True)
            preprocess_dataset(dataset_id, DEFAULT_PLANS, ["2d"], [num_processes])
            done.add("preprocessing")
            _write_state(preprocessed, raw, owned, done, splits_sha256)
    except KeyboardInterrupt:
        unfinished = sorted(redo - done)
        print(
            f"[lightecho plan] {name}: interrupted; {', '.join(unfinished)} recorded as unfinished in "
            f"{preprocessed / STATE_FILE}: run lightecho plan -d {dataset_id} again to finish",
            file=sys.stderr,
        )
        raise

    plans_name = LIGHTECHO_PLANS if preset == "lightecho" else f"{LIGHTECHO_PLANS}_{preset}"
    print(f"[lightecho plan] {name}: writing {plans_name} from preset {preset!r}")
    with _planner_safe_thread_setting():
        nnUNetPlannerLightEcho(dataset_id, plans_name=plans_name, preset=preset).plan_experiment()
    return preprocessed / f"{plans_name}.json"
