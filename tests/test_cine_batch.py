"""EF per clip at scale: listings, shards, one row per clip (bad clips included), biplane, and EF agreement."""

import csv

import numpy as np
import pytest
import SimpleITK as sitk
from echo_clips import (
    beat_weights,
    beating_loop,
    camus_phases,
    nearest_frame_segmenter,
    on_canvas,
    placed_box,
    sector_box_of,
    write_dicom,
    write_video,
)

from nnunet_lightweight.clinical.ejection_fraction import ef_table
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.video_readers import grey_from_rgb, read_clip
from nnunet_lightweight.workflows.cine_batch import (
    BIPLANE_CSV,
    CLIP_COLUMNS,
    CLIPS_CSV,
    ClipEntry,
    cine_batch,
    list_clips,
    parse_shard,
    shard,
)

FPS = 25
SPACING_MM = (0.3, 0.3)
# Two full beats (ED at frames 17 and 37, ES at 27 and 47, 0-based) in 60 frames.
WEIGHTS = beat_weights(60, period=20, offset=3)


def _read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _reference_ef(tmp_path, camus_root, views, spacing):
    """`lightecho ef` (ef_table) on the CAMUS ED/ES masks of `views`, written with `spacing`."""
    folder = tmp_path / f"ref_{'_'.join(views)}"
    folder.mkdir()
    for view in views:
        phases = camus_phases(camus_root, view)
        for phase in ("ED", "ES"):
            image = sitk.GetImageFromArray(phases[f"{phase}_gt"])
            image.SetSpacing((spacing[1], spacing[0]))
            sitk.WriteImage(image, str(folder / f"patient0001_{view}_{phase}.nii.gz"))
    return ef_table(folder, units="mm").iloc[0]


def test_list_clips_from_folder_glob_and_listing(tmp_path):
    for name in ("a_4CH.avi", "b.dcm", "sub/c_a2c.mp4", "notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "Videos").mkdir()
    (tmp_path / "Videos" / "0X1A.avi").write_bytes(b"x")
    found = list_clips(tmp_path)
    assert [e.path.name for e in found] == ["0X1A.avi", "a_4CH.avi", "b.dcm", "c_a2c.mp4"]
    assert {e.path.name: e.view for e in found} == {
        "0X1A.avi": None,
        "a_4CH.avi": "4CH",
        "b.dcm": None,
        "c_a2c.mp4": "2CH",
    }
    assert [e.path.name for e in list_clips(tmp_path / "*.avi")] == ["a_4CH.avi"]
    listing = tmp_path / "list.csv"
    listing.write_text("FileName,Patient,View,Spacing\n0X1A,p1,A4C,0.25\nb.dcm,p1,a2c,\n")
    entries = list_clips(listing)
    assert entries[0] == ClipEntry(tmp_path / "Videos" / "0X1A.avi", "p1", "4CH", (0.25, 0.25))  # EchoNet names
    assert entries[1] == ClipEntry(tmp_path / "b.dcm", "p1", "2CH", None)
    (tmp_path / "bad.csv").write_text("Name\nb.dcm\n")
    with pytest.raises(InputError, match="no FileName"):
        list_clips(tmp_path / "bad.csv")
    (tmp_path / "no_name.csv").write_text("FileName,Patient\nb.dcm,p1\n,p2\n")
    with pytest.raises(InputError, match="line 3: no file name"):
        list_clips(tmp_path / "no_name.csv")
    (tmp_path / "bad_spacing.csv").write_text("FileName,Spacing\nb.dcm,-1\n")
    with pytest.raises(InputError, match="line 2: bad spacing"):
        list_clips(tmp_path / "bad_spacing.csv")
    # A spreadsheet's "CSV UTF-8" starts with a byte-order mark; errors name the file's own line (blank lines too).
    (tmp_path / "excel.csv").write_bytes("FileName,Patient\nb.dcm,p1\n\n,p2\n".encode("utf-8-sig"))
    with pytest.raises(InputError, match="line 4: no file name"):
        list_clips(tmp_path / "excel.csv")


def test_shards_partition_the_list_deterministically_and_keep_patients_together(tmp_path):
    entries = [
        ClipEntry(tmp_path / f"clip{i:03d}_{view}.avi", f"patient{i // 2}", view)
        for i, view in zip(range(200), ["2CH", "4CH"] * 100)
    ]
    shards = [shard(entries, i, 4) for i in range(4)]
    assert sorted(e.path for s in shards for e in s) == sorted(e.path for e in entries)  # each clip exactly once
    assert all(25 <= len(s) <= 75 for s in shards)  # balanced enough for array jobs
    for part in shards:
        assert all(sum(e.patient == p for e in part) in (0, 2) for p in {e.patient for e in entries})
    grown = entries + [ClipEntry(tmp_path / "new.avi", "patient_new", "4CH")]
    assert [e for e in shard(grown, 1, 4) if e.patient != "patient_new"] == shards[1]  # adding clips moves none
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "1", "-1/3", "a/b"):
        with pytest.raises(InputError, match="--shard must be I/N"):
            parse_shard(bad)


