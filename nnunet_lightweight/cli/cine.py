"""lightecho cine: LV area and volume curves of whole cine loops, automatic ED/ES frames and EF."""

import argparse
from pathlib import Path

from nnunet_lightweight.cli import DISKS, add_unit_options, bounded
from nnunet_lightweight.cli.predict import add_predictor_options, predictor_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cine",
        help="volume curve, automatic ED/ES frames and EF of a 2CH and/or 4CH cine loop",
        description="Segments every frame of a cine loop with a trained nnU-Net/LightEcho model (or reads a "
        "label-map sequence such as CAMUS _half_sequence_gt.nii.gz when no --model is given), measures "
        "the LV area and single-plane Simpson volume of every frame, finds the beats over the whole loop "
        "and takes ED and ES from the representative beat (per-beat EF, mean and median in cine.json; the "
        "largest and smallest volume where there is no full beat), and with both views computes the biplane EDV, ESV and EF from each view's ED and "
        "ES frames. Sequences: 2D+t NIfTI/MHA (CAMUS half-sequences), a quoted glob of 2D frame files "
        "(e.g. 'sequences/images/patient0001_2CH_frame*_0000.nii.gz'), an AVI/MP4 video or a multi-frame "
        "ultrasound DICOM (.dcm or any file with the DICM marker; measured in mm from its "
        "SequenceOfUltrasoundRegions). Writes "
        "OUT/cine.json (frames 1-based, volumes, EF, Info_<view>.cfg reference ED/ES where found "
        "beside the sequence), OUT/curves.csv, OUT/volume_curve.png and, when segmenting, "
        "OUT/<view>_masks.nii.gz. With --clips instead, many clips (multi-frame ultrasound DICOM, "
        "AVI/MP4, NIfTI/MHA) are measured in one run, EF beat by beat: OUT/clips.csv has one row per clip "
        "(EchoNet-Dynamic FileList.csv columns plus patient, view, volume unit, ED/ES frames, beats, "
        "quality flags and the reason where a clip is not measurable), OUT/patients_biplane.csv the "
        "biplane EF of patients with both views, OUT/curves/ a volume-curve PNG per clip.",
    )
    parser.add_argument(
        "--2ch",
        dest="sequence_2ch",
        metavar="SEQUENCE",
        default=None,
        help="apical 2-chamber sequence (file, quoted glob of frames, video or DICOM)",
    )
    parser.add_argument(
        "--4ch",
        dest="sequence_4ch",
        metavar="SEQUENCE",
        default=None,
        help="apical 4-chamber sequence (file, quoted glob of frames, video or DICOM)",
    )
    parser.add_argument(
        "--clips",
        metavar="SOURCE",
        default=None,
        help="many clips instead of --2ch/--4ch: a folder (searched recursively), a quoted glob, or a CSV "
        "with a FileName column (EchoNet-Dynamic's FileList.csv works) and optional Patient, View and "
        "Spacing (mm) or SpacingRow/SpacingCol columns",
    )
    parser.add_argument(
        "--shard",
        metavar="I/N",
        default=None,
        help="with --clips: measure only shard I of N (I from 0 to N-1; split by patient, stable when clips "
        "are added), e.g. one SLURM array job each; concatenate their clips.csv files",
    )
    parser.add_argument(
        "--overlay",
        metavar="FORMAT",
        default=None,
        help="with --clips: also write OUT/overlays/<NNNNN>_<clip>.<FORMAT> (mp4 or gif; NNNNN its row in "
        "clips.csv), every frame with its contours",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="trained nnU-Net model folder (e.g. $nnUNet_results/DatasetXXX/"
        "nnUNetTrainerLightEcho__nnUNetPlans__2d); without it, label-map sequences are "
        "measured as they are and grey-level sequences are segmented by the shipped LightEcho "
        "model (CAMUS, 400 patients), which brings frames of any size to its convention",
    )
    parser.add_argument(
        "--fold", default="0", help="fold of the model to use (default 0; 'all' for a model trained on all data)"
    )
    parser.add_argument(
        "--checkpoint", default="checkpoint_final.pth", help="checkpoint file name (default checkpoint_final.pth)"
    )
    # The predictor's options, as in `lightecho predict` (the same predictor segments both); mirroring stays on
    # by default as nnU-Net's own test-time augmentation was before (the LightEcho trainers allow no mirroring).
    add_predictor_options(parser, mirroring_default=True)
    parser.add_argument(
        "--spacing",
        type=bounded(float, 0, low_open=True),
        nargs=2,
        metavar=("ROW", "COL"),
        default=None,
        help="pixel size in mm (rows, columns) for measuring, overriding the file's (videos carry "
        "none); volumes are then in mL. It does not change what the model sees: models that "
        "record an input convention (the shipped one) bring frames of any size to it, others "
        "see the file's own pixel size",
    )
    add_unit_options(parser, "the file's spacing")
    parser.add_argument("--disks", type=DISKS, default=20, help="number of Simpson disks (default 20)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.clinical.cine import cine, is_label_sequence
    from nnunet_lightweight.core.errors import InputError
    from nnunet_lightweight.inference.fast_predictor import FastPredictor
    from nnunet_lightweight.inference.model_folder import load_trained_model
    from nnunet_lightweight.pretrained import shipped_model_folder

    if args.clips is not None:
        if args.sequence_2ch is not None or args.sequence_4ch is not None:
            raise InputError("give either --clips or --2ch/--4ch, not both")
        if args.spacing is not None or args.units != "auto":
            # Clips carry their own spacing (DICOM regions, image headers, the listing's Spacing columns).
            raise InputError(
                "--spacing, --pixel-units and --mm-units apply to --2ch/--4ch; with --clips give "
                "the spacing in the listing's Spacing (or SpacingRow/SpacingCol) column"
            )
        return _run_clips(args)
    if args.sequence_2ch is None and args.sequence_4ch is None:
        raise InputError("give --2ch, --4ch or both (or --clips for many clips)")
    if args.shard is not None or args.overlay is not None:
        raise InputError("--shard and --overlay apply to --clips, not to --2ch/--4ch")
    segmenter = None
    if args.model is not None:
        print(f"loading {args.model} (fold {args.fold})")
        segmenter = FastPredictor(
            load_trained_model(args.model, [args.fold], args.checkpoint), predictor_settings(args), log=None
        )
    elif not all(is_label_sequence(s) for s in (args.sequence_2ch, args.sequence_4ch) if s is not None):
        model_folder = shipped_model_folder()
        print(f"segmenting with the shipped model {model_folder.name}")
        segmenter = FastPredictor(
            load_trained_model(model_folder, [args.fold], args.checkpoint), predictor_settings(args), log=None
        )
    report = cine(
        args.output,
        args.sequence_2ch,
        args.sequence_4ch,
        segmenter,
        args.spacing,
        args.units,
        args.disks,
        args.overwrite,
    )
    for view, entry in report["views"].items():
        reference = ""
        if entry["reference_ed_frame"] is not None:
            reference = f" (Info: ED {entry['reference_ed_frame']}, ES {entry['reference_es_frame']})"
        print(
            f"{view}: {entry['n_frames']} frames, ED frame {entry['ed_frame']}, ES frame {entry['es_frame']}"
            f"{reference}; single-plane EDV {entry['edv']:.4g}, ESV {entry['esv']:.4g} {entry['volume_unit']}, "
            f"EF {entry['ef_single_plane']:.1f} %"
        )
        for warning in entry["warnings"]:
            print(f"  warning: {warning}")
    if "biplane" in report:
        biplane = report["biplane"]
        print(
            f"biplane: EDV {biplane['edv']:.4g}, ESV {biplane['esv']:.4g} {biplane['volume_unit']}, "
            f"EF {biplane['ef']:.1f} %"
        )
    print(f"written: {args.output}/cine.json, curves.csv, volume_curve.png")
    return 0


def _run_clips(args: argparse.Namespace) -> int:
    # The batch workflow imports scipy.signal and PyAV: only this form pays for them.
    from nnunet_lightweight.inference.fast_predictor import FastPredictor
    from nnunet_lightweight.inference.model_folder import load_trained_model
    from nnunet_lightweight.pretrained import shipped_model_folder
    from nnunet_lightweight.workflows.cine_batch import cine_batch, parse_shard

    shard_index, shard_count = parse_shard(args.shard or "0/1")
    model_folder = args.model if args.model is not None else shipped_model_folder()
    print(f"segmenting with {model_folder}" + (f" (fold {args.fold})" if args.model is not None else ""))
    predictor = FastPredictor(
        load_trained_model(model_folder, [args.fold], args.checkpoint), predictor_settings(args), log=None
    )
    summary = cine_batch(
        args.clips,
        args.output,
        predictor,
        shard_index,
        shard_count,
        overlay=args.overlay,
        n_disks=args.disks,
        overwrite=args.overwrite,
    )
    print(f"written: {args.output}/clips.csv ({summary['clips']} clips, {summary['measured']} measured)")
    return 0
