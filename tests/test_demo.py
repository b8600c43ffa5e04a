"""Issues 9 and 16: `lightecho demo` end to end on a tiny phantom, and the figures in its report."""

import math
import os
import re

import numpy as np
import pandas as pd
import pytest

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.evaluation.compare import (
    EQUIVALENCE_MARGINS,
    HIGHER_IS_BETTER,
    equivalence_verdict,
    paired_difference,
    paired_difference_table,
)
from nnunet_lightweight.workflows.demo import Demo, DemoSettings, demo_settings
from nnunet_lightweight.workflows.demo_report import plateau_note, real_loop_lines

TINY = DemoSettings(
    data="phantom",
    phantom_patients=8,
    phantom_size=64,
    light_trainer="nnUNetTrainerLightEcho_BudgetTest",
    default_trainer="nnUNetTrainer_BudgetTest",
    split="official",
    device="cpu",
)
MODELS = ("LightEcho", "nnU-Net default")


@pytest.fixture
def demo_env(monkeypatch, nnunet_environment):
    """The test environment without nnU-Net folders: the demo makes its own inside its work folder."""
    for name, value in nnunet_environment(None, ext_trainers=True).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LIGHTECHO_TEST_EPOCHS", "1")
    monkeypatch.setenv("LIGHTECHO_TEST_BUDGET", "3")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(name, raising=False)


def _number(text: str) -> float:
    return float(text.replace("×", "").replace(",", ""))


