"""An inner patient-level split of the CAMUS training subgroup, for choosing a schedule without the validation subgroup.

A schedule (epochs, batch, learning rate) must be chosen on patients that the figures are not reported on. This
script writes a new CAMUS tree of links to the training subgroup's patients only, with its own
`database_split/`: one fold of a seeded patient-level `--folds`-fold split as `subgroup_validation.txt` (50 of the
400 patients with the default 8 folds), the rest as `subgroup_training.txt`. The official validation subgroup is
left out altogether. Convert it like the download itself, e.g.:

    python scripts/camus_inner_split.py ../shared/camus224/CAMUS_public /tmp/camus_inner
    lightecho convert-camus /tmp/camus_inner -d 510 --name CAMUSinner --split official
    lightecho plan -d 510
    nnUNetv2_train 510 2d 0 -tr nnUNetTrainerLightEcho_CPU1h -device cpu

It refuses an existing output folder.
"""

import argparse
from pathlib import Path

from nnunet_lightweight.conversion.camus import find_patients, read_subgroups
from nnunet_lightweight.conversion.splits import DEFAULT_SEED, patient_folds
from nnunet_lightweight.core.errors import InputError


def write_inner_split(source: Path, output: Path, folds: int, fold: int, seed: int) -> dict[str, list[str]]:
    """Write `output` (database_nifti/ links, database_split/) and return its {'training', 'validation'} patients."""
    _, patient_folders, _, split_dir = find_patients(source)
    training = read_subgroups(split_dir)["training"]
    validation = patient_folds(training, folds, seed)[fold]
    groups = {"training": sorted(set(training) - set(validation)), "validation": validation}
    output.mkdir(parents=True)  # refuses an existing folder
    (output / "database_nifti").mkdir()
    (output / "database_split").mkdir()
    for patient in training:
        (output / "database_nifti" / patient).symlink_to(patient_folders[patient].resolve())
    for group, patients in groups.items():
        (output / "database_split" / f"subgroup_{group}.txt").write_text("\n".join(patients) + "\n")
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="CAMUS folder with database_nifti/ and database_split/")
    parser.add_argument("output", type=Path, help="new folder for the inner split (must not exist)")
    parser.add_argument("--folds", type=int, default=8, help="patient-level folds of the training subgroup (default 8)")
    parser.add_argument("--fold", type=int, default=0, help="the fold that becomes the inner validation (default 0)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"shuffling seed (default {DEFAULT_SEED})")
    args = parser.parse_args()
    if args.output.exists():
        parser.error(f"{args.output} exists: give a new folder")
    if not 0 <= args.fold < args.folds:
        parser.error(f"--fold must be 0 to {args.folds - 1}")
    try:
        groups = write_inner_split(args.source, args.output, args.folds, args.fold, args.seed)
    except InputError as error:
        parser.error(str(error))
    print(f"{args.output}: {len(groups['training'])} training and {len(groups['validation'])} validation patients")


if __name__ == "__main__":
    main()
