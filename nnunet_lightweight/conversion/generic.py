"""Generic 2D echo data (e.g. HUNT4 exports) to nnU-Net with CAMUS's case ids and label ids.

Input: image and label files of any format SimpleITK reads (NIfTI, MHD, NRRD, PNG, ...), one 2D frame per file,
listed in a CSV file with a header row. Paths are relative to the CSV's folder (or absolute):

    patient,view,phase,image,label,spacing,subset
    hunt0001,4CH,ED,images/hunt0001_4ch_ed.png,labels/hunt0001_4ch_ed.png,0.25x0.25,
    hunt0001,4CH,ES,images/hunt0001_4ch_es.png,labels/hunt0001_4ch_es.png,0.25x0.25,
    hunt0002,2CH,ED,images/hunt0002_2ch_ed.nii.gz,,,test

- patient: letters, digits, '_' and '-'; all frames of a patient stay in one fold.
- view: 2CH or 4CH (also A2C/A4C); phase: ED or ES.
- label (optional): empty for an unlabelled frame, which goes to imagesTs; a patient is labelled everywhere or
  nowhere.
- spacing (optional): pixel size in mm, `ROWxCOL` or one number for square pixels; overrides the file header.
  Where a patient has no spacing here and its headers say 1x1, its spacing is recorded as pixel units.
- subset (optional): `test` puts the patient into imagesTs/labelsTs (never trained on); default `train`.

A label map turns the source label values into LightEcho's ids 0 background, 1 LV, 2 MYO, 3 LA, e.g.
`0=background,1=LV,2=MYO,3=LA` (the default) or `0=0,255=1`; a value not in the map is an error, so a
dataset converted from another source ends up with exactly the label ids of CAMUS and cross-dataset evaluation
(train on one dataset, predict the other's imagesTr/imagesTs) compares like with like.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path

from nnunet_lightweight.conversion.dataset import FrameSource, PatientPlan, build_dataset
from nnunet_lightweight.conversion.splits import DEFAULT_SEED, parse_split
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.labels import LABELS

REQUIRED_COLUMNS = ("patient", "view", "phase", "image")
VIEW_ALIASES = {"2CH": "2CH", "A2C": "2CH", "2C": "2CH", "4CH": "4CH", "A4C": "4CH", "4C": "4CH"}


def parse_label_map(spec: str | os.PathLike | dict | None) -> dict[int, int]:
    """Source value -> LightEcho label id from `'0=background,1=LV,...'`, a JSON file or a dict (None: identity)."""
    if spec is None:
        return {v: v for v in LABELS.values()}
    if isinstance(spec, dict):
        pairs = list(spec.items())
    elif Path(spec).suffix == ".json" or Path(spec).is_file():
        try:
            content = json.loads(Path(spec).read_text(encoding="utf-8-sig"), object_pairs_hook=_refuse_duplicate_keys)
        except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise InputError(f"cannot read label map {spec}: {error}") from None
        if not isinstance(content, dict):
            raise InputError(
                f'label map {spec} must be a JSON object such as {{"255": "LV"}}, got a {type(content).__name__}'
            )
        pairs = list(content.items())
    else:
        pairs = []
        for item in str(spec).split(","):
            source, separator, target = item.partition("=")
            if not separator:
                raise InputError(f"label map entry '{item}' is not SOURCE=TARGET (e.g. 1=LV)")
            pairs.append((source, target))
    mapping = {}
    for source, target in pairs:
        try:
            source_value = int(str(source).strip())
        except ValueError:
            raise InputError(f"label map source value '{source}' is not an integer") from None
        if source_value in mapping:
            # the later entry would silently win, e.g. turning LA into LV
            raise InputError(f"label map {spec}: source value {source_value} is mapped twice")
        target = str(target).strip()
        if target in LABELS:
            mapping[source_value] = LABELS[target]
        elif target.isdigit() and int(target) in LABELS.values():
            mapping[source_value] = int(target)
        else:
            raise InputError(f"label map target '{target}' is not one of {list(LABELS)} or their ids 0-3")
    return mapping


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """json's object_pairs_hook: a repeated key is an error (json.loads would keep only the last one)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"key(s) {repeated} appear more than once")
    return dict(pairs)


def _parse_spacing(text: str, where: str) -> tuple[float, float] | None:
    if not text.strip():
        return None
    parts = re.split(r"[x×*]", text.strip().lower())
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"{where}: spacing '{text}' is not ROWxCOL or a number (mm)") from None
    if len(values) not in (1, 2) or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{where}: spacing '{text}' must be one or two positive numbers (mm)")
    return (values[0], values[-1])