def test_demo_end_to_end_report(tmp_path, demo_env):
    work_dir = tmp_path / "demo"
    demo = Demo(work_dir, TINY)
    # The shipped CAMUS model may not be in this checkout: the real loop is segmented by the demo's own LightEcho.
    demo.real_loop_model = demo.results_folder("LightEcho")
    report = demo.run()
    text = report.read_text()

    # nnU-Net folders live in the work directory, and nowhere else; the caller's environment is left as it was
    assert (work_dir / "nnUNet_results" / "Dataset990_CAMUS").is_dir()
    assert not {"nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"} & set(os.environ)
    assert "Training rule: equal wall-clock budget, 3 s of training per model" in text

    # the claim table: measured figures, the ratio column is their quotient
    claim = {}
    for name in (
        "parameters",
        "GMACs per frame",
        "inference ms per frame (one pass)",
        "training time per epoch (s; same frames per epoch)",
        "epochs trained",
    ):
        cells = re.search(rf"^\| {re.escape(name)} \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", text, re.MULTILINE)
        assert cells, name
        light, default, ratio = (_number(c.strip()) for c in cells.groups())
        assert light > 0 and default > 0
        assert ratio == pytest.approx(default / light, rel=0.06, abs=0.06), name
        claim[name] = (light, default)
    assert claim["parameters"][0] == 1_981_588
    assert claim["parameters"][1] > 3 * 1_981_588  # 7.8M at 64x64 frames
    assert claim["GMACs per frame"][1] > claim["GMACs per frame"][0]
    assert 1 <= claim["epochs trained"][0] <= 3 and 1 <= claim["epochs trained"][1] <= 3  # the test trainers' cap
    assert re.search(r"\| passes per frame in nnU-Net's predictor \(mirroring\) \| 1 \| 4 \| 4\.0× \|", text)

    # accuracy: every verdict follows from the interval it states; differences and p-values match the metrics
    differences = pd.read_csv(work_dir / "report" / "differences.csv")
    metrics = pd.read_csv(work_dir / "report" / "comparison" / "metrics.csv")
    expected = paired_difference_table(metrics, *MODELS)
    rows = re.findall(
        r"^\| (LV|MYO|LA) \| (Dice|HD \(px\)) \| [^|]+ \| [^|]+ \| ([^|]+) \| ([^|]+) \| ±([\d.]+) \| "
        r"(\w+) \|$",
        text,
        re.MULTILINE,
    )
    assert len(rows) == 6 == len(differences) == len(expected)
    verdicts = []
    for (structure, metric, interval, p_value, margin, verdict), saved, recomputed in zip(
        rows, differences.itertuples(), expected.itertuples()
    ):
        key = "dice" if metric == "Dice" else "hd"
        assert (saved.structure, saved.metric) == (structure, key) == (recomputed.structure, recomputed.metric)
        # differences.csv holds 6 significant digits
        assert saved.difference == pytest.approx(recomputed.difference, rel=2e-5, abs=1e-5)
        # each of the two means is rounded to 6 significant digits, so their difference is only as exact as them
        rounding = 1e-5 * (abs(saved.mean_a) + abs(saved.mean_b)) + 1e-5
        assert saved.difference == pytest.approx(saved.mean_a - saved.mean_b, abs=rounding)
        assert saved.p_value == pytest.approx(recomputed.p_value, rel=1e-4)
        assert float(margin) == EQUIVALENCE_MARGINS[key]
        assert (
            verdict
            == saved.verdict
            == equivalence_verdict(saved.ci_low, saved.ci_high, saved.margin, HIGHER_IS_BETTER[key])
        )
        assert float(p_value) == pytest.approx(saved.p_value, rel=6e-3, abs=1e-6)
        stated = re.fullmatch(r"([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]", interval.strip())
        assert stated, interval
        decimals = 4 if key == "dice" else 3
        for value, exact in zip(stated.groups(), (saved.difference, saved.ci_low, saved.ci_high)):
            assert float(value) == pytest.approx(exact, rel=2e-5, abs=0.6 * 10**-decimals)
        assert saved.ci_low <= saved.difference <= saved.ci_high
        verdicts.append(f"{structure} {verdict}")
    verdict_line = re.search(r"^\*\*Verdict for LightEcho against nnU-Net default\*\* — (.+)\.$", text, re.MULTILINE)
    assert verdict_line.group(1) == f"Dice: {', '.join(verdicts[0::2])}; HD (px): {', '.join(verdicts[1::2])}"
    for verdict in ("worse",):
        if any(v.endswith(verdict) for v in verdicts):
            assert "In this run LightEcho is worse on" in text

    ef_rows = re.findall(r"^\| (LightEcho|nnU-Net default) \| (\d+) \| ", text, re.MULTILINE)
    assert [name for name, _ in ef_rows] == ["LightEcho", "nnU-Net default"]
    for name, patients in ef_rows:  # one epoch may leave no measurable LV; then the report must say why
        assert int(patients) >= 1 or f"{name}: EF could not be measured" in text

    # the real loop: segmented at its own size; an overlay strip, and EF with its curve or the reason why not
    assert "`a4c_sequence.nii.gz`: 20 frames of 480×560 pixels at 0.4 mm" in text
    assert "![Overlay strip](report/real_loop/overlay_strip.png)" in text
    assert re.search(r"single-plane \(4CH\) EF -?[\d.]+ %", text) or "EF not measurable: " in text
    for link in re.findall(r"\]\(([^)]+\.png)\)", text):
        assert (work_dir / link).is_file()

    # a second run resumes (nothing is retrained) and settings from another run are refused
    checkpoint = next((work_dir / "nnUNet_results").rglob("checkpoint_final.pth"))
    modified = checkpoint.stat().st_mtime
    assert (
        Demo(work_dir, TINY).run().read_text().split("Demo wall time")[1].split("\n", 1)[1]
        == text.split("Demo wall time")[1].split("\n", 1)[1]
    )
    assert checkpoint.stat().st_mtime == modified
    with pytest.raises(InputError, match="other settings"):
        Demo(work_dir, DemoSettings(**{**TINY.__dict__, "phantom_patients": 9})).run()


