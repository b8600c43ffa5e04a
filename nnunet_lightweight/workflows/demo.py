"""`lightecho demo`: data -> nnU-Net plans -> LightEcho and default nnU-Net side by side -> report.md.

Every nnU-Net folder lives under the work directory. Each step leaves its output there and is skipped when
that output exists, so an interrupted demo resumes; a work directory made with other settings is refused.
"""

import contextlib
import json
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nnunet_lightweight.clinical.ejection_fraction import ef
from nnunet_lightweight.clinical.volume_curves import cine_volume_curve, plot_volume_curves
from nnunet_lightweight.conversion.camus import convert_camus
from nnunet_lightweight.conversion.phantom import generate_phantom
from nnunet_lightweight.core.commands import console_command
from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.core.image_io import read_sequence_file, write_frame
from nnunet_lightweight.core.nnunet_paths import environment_variable
from nnunet_lightweight.core.output import check_not_input, check_writable, write_text_atomically
from nnunet_lightweight.evaluation import compare_models
from nnunet_lightweight.evaluation.compare import paired_difference_table
from nnunet_lightweight.evaluation.overlays import save_overlays
from nnunet_lightweight.inference.benchmark import time_engine
from nnunet_lightweight.inference.engines import build_engine, count_gmacs, resolve_device
from nnunet_lightweight.inference.fast_predictor import FastPredictor, predict
from nnunet_lightweight.inference.model_folder import find_trainer_class, load_trained_model
from nnunet_lightweight.inference.settings import PredictorSettings
from nnunet_lightweight.network import count_parameters
from nnunet_lightweight.pretrained import shipped_model_folder
from nnunet_lightweight.workflows.demo_report import demo_report_markdown

DATASET_ID = 990
DATASET_NAME = f"Dataset{DATASET_ID}_CAMUS"
N_STEPS = 12
# A real apical 4-chamber cine loop shipped with the package (attribution in data/README.md).
REAL_LOOP = Path(__file__).resolve().parent.parent / "data" / "a4c_sequence.nii.gz"
REAL_LOOP_STRIP_FRAMES = 6


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains on and how long."""

    data: str  # "phantom" or the path of a CAMUS download
    phantom_patients: int
    phantom_size: int
    light_trainer: str
    default_trainer: str
    split: str
    device: str


def demo_settings(quick: bool = False, camus: str | os.PathLike | None = None, device: str = "auto") -> DemoSettings:
    """Settings for the synthetic demo (`quick` or full) or for real CAMUS data with the paper's schedule."""
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if camus is not None:
        return DemoSettings(
            str(Path(camus).expanduser().resolve()),
            0,
            0,
            "nnUNetTrainerLightEcho",
            "nnUNetTrainer_100epochs",
            "paper",
            device,
        )
    # Both models get the same wall-clock training budget (training/wall_clock_budget.py); the full demo tests on
    # a quarter of 40 patients: 10 patients, 40 frames.
    if quick:
        return DemoSettings(
            "phantom", 16, 96, "nnUNetTrainerLightEcho_Budget30s", "nnUNetTrainer_Budget30s", "official", device
        )
    return DemoSettings(
        "phantom", 40, 128, "nnUNetTrainerLightEcho_Budget240s", "nnUNetTrainer_Budget240s", "official", device
    )


MODELS = {"LightEcho": "light_trainer", "nnU-Net default": "default_trainer"}
NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


