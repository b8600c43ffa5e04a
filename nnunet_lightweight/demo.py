"""`lightecho demo`: data -> nnU-Net plans -> LightEcho and default nnU-Net side by side -> report.md.

Every nnU-Net folder lives under the work directory. Each step leaves its output there and is skipped when
that output exists, so an interrupted demo resumes; a work directory made with other settings is refused.
"""
import json
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dataset_conversion.common import check_not_input, check_writable
from nnunet_lightweight.errors import InputError

DATASET_ID = 990
DATASET_NAME = f"Dataset{DATASET_ID}_CAMUS"
N_STEPS = 10


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
        return DemoSettings(str(Path(camus).expanduser().resolve()), 0, 0, "nnUNetTrainerLightEcho",
                            "nnUNetTrainer_100epochs", "paper", device)
    if quick:
        return DemoSettings("phantom", 16, 96, "nnUNetTrainerLightEcho_Batch8_5epochs",
                            "nnUNetTrainer_OnePassEpochs_5epochs", "official", device)
    return DemoSettings("phantom", 20, 128, "nnUNetTrainerLightEcho_Batch8_20epochs",
                        "nnUNetTrainer_OnePassEpochs_20epochs", "official", device)


MODELS = {"LightEcho": "light_trainer", "nnU-Net default": "default_trainer"}


