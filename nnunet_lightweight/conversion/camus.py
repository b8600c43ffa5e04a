"""CAMUS to nnU-Net: the official NIfTI release, the legacy MHD/RAW release and the 224x224 copy in ../shared.

Accepted layouts of SOURCE (the folder you downloaded):

- official NIfTI release: `database_nifti/patientNNNN/patientNNNN_{2CH,4CH}_{ED,ES}[_gt].nii.gz`,
  `Info_{2CH,4CH}.cfg`, `patientNNNN_{view}_half_sequence[_gt].nii.gz`, and `database_split/subgroup_*.txt`;
  the 224x224 copy is the same layout without Info files, half-sequences or the testing subgroup;
- legacy release: `training/patientNNNN/patientNNNN_{view}_{phase}[_gt].mhd` (+ `.raw`), `Info_{view}.cfg`,
  `patientNNNN_{view}_sequence[_gt].mhd`, and `testing/patientNNNN/` whose patients usually have no labels: they go
  to imagesTs without labels (labelsTs where they do have them);
- a folder holding `patientNNNN/` folders directly (e.g. SOURCE pointing at `database_nifti`).

Every training patient needs all four labels; a patient of the testing subgroup (or legacy `testing/`) may have
none at all. Patients of the official testing subgroup never enter training: they go to imagesTs/labelsTs with
every split, so official test numbers stay clean.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from nnunet_lightweight.conversion.dataset import FrameSource, PatientPlan, SequenceSource, build_dataset
from nnunet_lightweight.conversion.splits import DEFAULT_SEED, parse_split
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.labels import PHASES, VIEWS

logger = logging.getLogger(__name__)

PATIENT_FOLDER = re.compile(r"^patient\d+$")
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mhd", ".mha")
SUBGROUPS = ("training", "validation", "testing")


def parse_info_file(path: str | os.PathLike) -> dict[str, int | float | str]:
    """The `key: value` lines of a CAMUS `Info_2CH.cfg` / `Info_4CH.cfg` (numbers converted)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    info: dict[str, int | float | str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, separator, value = line.partition(":")
        if not separator or not key.strip():
            raise InputError(f"{path}, line {number}: expected 'key: value', got {line.strip()!r}")
        info[key.strip()] = _number_or_text(value.strip())
    for key in ("ED", "ES", "NbFrame"):
        if key in info and not isinstance(info[key], int):
            raise InputError(f"{path}: {key} must be an integer frame number, got {info[key]!r}")
    return info


def _number_or_text(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def read_subgroups(split_dir: Path) -> dict[str, list[str]]:
    """Patients of the official CAMUS subgroups present in `database_split/` (`subgroup_<name>.txt`)."""
    groups = {}
    for group in SUBGROUPS:
        path = split_dir / f"subgroup_{group}.txt"
        if path.is_file():
            groups[group] = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    seen: dict[str, str] = {}
    for group, patients in groups.items():
        for patient in patients:
            if patient in seen:
                raise InputError(
                    f"{split_dir}: {patient} is listed in subgroup_{seen[patient]}.txt and subgroup_{group}.txt"
                )
            seen[patient] = group
    return groups


def find_patients(source: Path) -> tuple[str, dict[str, Path], set[str], Path | None]:
    """(layout, patient -> folder, patients of legacy `testing/`, split folder or None) of a CAMUS download."""
    if not source.is_dir():
        raise InputError(f"CAMUS source folder not found: {source}")
    nifti, training, testing = source / "database_nifti", source / "training", source / "testing"
    if nifti.is_dir() and (training.is_dir() or testing.is_dir()):
        raise InputError(f"{source} holds both database_nifti/ and training/ or testing/; point SOURCE at one release")
    if nifti.is_dir():
        layout, roots, split_dir = "nifti", {"nifti": nifti}, source / "database_split"
    elif training.is_dir() or testing.is_dir():
        layout, roots, split_dir = "legacy", {"training": training, "testing": testing}, None
    else:
        layout, roots, split_dir = "folder", {"folder": source}, source.parent / "database_split"
    patients: dict[str, Path] = {}
    legacy_testing: set[str] = set()
    for group, root in roots.items():
        if not root.is_dir():
            continue
        ignored = []
        for folder in sorted(root.iterdir()):
            if not folder.is_dir() or not PATIENT_FOLDER.match(folder.name):
                ignored.append(folder.name)
                continue
            if folder.name in patients:
                raise InputError(f"duplicate patient {folder.name}: {patients[folder.name]} and {folder}")
            patients[folder.name] = folder
            if group == "testing":
                legacy_testing.add(folder.name)
        if ignored and layout != "folder":
            logger.warning("ignored in %s (not patientNNNN folders): %s", root, ", ".join(ignored[:10]))
    if not patients:
        raise InputError(
            f"no CAMUS patients found in {source}: expected database_nifti/patientNNNN/, "
            "training/patientNNNN/ or patientNNNN/ folders"
        )
    return layout, patients, legacy_testing, split_dir if split_dir and split_dir.is_dir() else None


def _find_file(folder: Path, stem: str) -> Path | None:
    """The file `folder/stem<suffix>` for one of the known image suffixes; InputError where several exist."""
    found = [folder / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
    if len(found) > 1:
        raise InputError(f"ambiguous files for {folder / stem}: {', '.join(p.name for p in found)}")
    return found[0] if found else None


def _info_file(folder: Path, patient: str, view: str) -> Path | None:
    for candidate in (folder / f"Info_{view}.cfg", folder / f"{patient}_{view}_info.cfg"):
        if candidate.is_file():
            return candidate
    return None


def _patient_frames(patient: str, folder: Path, labels_optional: bool) -> list[FrameSource]:
    frames = []
    for view in VIEWS:
        for phase in PHASES:
            stem = f"{patient}_{view}_{phase}"
            image = _find_file(folder, stem)
            if image is None:
                raise InputError(f"missing image file: {folder / stem}.nii.gz (or .mhd)")
            frames.append(FrameSource(patient, view, phase, image, _find_file(folder, f"{stem}_gt")))
    missing = [f for f in frames if f.label is None]
    if missing and not (labels_optional and len(missing) == len(frames)):
        raise InputError(f"missing label file: {folder / missing[0].case}_gt{_suffix(missing[0].image)}")
    return frames


def _suffix(path: Path) -> str:
    return next(s for s in IMAGE_SUFFIXES if path.name.endswith(s))


def _patient_sequences(patient: str, folder: Path, has_labels: bool) -> list[SequenceSource]:
    sequences = []
    for view in VIEWS:
        for stem in (f"{patient}_{view}_half_sequence", f"{patient}_{view}_sequence"):
            image = _find_file(folder, stem)
            if image is not None:
                label = _find_file(folder, f"{stem}_gt") if has_labels else None
                sequences.append(SequenceSource(patient, view, image, label))
                break
        else:
            raise InputError(
                f"missing half-sequence file: {folder / patient}_{view}_half_sequence.nii.gz "
                "(or _sequence.mhd); convert without --export-sequences"
            )
    return sequences


def convert_camus(
    source: str | os.PathLike,
    dataset_id: int,
    resize: int | tuple[int, int] | None = None,
    overwrite: bool = False,
    split: str = "cv5",
    export_sequences: bool = False,
    *,
    name: str = "CAMUS",
    raw_dir: str | os.PathLike | None = None,
    interpolation: str = "linear",
    seed: int = DEFAULT_SEED,
    spacing_units: str = "auto",
    verify: bool = True,
    num_processes: int = 2,
    progress: bool = True,
) -> Path:
    """Convert a CAMUS download (any layout, see module docstring) into `$nnUNet_raw/DatasetXXX_<name>`."""
    source = Path(source).expanduser().resolve()
    mode, _ = parse_split(split)
    layout, patient_folders, legacy_testing, split_dir = find_patients(source)
    groups = read_subgroups(split_dir) if split_dir else {}
    subgroup_of = {patient: group for group, listed in groups.items() for patient in listed}
    if mode == "official":
        for group, listed in groups.items():
            absent = [p for p in listed if p not in patient_folders]
            if absent:
                raise InputError(
                    f"{split_dir / f'subgroup_{group}.txt'} lists patients missing from {source}: "
                    f"{', '.join(absent[:5])}"
                )

    frames: list[FrameSource] = []
    sequences: list[SequenceSource] = []
    plans: dict[str, PatientPlan] = {}
    for patient, folder in patient_folders.items():
        held_out = patient in legacy_testing or subgroup_of.get(patient) == "testing"
        patient_frames = _patient_frames(patient, folder, labels_optional=held_out)
        labelled = patient_frames[0].label is not None
        info = {}
        for view in VIEWS:
            info_path = _info_file(folder, patient, view)
            if info_path is not None:
                info[view] = parse_info_file(info_path)
        plans[patient] = PatientPlan(
            subset="train" if not held_out else ("test" if labelled else "unlabelled"),
            official_subgroup=subgroup_of.get(patient, "testing" if patient in legacy_testing else None),
            info=info,
            has_physical_spacing_evidence=bool(info),
        )
        frames.extend(patient_frames)
        if export_sequences:
            sequences.extend(_patient_sequences(patient, folder, labelled))

    official_groups = {g: [p for p in groups.get(g, []) if p in plans] for g in ("training", "validation")}
    return build_dataset(
        frames,
        plans,
        dataset_id=dataset_id,
        name=name,
        raw_dir=raw_dir,
        split=split,
        seed=seed,
        official_groups=official_groups,
        resize=resize,
        interpolation=interpolation,
        spacing_units=spacing_units,
        sequences=sequences,
        overwrite=overwrite,
        verify=verify,
        num_processes=num_processes,
        progress=progress,
        dataset_json_extra={
            "description": "CAMUS apical 2CH/4CH echocardiography, ED and ES frames (Leclerc et al., IEEE TMI "
            "2019, doi:10.1109/TMI.2019.2900516)",
            "reference": "https://www.creatis.insa-lyon.fr/Challenge/camus/",
            "license": "CC BY-NC-SA 4.0",
            "converted_by": "lightecho convert-camus",
        },
        metadata_extra={"source": str(source), "layout": layout, "official_subgroups_present": sorted(groups)},
    )