class Demo:
    """The demo pipeline on one work directory; `run()` does every step not done yet."""

    def __init__(self, work_dir: str | os.PathLike, settings: DemoSettings):
        self.work_dir = Path(work_dir).expanduser().resolve()
        self.settings = settings
        self.env = dict(
            os.environ,
            nnUNet_raw=str(self.work_dir / "nnUNet_raw"),
            nnUNet_preprocessed=str(self.work_dir / "nnUNet_preprocessed"),
            nnUNet_results=str(self.work_dir / "nnUNet_results"),
            nnUNet_def_n_proc=os.environ.get("nnUNet_def_n_proc", "2"),
        )
        self.raw = self.work_dir / "nnUNet_raw" / DATASET_NAME
        self.report_dir = self.work_dir / "report"
        self.real_loop_model: Path | None = None  # None: the shipped model (tests use another)
        self.step = 0

    def trainer(self, model: str) -> str:
        return getattr(self.settings, MODELS[model])

    def training_rule(self) -> str:
        """How long the models trained, in words, from their trainer classes."""

        budgets = {getattr(find_trainer_class(self.trainer(model)), "budget_seconds", None) for model in MODELS}
        if len(budgets) == 1 and None not in budgets:
            return (
                f"equal wall-clock budget, {budgets.pop():.0f} s of training per model: each trains until the "
                "next epoch would overrun the budget, its learning rate decaying polynomially (nnU-Net's "
                "exponent 0.9) over the budget, and keeps its last weights; the cheaper model gets more epochs"
            )
        return (
            "each trainer's own schedule (" + ", ".join(f"{model}: `{self.trainer(model)}`" for model in MODELS) + ")"
        )

    def results_folder(self, model: str) -> Path:
        return self.work_dir / "nnUNet_results" / DATASET_NAME / f"{self.trainer(model)}__nnUNetPlans__2d"

    def prediction_folder(self, model: str, postprocessed: bool) -> Path:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", model).strip("_").lower()
        return self.work_dir / "predictions" / slug / ("postprocessed" if postprocessed else "raw")

    def _announce(self, text: str) -> None:
        self.step += 1
        print(f"[demo {self.step}/{N_STEPS}] {text}", flush=True)

    def _claim_work_dir(self) -> None:
        if self.settings.data != "phantom":
            check_not_input(self.work_dir, [self.settings.data], "work directory")
        check_writable(self.work_dir, "work directory")
        settings_file = self.work_dir / "demo_settings.json"
        if settings_file.is_file():
            previous = json.loads(settings_file.read_text())
            if previous != asdict(self.settings):
                raise InputError(
                    f"{self.work_dir} holds a demo made with other settings ({settings_file}); "
                    "use another --output folder or delete this one"
                )
            print(f"[demo] resuming in {self.work_dir}", flush=True)
        elif self.work_dir.exists() and any(self.work_dir.iterdir()):
            raise InputError(f"{self.work_dir} exists, is not empty and is not a demo folder: choose another --output")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        settings_file.write_text(json.dumps(asdict(self.settings), indent=1))

    def run(self) -> Path:
        """Run every missing step and write `report.md`; returns its path. nnU-Net's folders point into the work
        directory while it runs (the in-process steps read them from the environment) and are restored after."""
        self._claim_work_dir()
        with contextlib.ExitStack() as folders:
            for name in NNUNET_FOLDERS:
                folders.enter_context(environment_variable(name, self.env[name]))
            return self._run_steps()

    def _run_steps(self) -> Path:
        started = time.perf_counter()
        self.prepare_data()
        self.plan()
        training = {model: self.train(model) for model in MODELS}
        for model in MODELS:
            self.predict(model)
        self.postprocess()
        comparison = self.compare()
        ef_reports = self.ejection_fraction()
        efficiency = self.efficiency()
        real_loop = self.real_loop()
        report = self.write_report(
            training, efficiency, comparison, ef_reports, real_loop, time.perf_counter() - started
        )
        print(f"[demo] done: {report}", flush=True)
        return report

    def prepare_data(self) -> None:

        source = Path(self.settings.data) if self.settings.data != "phantom" else self.work_dir / "phantom"
        if self.settings.data == "phantom":
            self._announce(
                f"synthetic echo phantom: {self.settings.phantom_patients} patients, "
                f"{self.settings.phantom_size}x{self.settings.phantom_size} frames"
            )
            if not (source / "phantom_truth.json").is_file():
                generate_phantom(
                    source,
                    self.settings.phantom_patients,
                    self.settings.phantom_size,
                    test_fraction=0.25,
                    overwrite=source.exists(),
                )
        else:
            self._announce(f"CAMUS data from {source}")
        if not (self.raw / "dataset.json").is_file():
            convert_camus(
                source,
                DATASET_ID,
                split=self.settings.split,
                raw_dir=self.work_dir / "nnUNet_raw",
                overwrite=self.raw.exists(),
            )

    def plan(self) -> None:
        self._announce("nnU-Net fingerprint, default 2d plans, preprocessing, LightEcho plans (lightecho plan)")
        if not (self.work_dir / "nnUNet_preprocessed" / DATASET_NAME / "nnUNetPlansLightEcho.json").is_file():
            self._run_streaming(["lightecho", "plan", "-d", str(DATASET_ID)], self.work_dir / "logs" / "plan.log")

    def train(self, model: str) -> dict:
        """Train fold 0 with nnUNetv2_train (resuming with --c); returns its `training_record`."""
        self._announce(f"training {model} ({self.trainer(model)}) on {self.settings.device}")
        fold = self.results_folder(model) / "fold_0"
        if not (fold / "checkpoint_final.pth").is_file():
            command = [
                "nnUNetv2_train",
                str(DATASET_ID),
                "2d",
                "0",
                "-tr",
                self.trainer(model),
                "-device",
                self.settings.device,
            ]
            if (fold / "checkpoint_latest.pth").is_file() or (fold / "checkpoint_best.pth").is_file():
                command.append("--c")
            self._run_streaming(command, self.work_dir / "logs" / f"train_{fold.parent.name}.log")
        return training_record(fold / "checkpoint_final.pth")

    def _run_streaming(self, command: list[str], log_file: Path) -> None:
        """Run a console command (shown as the user would type it) with this interpreter, keep its whole output in
        `log_file` and echo the epoch lines as progress."""
        log_file.parent.mkdir(parents=True, exist_ok=True)
        print(f"        $ {' '.join(command)}  (log: {log_file})", flush=True)
        runnable = console_command(*command)
        with (
            open(log_file, "w") as log,
            subprocess.Popen(
                runnable, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            ) as process,
        ):
            for line in process.stdout:
                log.write(line)
                if re.search(r"Epoch \d+$|Pseudo dice|Mean Validation Dice|Early stopping", line.strip()):
                    print("        " + line.strip().split(": ", 1)[-1], flush=True)
        if process.returncode != 0:
            raise RuntimeError(f"{command[0]} failed with exit code {process.returncode}; see {log_file}")

    def predict(self, model: str) -> None:
        """The held-out test frames through the one predictor of `lightecho predict`, as nnUNetv2_predict would
        (fp32, nnU-Net's mirroring where the checkpoint allows it, no CCA: post-processing is the next step)
        without its start-up and worker processes."""
        self._announce(f"predicting the held-out test frames with {model} (lightecho predict's predictor)")
        out = self.prediction_folder(model, postprocessed=False)
        # A demo folder from before this predictor holds nnUNetv2_predict's record instead: resume, don't redo.
        if not any(
            (out / record).is_file() for record in ("prediction_summary.json", "predict_from_raw_data_args.json")
        ):
            settings = PredictorSettings(
                device=self.settings.device, backend="torch", precision="fp32", cca=False, mirroring=True
            )
            summary = predict(self.results_folder(model), self.raw / "imagesTs", out, settings, [0], verbose=False)
            print(f"        {summary['timing']['frames']} frames in {summary['timing']['seconds']:.1f} s", flush=True)

    def postprocess(self) -> None:
        """nnU-Net's own CCA, chosen on the fold-0 validation cases and applied to the test predictions."""
        from nnunetv2.postprocessing.remove_connected_components import (
            apply_postprocessing_to_folder,
            determine_postprocessing,
        )

        self._announce("connected-component post-processing (nnUNetv2_determine/apply_postprocessing)")
        ground_truth = self.work_dir / "nnUNet_preprocessed" / DATASET_NAME / "gt_segmentations"
        for model in MODELS:
            out = self.prediction_folder(model, postprocessed=True)
            if out.is_dir():
                continue
            results = self.results_folder(model)
            plans, dataset_json = str(results / "plans.json"), str(results / "dataset.json")
            pp_fns, pp_kwargs = determine_postprocessing(
                str(results / "fold_0" / "validation"), str(ground_truth), plans, dataset_json, num_processes=2
            )
            staging = out.with_name(out.name + ".partial")
            apply_postprocessing_to_folder(
                str(self.prediction_folder(model, postprocessed=False)),
                str(staging),
                pp_fns,
                pp_kwargs,
                plans,
                dataset_json,
                num_processes=2,
            )
            staging.rename(out)

    def compare(self) -> dict:

        self._announce("evaluation: Dice, HD, paired differences with 95 % CIs, Wilcoxon tests, outliers, overlays")
        predictions = {model: self.prediction_folder(model, postprocessed=True) for model in MODELS}
        comparison = compare_models(predictions, self.raw / "labelsTs", self.report_dir / "comparison", overwrite=True)
        comparison["differences"] = paired_difference_table(comparison["metrics"], *MODELS)
        write_text_atomically(
            self.report_dir / "differences.csv", comparison["differences"].to_csv(index=False, float_format="%.6g")
        )
        cases = comparison["cases"][:4]
        for model, folder in predictions.items():
            save_overlays(
                self.raw / "imagesTs",
                folder,
                self.raw / "labelsTs",
                cases,
                self.report_dir / f"overlays_{folder.parent.name}.png",
            )
        return comparison

    def ejection_fraction(self) -> dict:

        self._announce("EDV, ESV and EF from predicted vs reference masks (Simpson biplane), Bland-Altman")
        reports = {}
        for model in MODELS:
            folder = self.prediction_folder(model, postprocessed=True)
            try:
                reports[model] = ef(
                    self.report_dir / f"ef_{folder.parent.name}",
                    pred_dir=folder,
                    ref_dir=self.raw / "labelsTs",
                    metadata_path=self.raw / "camus_metadata.json",
                    overwrite=True,
                )
            except InputError as error:
                # A barely trained model can leave no patient with a measurable LV: the report says so.
                print(f"        EF not measurable for {model}: {error}", flush=True)
                reports[model] = {"agreement": None, "error": str(error)}
        return reports

    def efficiency(self) -> dict:
        """Parameters, GMACs and inference ms per frame of both trained networks, timed side by side on this
        machine (rounds alternate between the models, so that both see the same load); kept in efficiency.json."""
        self._announce("cost per frame: parameters, GMACs, inference time of both networks side by side")
        saved = self.report_dir / "efficiency.json"
        if saved.is_file():
            return json.loads(saved.read_text())
        result = measure_efficiency({model: self.results_folder(model) for model in MODELS}, self.settings.device)
        self.report_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomically(saved, json.dumps(result, indent=1))
        return result

    def real_loop(self) -> dict:
        """The shipped CAMUS LightEcho model on the bundled real cine loop: overlay strip, LV volume curve with
        ED/ES, single-plane EF (kept in real_loop/real_loop.json); {"skipped": reason} without a shipped model."""

        self._announce("the shipped CAMUS LightEcho model on a real apical 4-chamber cine loop")
        out = self.report_dir / "real_loop"
        if (out / "real_loop.json").is_file():
            return json.loads((out / "real_loop.json").read_text())
        try:
            model_folder = self.real_loop_model or shipped_model_folder()
        except InputError as error:
            print(f"        skipped: {error}", flush=True)
            return {"skipped": str(error)}
        result = segment_real_loop(model_folder, REAL_LOOP, out, self.settings.device)
        print(
            f"        {result['frames']} frames; "
            + (f"single-plane EF {result['ef']:.1f} %" if "ef" in result else f"EF not measurable: {result['error']}"),
            flush=True,
        )
        return result

    def write_report(
        self, training: dict, efficiency: dict, comparison: dict, ef_reports: dict, real_loop: dict, wall_time: float
    ) -> Path:

        self._announce("writing report.md")
        text = demo_report_markdown(self, training, efficiency, comparison, ef_reports, real_loop, wall_time)
        report = self.work_dir / "report.md"
        report.write_text(text)
        return report