def test_paired_difference_and_verdicts():
    a, b = np.array([0.90, 0.92, 0.91, 0.93]), np.array([0.89, 0.90, 0.90, 0.92])
    mean, low, high = paired_difference(a, b)
    differences = a - b
    half = 3.182446305 * differences.std(ddof=1) / 2  # t(0.975, 3) * s / sqrt(4)
    assert (mean, low, high) == pytest.approx((0.0125, 0.0125 - half, 0.0125 + half))
    assert paired_difference(a, a) == (0.0, 0.0, 0.0)
    assert math.isnan(paired_difference(a[:1], b[:1])[1])
    assert equivalence_verdict(-0.004, 0.006, 0.01) == "equivalent"
    assert equivalence_verdict(0.002, 0.03, 0.01) == "better"
    assert equivalence_verdict(-0.03, -0.002, 0.01) == "worse"
    assert equivalence_verdict(-0.03, 0.02, 0.01) == "inconclusive"
    assert equivalence_verdict(-0.01, 0.005, 0.01) == "inconclusive"  # touching the margin is not inside it
    assert equivalence_verdict(0.5, 2.0, 1.0, higher_is_better=False) == "worse"  # a larger HD is worse
    assert equivalence_verdict(float("nan"), float("nan"), 0.01) == "inconclusive"


def test_plateau_note_and_skipped_real_loop(tmp_path):
    assert plateau_note([0.5, 0.9, 0.9, 0.901, 0.903]).endswith("0.903, +0.003 over the last 3 epochs: still rising")
    assert plateau_note([0.5, 0.8, 0.9, 0.9, 0.9005, 0.901]).endswith("plateaued")
    assert "too few to judge" in plateau_note([0.5, 0.6])
    assert real_loop_lines({"skipped": "no shipped model in this installation"}, tmp_path, tmp_path) == [
        "Skipped: no shipped model in this installation",
        "",
    ]


def test_demo_schedules_meet_the_issue():
    quick, full = demo_settings(quick=True, device="cpu"), demo_settings(device="cpu")
    assert int(0.25 * full.phantom_patients) >= 10  # >= 10 test patients, 4 frames each
    for settings in (quick, full):
        assert "Budget" in settings.light_trainer and "Budget" in settings.default_trainer


def test_demo_refuses_a_foreign_folder(tmp_path, demo_env):
    (tmp_path / "somefile.txt").write_text("not a demo")
    with pytest.raises(InputError, match="not a demo folder"):
        Demo(tmp_path, TINY).run()


class _BudgetProbe:
    """The WallClockBudget mixin on a stand-in for nnU-Net's logger (epoch start/end timestamps)."""

    @staticmethod
    def make(epoch_seconds: list[float], budget: float):
        from nnunet_lightweight.training.wall_clock_budget import WallClockBudget

        class Logger:
            def get_value(self, key, step):
                ends = np.cumsum(epoch_seconds).tolist()
                starts = [end - seconds for end, seconds in zip(ends, epoch_seconds)]
                return {"epoch_start_timestamps": starts, "epoch_end_timestamps": ends}[key]

        class Probe(WallClockBudget):
            budget_seconds = budget

            def __init__(self):  # no trainer behind it: only the budget arithmetic
                self.logger = Logger()

        return Probe()


def test_wall_clock_budget_stops_before_overrunning_and_decays_the_learning_rate():
    import torch

    from nnunet_lightweight.training.wall_clock_budget import BudgetPolyLR

    assert not _BudgetProbe.make([], 10.0).budget_exhausted()
    assert not _BudgetProbe.make([3.0, 3.0], 10.0).budget_exhausted()  # 6 s + another 3 s epoch fits in 10 s
    assert _BudgetProbe.make([3.0, 3.0, 3.0], 10.0).budget_exhausted()  # a fourth would end at 12 s
    probe = _BudgetProbe.make([2.5, 2.5], 10.0)
    assert probe.budget_fraction_used() == pytest.approx(0.5)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = BudgetPolyLR(optimizer, 0.01, probe, exponent=0.9)
    scheduler.step(7)  # nnU-Net passes the epoch; the clock decides
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**0.9)