class Demo:
    """The demo pipeline on one work directory; `run()` does every step not done yet."""

    def __init__(self, work_dir: str | os.PathLike, settings: DemoSettings):
        self.work_dir = Path(work_dir).expanduser().resolve()
        self.settings = settings
        self.env = dict(os.environ, nnUNet_raw=str(self.work_dir / "nnUNet_raw"),
                        nnUNet_preprocessed=str(self.work_dir / "nnUNet_preprocessed"),
                        nnUNet_results=str(self.work_dir / "nnUNet_results"),
                        nnUNet_def_n_proc=os.environ.get("nnUNet_def_n_proc", "2"))
        self.raw = self.work_dir / "nnUNet_raw" / DATASET_NAME
        self.report_dir = self.work_dir / "report"
        self.step = 0

    def trainer(self, model: str) -> str:
        return getattr(self.settings, MODELS[model])

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
                raise InputError(f"{self.work_dir} holds a demo made with other settings ({settings_file}); "
                                 "use another --output folder or delete this one")
            print(f"[demo] resuming in {self.work_dir}", flush=True)
        elif self.work_dir.exists() and any(self.work_dir.iterdir()):
            raise InputError(f"{self.work_dir} exists, is not empty and is not a demo folder: choose another --output")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        settings_file.write_text(json.dumps(asdict(self.settings), indent=1))
        os.environ.update({k: self.env[k] for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})

    def run(self) -> Path:
        """Run every missing step and write `report.md`; returns its path."""
        self._claim_work_dir()
        started = time.perf_counter()
        self.prepare_data()
        self.plan()
        durations = {model: self.train(model) for model in MODELS}
        for model in MODELS:
            self.predict(model)
        self.postprocess()
        comparison = self.compare()
        ef_reports = self.ejection_fraction()
        report = self.write_report(durations, comparison, ef_reports, time.perf_counter() - started)
        print(f"[demo] done: {report}", flush=True)
        return report

    def prepare_data(self) -> None:
        from dataset_conversion.camus import convert_camus
        from dataset_conversion.phantom import generate_phantom

        source = Path(self.settings.data) if self.settings.data != "phantom" else self.work_dir / "phantom"
        if self.settings.data == "phantom":
            self._announce(f"synthetic echo phantom: {self.settings.phantom_patients} patients, "
                           f"{self.settings.phantom_size}x{self.settings.phantom_size} frames")
            if not (source / "phantom_truth.json").is_file():
                generate_phantom(source, self.settings.phantom_patients, self.settings.phantom_size,
                                 test_fraction=0.25, overwrite=source.exists())
        else:
            self._announce(f"CAMUS data from {source}")
        if not (self.raw / "dataset.json").is_file():
            convert_camus(source, DATASET_ID, split=self.settings.split,
                          raw_dir=self.work_dir / "nnUNet_raw", overwrite=self.raw.exists())

    def plan(self) -> None:
        self._announce("nnU-Net fingerprint, default 2d plans, preprocessing, LightEcho plans (lightecho plan)")
        if not (self.work_dir / "nnUNet_preprocessed" / DATASET_NAME / "nnUNetPlansLightEcho.json").is_file():
            self._run_streaming(["lightecho", "plan", "-d", str(DATASET_ID)], self.work_dir / "logs" / "plan.log")

    def train(self, model: str) -> float:
        """Train fold 0 with nnUNetv2_train (resuming with --c); returns the summed epoch wall time."""
        import torch

        self._announce(f"training {model} ({self.trainer(model)}) on {self.settings.device}")
        fold = self.results_folder(model) / "fold_0"
        if not (fold / "checkpoint_final.pth").is_file():
            command = ["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", self.trainer(model),
                       "-device", self.settings.device]
            if (fold / "checkpoint_latest.pth").is_file() or (fold / "checkpoint_best.pth").is_file():
                command.append("--c")
            self._run_streaming(command, self.work_dir / "logs" / f"train_{fold.parent.name}.log")
        logging = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["logging"]
        return float(sum(end - start for start, end in zip(logging["epoch_start_timestamps"],
                                                            logging["epoch_end_timestamps"])))

    def _run_streaming(self, command: list[str], log_file: Path) -> None:
        """Run a command, keep its whole output in `log_file` and echo the epoch lines as progress."""
        log_file.parent.mkdir(parents=True, exist_ok=True)
        print(f"        $ {' '.join(command)}  (log: {log_file})", flush=True)
        with open(log_file, "w") as log, subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE,
                                                          stderr=subprocess.STDOUT, text=True) as process:
            for line in process.stdout:
                log.write(line)
                if re.search(r"Epoch \d+$|Pseudo dice|Mean Validation Dice|Early stopping", line.strip()):
                    print("        " + line.strip().split(": ", 1)[-1], flush=True)
        if process.returncode != 0:
            raise RuntimeError(f"{command[0]} failed with exit code {process.returncode}; see {log_file}")

    def predict(self, model: str) -> None:
        self._announce(f"predicting the held-out test frames with {model} (nnUNetv2_predict)")
        out = self.prediction_folder(model, postprocessed=False)
        if not (out / "predict_from_raw_data_args.json").is_file():
            self._run_streaming(["nnUNetv2_predict", "-i", str(self.raw / "imagesTs"), "-o", str(out),
                                 "-d", str(DATASET_ID), "-c", "2d", "-f", "0", "-tr", self.trainer(model),
                                 "-device", self.settings.device, "-npp", "1", "-nps", "1"],
                                self.work_dir / "logs" / f"predict_{out.parent.name}.log")

    def postprocess(self) -> None:
        """nnU-Net's own CCA, chosen on the fold-0 validation cases and applied to the test predictions."""
        from nnunetv2.postprocessing.remove_connected_components import (apply_postprocessing_to_folder,
                                                                         determine_postprocessing)

        self._announce("connected-component post-processing (nnUNetv2_determine/apply_postprocessing)")
        ground_truth = self.work_dir / "nnUNet_preprocessed" / DATASET_NAME / "gt_segmentations"
        for model in MODELS:
            out = self.prediction_folder(model, postprocessed=True)
            if out.is_dir():
                continue
            results = self.results_folder(model)
            plans, dataset_json = str(results / "plans.json"), str(results / "dataset.json")
            pp_fns, pp_kwargs = determine_postprocessing(str(results / "fold_0" / "validation"), str(ground_truth),
                                                         plans, dataset_json, num_processes=2)
            staging = out.with_name(out.name + ".partial")
            apply_postprocessing_to_folder(str(self.prediction_folder(model, postprocessed=False)), str(staging),
                                           pp_fns, pp_kwargs, plans, dataset_json, num_processes=2)
            staging.rename(out)

    def compare(self) -> dict:
        from nnunet_lightweight.evaluation import compare_models, save_overlays

        self._announce("evaluation: Dice, HD, anatomical outliers, Wilcoxon tests, boxplots, overlays")
        predictions = {model: self.prediction_folder(model, postprocessed=True) for model in MODELS}
        comparison = compare_models(predictions, self.raw / "labelsTs", self.report_dir / "comparison",
                                    overwrite=True)
        cases = comparison["cases"][:4]
        for model, folder in predictions.items():
            save_overlays(self.raw / "imagesTs", folder, self.raw / "labelsTs", cases,
                          self.report_dir / f"overlays_{folder.parent.name}.png")
        return comparison

    def ejection_fraction(self) -> dict:
        from nnunet_lightweight.clinical.ejection_fraction import ef

        self._announce("EDV, ESV and EF from predicted vs reference masks (Simpson biplane), Bland-Altman")
        reports = {}
        for model in MODELS:
            folder = self.prediction_folder(model, postprocessed=True)
            try:
                reports[model] = ef(self.report_dir / f"ef_{folder.parent.name}", pred_dir=folder,
                                    ref_dir=self.raw / "labelsTs", metadata_path=self.raw / "camus_metadata.json",
                                    overwrite=True)
            except InputError as error:
                # A barely trained model can leave no patient with a measurable LV: the report says so.
                print(f"        EF not measurable for {model}: {error}", flush=True)
                reports[model] = {"agreement": None, "error": str(error)}
        return reports

    def write_report(self, durations: dict, comparison: dict, ef_reports: dict, wall_time: float) -> Path:
        from nnunet_lightweight.demo_report import demo_report_markdown

        self._announce("writing report.md")
        parameters = {model: parameter_count(self.results_folder(model)) for model in MODELS}
        text = demo_report_markdown(self, parameters, durations, comparison, ef_reports, wall_time)
        report = self.work_dir / "report.md"
        report.write_text(text)
        return report


def parameter_count(results_folder: Path) -> int:
    """Trainable parameters of the network nnU-Net's predictor rebuilds from a results folder."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(results_folder), use_folds=(0,))
    return sum(p.numel() for p in predictor.network.parameters())


def demo(output: str | os.PathLike = "lightecho_demo", quick: bool = False, camus: str | None = None,
         device: str = "auto") -> Path:
    """Run the demo in `output` (created, or resumed when made by the same settings); returns report.md."""
    if camus is not None and not Path(camus).expanduser().is_dir():
        raise InputError(f"CAMUS folder not found: {camus}")
    return Demo(output, demo_settings(quick, camus, device)).run()