def training_record(checkpoint: Path) -> dict:
    """What a final nnU-Net checkpoint says about its training: epochs, their wall times, the EMA pseudo-Dice
    history (nnU-Net's checkpoint_best criterion) and the forward passes its predictor makes per frame."""
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    logging = saved["logging"]
    seconds = [end - start for start, end in zip(logging["epoch_start_timestamps"], logging["epoch_end_timestamps"])]
    mirror_axes = saved.get("inference_allowed_mirroring_axes") or ()
    return {
        "seconds": float(sum(seconds)),
        "epochs": len(seconds),
        "epoch_seconds": float(sum(seconds) / len(seconds)),
        "ema_fg_dice": [float(v) for v in logging["ema_fg_dice"]],
        "passes_per_frame": 2 ** len(mirror_axes),
    }


def trained_network(results_folder: Path):
    """The fold-0 network of a results folder (eval mode, trained weights) as every command loads it, and its 2D
    patch size."""
    model = load_trained_model(results_folder, folds=[0])
    return model.network, model.patch_size


def measure_efficiency(results_folders: dict[str, Path], device: str, rounds: int = 3) -> dict:
    """Per model: parameters, GMACs of one frame, and inference ms per frame (batch 1, torch fp32 engine, the
    median over `rounds` alternating timings)."""
    import statistics

    import torch

    target = resolve_device(device)
    result, engines = {}, {}
    for model, folder in results_folders.items():
        network, patch = trained_network(folder)
        shape = (1, 1, *patch)
        result[model] = {
            "parameters": count_parameters(network),
            "gmacs": count_gmacs(network, shape),
            "frame": list(patch),
            "backend": "torch fp32, batch 1",
            "device": target.type,
            "ms": [],
        }
        engines[model] = (
            build_engine(network, "torch", target, "fp32", shape, log=None),
            torch.rand(shape, device=target),
        )
    for _ in range(rounds):
        for model, (engine, images) in engines.items():
            result[model]["ms"].append(
                time_engine(engine, images, target, iterations=30, max_seconds=3.0)["ms_per_frame"]
            )
    for model in result:
        result[model]["ms_per_frame"] = statistics.median(result[model].pop("ms"))
    return result