@pytest.fixture(scope="module")
def batch_clips(camus_root, tmp_path_factory):
    """An A4C AVI (spacing from the listing), an A2C JPEG DICOM with overlays (spacing in its header), and bad
    clips: a truncated AVI, a DICOM without pixel data, a still DICOM, a clip whose segmentation finds no LV."""
    folder = tmp_path_factory.mktemp("batch_clips")
    phases_4ch, phases_2ch = camus_phases(camus_root, "4CH"), camus_phases(camus_root, "2CH")
    frames_4ch, masks_4ch = beating_loop(phases_4ch, WEIGHTS)
    frames_2ch, masks_2ch = beating_loop(phases_2ch, WEIGHTS)
    canvas_2ch, placed_masks_2ch = on_canvas(frames_2ch, masks_2ch)
    write_video(folder / "patient0001_4CH.avi", frames_4ch, FPS, codec="ffv1")
    box_2ch = placed_box(sector_box_of(phases_2ch["ED"]))
    write_dicom(folder / "patient0001_2CH.dcm", canvas_2ch, fps=FPS, spacing_mm=SPACING_MM, sector_box=box_2ch)
    whole = write_video(folder / "whole.avi", frames_4ch, FPS, codec="mpeg4").read_bytes()
    (folder / "whole.avi").unlink()
    (folder / "truncated.avi").write_bytes(whole[: len(whole) // 3])
    write_dicom(folder / "report.dcm", canvas_2ch[:2], pixel_data=False)
    write_dicom(folder / "still.dcm", canvas_2ch[:1])
    write_video(folder / "empty_lv.avi", np.zeros((12, 64, 64), np.uint8) + 100, FPS, codec="ffv1")
    listing = folder / "clips.csv"
    listing.write_text(
        "FileName,Patient,View,Spacing\n"
        f"patient0001_4CH.avi,patient0001,A4C,{SPACING_MM[0]}\n"
        "patient0001_2CH.dcm,patient0001,A2C,\n"
        "truncated.avi,patient0002,A4C,\nreport.dcm,,,\nstill.dcm,,,\nempty_lv.avi,,,\n"
    )
    segment_4ch = nearest_frame_segmenter(frames_4ch, masks_4ch, sector_box_of(phases_4ch["ED"]))
    segment_2ch = nearest_frame_segmenter(grey_from_rgb(canvas_2ch), placed_masks_2ch, box_2ch)

    def segment(frames):
        if frames.shape[1:] == frames_4ch.shape[1:]:
            return segment_4ch(frames)
        if frames.shape[1:] == canvas_2ch.shape[1:3]:
            return segment_2ch(frames)
        return np.zeros(frames.shape, np.uint8)  # the uniform clip: no LV anywhere

    return {"listing": listing, "segment": segment}


def test_batch_rows_ef_agreement_biplane_and_bad_clips(batch_clips, camus_root, tmp_path):
    summary = cine_batch(batch_clips["listing"], tmp_path / "out", batch_clips["segment"], overlay="mp4", progress=None)
    rows = {row["FileName"].rsplit("/", 1)[-1]: row for row in _read_rows(tmp_path / "out" / CLIPS_CSV)}
    assert list(_read_rows(tmp_path / "out" / CLIPS_CSV)[0]) == list(CLIP_COLUMNS)
    assert summary["clips"] == 6 and summary["measured"] == 2
    for name, view in (("patient0001_4CH.avi", "4CH"), ("patient0001_2CH.dcm", "2CH")):
        row = rows[name]
        reference = _reference_ef(tmp_path, camus_root, [view], SPACING_MM)
        assert row["VolumeUnit"] == "mL" and row["Reason"] == "" and row["NumBeats"] == "2"
        assert float(row["EF"]) == pytest.approx(reference["ef"], abs=1.0), f"{name}: EF vs lightecho ef"
        assert float(row["EDV"]) == pytest.approx(reference["edv"], rel=0.02)
        assert float(row["ESV"]) == pytest.approx(reference["esv"], rel=0.02)
        assert int(row["EDFrame"]) in (18, 38) and int(row["ESFrame"]) in (28, 48)  # 1-based
        assert float(row["BeatEFMedian"]) == pytest.approx(float(row["BeatEFMean"]), abs=0.5)
        assert float(row["FPS"]) == pytest.approx(FPS) and row["NumberOfFrames"] == "60"
    assert (rows["patient0001_2CH.dcm"]["FrameHeight"], rows["patient0001_2CH.dcm"]["FrameWidth"]) == ("300", "400")
    reasons = {name: rows[name]["Reason"] for name in ("truncated.avi", "report.dcm", "still.dcm", "empty_lv.avi")}
    assert "truncated" in reasons["truncated.avi"] or "damaged" in reasons["truncated.avi"]
    assert "without pixel data" in reasons["report.dcm"]
    assert "still frame" in reasons["still.dcm"]
    assert "measurable LV" in reasons["empty_lv.avi"]
    assert all(rows[name]["EF"] == "" for name in reasons)
    biplane = _read_rows(tmp_path / "out" / BIPLANE_CSV)
    reference = _reference_ef(tmp_path, camus_root, ["2CH", "4CH"], SPACING_MM)
    assert [p["Patient"] for p in biplane] == ["patient0001"]  # patient0002 has one view only
    assert float(biplane[0]["EF"]) == pytest.approx(reference["ef"], abs=1.0) and biplane[0]["VolumeUnit"] == "mL"
    curves = sorted(p.name for p in (tmp_path / "out" / "curves").iterdir())
    overlays = sorted((tmp_path / "out" / "overlays").iterdir())
    # An overlay for every segmented clip (the one without an LV too: it shows why), curves for measured ones.
    assert len(curves) == 2 and [p.name for p in overlays] == [
        "00001_patient0001_4CH.mp4",
        "00002_patient0001_2CH.mp4",
        "00006_empty_lv.mp4",
    ]
    overlay = read_clip(overlays[0])
    assert overlay.frames.shape[0] == 60 and overlay.coloured.any()  # the contours are drawn in colour


def test_shipped_model_on_the_real_a4c_loop(example_loop, tmp_path):
    """The real loop through the shipped model's predictor: an LV in every frame and a plausible single-plane EF."""
    from nnunet_lightweight.inference.fast_predictor import FastPredictor
    from nnunet_lightweight.inference.model_folder import load_trained_model
    from nnunet_lightweight.inference.settings import PredictorSettings
    from nnunet_lightweight.pretrained import shipped_model_folder

    predictor = FastPredictor(load_trained_model(shipped_model_folder()), PredictorSettings(device="cpu"), log=None)
    summary = cine_batch(example_loop, tmp_path / "out", predictor, progress=None)
    row = _read_rows(tmp_path / "out" / CLIPS_CSV)[0]
    assert summary["measured"] == 1, row["Reason"]
    assert row["VolumeUnit"] == "mL"  # 0.4 mm pixels from the NIfTI header
    assert "unmeasurable_frames" not in row["QualityFlags"]
    assert 20 <= float(row["EF"]) <= 85 and 40 <= float(row["EDV"]) <= 250


def test_a_failing_segmentation_is_one_rows_reason(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_video(clips / "a.avi", np.full((6, 32, 32), 90, np.uint8), FPS, codec="ffv1")
    write_video(clips / "b.avi", np.full((6, 48, 48), 90, np.uint8), FPS, codec="ffv1")

    def segment(frames):
        if frames.shape[1] == 32:
            raise RuntimeError("engine failed")
        return np.zeros(frames.shape, np.uint8)

    summary = cine_batch(clips, tmp_path / "out", segment, curves=False, progress=None)
    rows = _read_rows(tmp_path / "out" / CLIPS_CSV)
    assert summary["clips"] == 2 and [r["FileName"].rsplit("/", 1)[-1] for r in rows] == ["a.avi", "b.avi"]
    assert rows[0]["Reason"] == "RuntimeError: engine failed" and rows[0]["FrameHeight"] == "32"
    assert "measurable LV" in rows[1]["Reason"]
    assert rows[1]["QualityFlags"].startswith("spacing_unknown") and rows[1]["VolumeUnit"] == "px^3"


def test_label_map_clips_are_measured_not_segmented_and_listed_outputs_are_inputs(tmp_path):
    """A clip file of label maps (e.g. a `<view>_masks.nii.gz` that `cine` wrote) is measured as it is, as `cine`
    does; a listing that names a file inside the output folder makes that folder an input."""
    from clinical_shapes import sequence_axes, sequence_masks, write_sequence

    from nnunet_lightweight.clinical.cine import cine

    axes = sequence_axes(10, ed_frame=2, ed_axes=(80, 26, 24), es_axes=(68, 18, 17))
    clips = tmp_path / "clips"
    clips.mkdir()
    write_sequence(clips / "p1_4CH_half_sequence_gt.nii.gz", sequence_masks(axes, "4CH", (0.4, 0.4)), (0.4, 0.4))

    def never(frames):
        raise AssertionError("label maps were segmented")

    cine_batch(clips, tmp_path / "out", never, curves=False, progress=None)
    row = _read_rows(tmp_path / "out" / CLIPS_CSV)[0]
    single = cine(tmp_path / "single", sequence_4ch=clips / "p1_4CH_half_sequence_gt.nii.gz")["views"]["4CH"]
    assert float(row["EF"]) == pytest.approx(single["ef_single_plane"], abs=0.1) and row["VolumeUnit"] == "mL"
    listing = tmp_path / "list.csv"
    listing.write_text(f"FileName\n{tmp_path / 'out' / CLIPS_CSV}\n")
    with pytest.raises(InputError, match="contains the input"):
        cine_batch(listing, tmp_path / "out", never, overwrite=True, progress=None)
    assert (tmp_path / "out" / CLIPS_CSV).is_file()


def test_cine_clips_command_measures_a_folder_in_shards(example_loop, tmp_path, capsys):
    """`lightecho cine --clips`: the shipped model on every clip of a folder; shards partition it; a broken clip
    is a row with its reason, not a failed command."""
    from nnunet_lightweight.cli import main

    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "patient1_4CH.nii.gz").write_bytes(example_loop.read_bytes())
    (clips / "patient2_4CH.avi").write_bytes(b"RIFF not really a video")
    engine = ["--backend", "torch", "--precision", "fp32", "--device", "cpu"]
    assert main(["cine", "--clips", str(clips), "-o", str(tmp_path / "all"), *engine]) == 0
    rows = {r["FileName"].rsplit("/", 1)[-1]: r for r in _read_rows(tmp_path / "all" / CLIPS_CSV)}
    assert set(rows) == {"patient1_4CH.nii.gz", "patient2_4CH.avi"}
    assert 20 <= float(rows["patient1_4CH.nii.gz"]["EF"]) <= 85 and rows["patient1_4CH.nii.gz"]["View"] == "4CH"
    assert rows["patient2_4CH.avi"]["EF"] == "" and rows["patient2_4CH.avi"]["Reason"]
    assert "2 clips, 1 measured" in capsys.readouterr().out
    shards = []
    for index in (0, 1):
        out = tmp_path / f"shard{index}"
        assert main(["cine", "--clips", str(clips), "--shard", f"{index}/2", "-o", str(out), *engine]) == 0
        shards += [r["FileName"] for r in _read_rows(out / CLIPS_CSV)] if (out / CLIPS_CSV).is_file() else []
    assert sorted(shards) == sorted(r["FileName"] for r in rows.values())
    assert main(["cine", "--clips", str(clips), "--shard", "2/2", "-o", str(tmp_path / "bad")]) == 2
    # batch options without --clips, and a fold the shipped model does not have, are refused (they were ignored)
    loop = str(clips / "patient1_4CH.nii.gz")
    assert main(["cine", "--4ch", loop, "--shard", "0/2", "-o", str(tmp_path / "single")]) == 2
    assert main(["cine", "--4ch", loop, "--fold", "7", "-o", str(tmp_path / "single")]) == 2
    assert "fold_7" in capsys.readouterr().err
    assert main(["cine", "--clips", str(clips), "--4ch", str(example_loop), "-o", str(tmp_path / "both")]) == 2
    spacing = ["--spacing", "0.3", "0.3"]  # clips carry their own; a flag that would be ignored is refused
    assert main(["cine", "--clips", str(clips), *spacing, "-o", str(tmp_path / "spacing")]) == 2
    assert not any((tmp_path / name).exists() for name in ("bad", "both", "spacing"))
