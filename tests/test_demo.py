"""Issue 9: `lightecho demo` end to end on a tiny phantom, and the figures in its report."""
import re
from pathlib import Path

import pytest

from nnunet_lightweight.demo import Demo, DemoSettings
from nnunet_lightweight.errors import InputError

EXT_TRAINERS = Path(__file__).resolve().parent / "ext_trainers"

TINY = DemoSettings(data="phantom", phantom_patients=8, phantom_size=64, light_trainer="nnUNetTrainerLightEcho_Test",
                    default_trainer="nnUNetTrainer_OnePassEpochs_Test", split="official", device="cpu")


@pytest.fixture
def demo_env(monkeypatch):
    monkeypatch.setenv("nnUNet_extTrainer", str(EXT_TRAINERS))
    monkeypatch.setenv("LIGHTECHO_TEST_EPOCHS", "1")
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("nnUNet_compile", "false")
    monkeypatch.setenv("nnUNet_def_n_proc", "2")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(name, raising=False)


def test_demo_end_to_end_report(tmp_path, demo_env):
    work_dir = tmp_path / "demo"
    report = Demo(work_dir, TINY).run()
    text = report.read_text()

    # nnU-Net folders live in the work directory, and nowhere else
    assert (work_dir / "nnUNet_results" / "Dataset990_CAMUS").is_dir()
    parameters = re.search(r"\| LightEcho \| `nnUNetTrainerLightEcho_Test` \| ([\d,]+) \| (\d+) \|", text)
    assert parameters and int(parameters.group(1).replace(",", "")) == 1_981_588
    default = re.search(r"\| nnU-Net default \| `nnUNetTrainer_OnePassEpochs_Test` \| ([\d,]+) \|", text)
    assert default and int(default.group(1).replace(",", "")) > 3 * 1_981_588  # 7.8M at 64x64 frames
    for structure in ("LV", "MYO", "LA"):
        row = re.search(rf"^\| {structure} \| (.+) \|$", text, re.MULTILINE).group(1).split(" | ")
        dice_light, dice_default, p_dice = row[0], row[1], row[2]
        for cell in (dice_light, dice_default):
            mean = float(cell.split(" ± ")[0])
            assert 0.0 <= mean <= 1.0
        assert p_dice == "n/a" or 0.0 <= float(p_dice) <= 1.0
    ef_rows = re.findall(r"^\| (LightEcho|nnU-Net default) \| (\d+) \| ", text, re.MULTILINE)
    assert [name for name, _ in ef_rows] == ["LightEcho", "nnU-Net default"]
    for name, patients in ef_rows:  # one epoch may leave no measurable LV; then the report must say why
        assert int(patients) >= 1 or f"{name}: EF could not be measured" in text
    for link in re.findall(r"\]\(([^)]+\.png)\)", text):
        assert (work_dir / link).is_file()

    # a second run resumes (nothing is retrained) and settings from another run are refused
    checkpoint = next((work_dir / "nnUNet_results").rglob("checkpoint_final.pth"))
    modified = checkpoint.stat().st_mtime
    Demo(work_dir, TINY).run()
    assert checkpoint.stat().st_mtime == modified
    with pytest.raises(InputError, match="other settings"):
        Demo(work_dir, DemoSettings(**{**TINY.__dict__, "phantom_patients": 9})).run()


def test_demo_refuses_a_foreign_folder(tmp_path, demo_env):
    (tmp_path / "somefile.txt").write_text("not a demo")
    with pytest.raises(InputError, match="not a demo folder"):
        Demo(tmp_path, TINY).run()