def segment_real_loop(model_folder: Path, loop: Path, out: Path, device: str = "cpu") -> dict:
    """Segment every frame of `loop` with the model (cropped to its sector, resized to the model's frames and back),
    write an overlay strip, the LV volume curve with ED/ES marked and real_loop.json (staged: all or nothing)."""
    import shutil

    import numpy as np

    sequence = read_sequence_file(loop)
    predictor = FastPredictor(load_trained_model(model_folder), PredictorSettings(device=device), log=None)
    masks = predictor(sequence.frames, spacing=sequence.spacing)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)  # a leftover of an interrupted run of this step
    staging.mkdir(parents=True)
    result = {
        "model": str(model_folder),
        "loop": loop.name,
        "frames": int(len(masks)),
        "size": list(sequence.frames.shape[1:]),
        "spacing_mm": list(sequence.spacing),
    }
    strip = list(np.linspace(0, len(masks) - 1, REAL_LOOP_STRIP_FRAMES).round().astype(int))
    curve = None
    try:
        curve = cine_volume_curve(masks, sequence.spacing, view="4CH")
    except InputError as error:  # e.g. no frame with a measurable LV: the report says so
        result["error"] = str(error)
    else:
        result.update(
            ed_frame=curve.ed_index + 1,
            es_frame=curve.es_index + 1,
            edv_ml=curve.edv,
            esv_ml=curve.esv,
            ef=curve.ef,
            volumes_ml=[None if np.isnan(v) else float(v) for v in curve.volumes],
        )
        plot_volume_curves([curve], staging / "volume_curve.png", title=f"{loop.name}: LV volume")
        strip = sorted(set(strip[1:-1]) | {curve.ed_index, curve.es_index})
    # nnU-Net-style 2D files of the strip's frames, so that the overlay helper draws them like any case.
    frames_dir, masks_dir = staging / "frames", staging / "masks"
    frames_dir.mkdir()
    masks_dir.mkdir()
    phases = {curve.ed_index: "_ED", curve.es_index: "_ES"} if curve else {}
    names = []
    for index in strip:
        names.append(f"frame{index + 1:02d}{phases.get(index, '')}")
        write_frame(sequence.frames[index].astype(np.float32), sequence.spacing, frames_dir / f"{names[-1]}.nii.gz")
        write_frame(masks[index].astype(np.uint8), sequence.spacing, masks_dir / f"{names[-1]}.nii.gz")
    save_overlays(frames_dir, masks_dir, None, names, staging / "overlay_strip.png", columns=len(names))
    write_text_atomically(staging / "real_loop.json", json.dumps(result, indent=1))
    if out.exists():
        raise InputError(f"{out} appeared while the real loop was segmented: not replacing it")
    staging.rename(out)
    return result


def demo(
    output: str | os.PathLike = "lightecho_demo", quick: bool = False, camus: str | None = None, device: str = "auto"
) -> Path:
    """Run the demo in `output` (created, or resumed when made by the same settings); returns report.md."""
    if camus is not None and not Path(camus).expanduser().is_dir():
        raise InputError(f"CAMUS folder not found: {camus}")
    return Demo(output, demo_settings(quick, camus, device)).run()