def read_frame_table(csv_path: str | os.PathLike) -> tuple[list[FrameSource], dict[str, PatientPlan]]:
    """Frames and per-patient plans from a generic CSV (see module docstring); InputError naming the line."""
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise InputError(f"missing file: {csv_path}")
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheet exports start with a BOM
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise InputError(
                    f"{csv_path} lacks the column(s) {missing}; expected a header with "
                    "patient,view,phase,image[,label,spacing,subset]"
                )
            # reader.line_num: the file's own line, blank lines (which DictReader skips) counted
            rows = [({k.strip(): (v or "").strip() for k, v in row.items() if k}, reader.line_num) for row in reader]
    except UnicodeDecodeError as error:  # e.g. a Latin-1 export with accented patient names
        raise InputError(
            f"{csv_path} is not UTF-8 text (byte {error.start}: {error.object[error.start : error.end]!r}): "
            "save it as UTF-8 ('CSV UTF-8' in a spreadsheet)"
        ) from None
    if not rows:
        raise InputError(f"{csv_path} lists no frames")
    frames, plans, labelled = [], {}, {}
    for row, number in rows:
        where = f"{csv_path}, line {number}"
        view = VIEW_ALIASES.get(row["view"].upper())
        phase = row["phase"].upper()
        if view is None or phase not in ("ED", "ES"):
            raise InputError(
                f"{where}: view must be 2CH or 4CH and phase ED or ES, got '{row['view']}', '{row['phase']}'"
            )
        image = _resolve(csv_path, row["image"], where)
        label = _resolve(csv_path, row["label"], where) if row.get("label") else None
        subset = (row.get("subset") or "train").lower()
        if subset not in ("train", "test"):
            raise InputError(f"{where}: subset must be train or test, got '{row['subset']}'")
        patient = row["patient"]
        spacing = _parse_spacing(row.get("spacing", ""), where)
        frames.append(FrameSource(patient, view, phase, image, label, spacing))
        wanted = "unlabelled" if label is None else subset
        plan = plans.setdefault(patient, PatientPlan(subset=wanted))
        if labelled.setdefault(patient, label is not None) != (label is not None):
            raise InputError(f"{where}: patient {patient} has labelled and unlabelled frames; label all or none")
        if plan.subset != wanted:
            raise InputError(f"{where}: patient {patient} is in subset '{subset}' here but not in its other rows")
        plan.has_physical_spacing_evidence |= spacing is not None
    return frames, plans


def _resolve(csv_path: Path, text: str, where: str) -> Path:
    path = Path(text).expanduser()
    path = path if path.is_absolute() else csv_path.parent / path
    if not path.is_file():
        raise InputError(f"{where}: missing file: {path}")
    return path


def convert_generic(
    csv_path: str | os.PathLike,
    dataset_id: int,
    name: str,
    label_map: str | dict | None = None,
    resize: int | tuple[int, int] | None = None,
    overwrite: bool = False,
    split: str = "cv5",
    *,
    raw_dir: str | os.PathLike | None = None,
    interpolation: str = "linear",
    seed: int = DEFAULT_SEED,
    spacing_units: str = "auto",
    verify: bool = True,
    num_processes: int = 2,
    progress: bool = True,
) -> Path:
    """Convert frames listed in a CSV (see module docstring) into `$nnUNet_raw/DatasetXXX_<name>`."""
    if parse_split(split)[0] == "official":
        raise InputError(
            "generic data has no official subgroups: use cv<N> or paper, and the CSV's subset column "
            "for a fixed test set"
        )
    mapping = parse_label_map(label_map)
    frames, plans = read_frame_table(csv_path)
    return build_dataset(
        frames,
        plans,
        dataset_id=dataset_id,
        name=name,
        raw_dir=raw_dir,
        split=split,
        seed=seed,
        label_map=mapping,
        resize=resize,
        interpolation=interpolation,
        spacing_units=spacing_units,
        overwrite=overwrite,
        verify=verify,
        num_processes=num_processes,
        progress=progress,
        dataset_json_extra={
            "description": f"{name}: apical 2CH/4CH echocardiography, ED and ES frames",
            "converted_by": "lightecho convert-generic",
        },
        metadata_extra={
            "source": str(Path(csv_path).expanduser().resolve()),
            "layout": "generic",
            "label_map": {str(k): v for k, v in mapping.items()},
        },
    )
