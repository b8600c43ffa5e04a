"""Shared fixtures: the real CAMUS copy beside the repository, isolated nnU-Net folders, the data-safety case runner."""

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from safety_cases import SafetyCase

REPO = Path(__file__).resolve().parents[1]
CAMUS_PUBLIC = Path(os.environ.get("LIGHTECHO_CAMUS", REPO.parent / "shared" / "camus224" / "CAMUS_public"))


# Fixtures that make a test slow (they train, plan or run nnU-Net's commands) or that read ../shared's CAMUS copy:
# a test using one gets the marker, so `pytest -m "not slow"` and `-m "not needs_camus"` select without a list.
SLOW_FIXTURES = {"trained_lightecho", "packaged", "phantom_dataset", "synthetic_dataset", "demo_env"}
CAMUS_FIXTURES = {"camus_root", "trained_lightecho", "packaged"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if fixtures & CAMUS_FIXTURES:
            item.add_marker(pytest.mark.needs_camus)


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported networks are cached in a folder of this test session (also for the commands tests run), never in
    the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("onnx_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIGHTECHO_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def camus_root() -> Path:
    """The real CAMUS NIfTI copy; skipped where absent, but never under CI, where it must be present."""
    if not (CAMUS_PUBLIC / "database_nifti").is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the CAMUS copy is missing at {CAMUS_PUBLIC}")
        pytest.skip(f"real CAMUS data not found at {CAMUS_PUBLIC} (set LIGHTECHO_CAMUS to its CAMUS_public folder)")
    return CAMUS_PUBLIC


@pytest.fixture(scope="session")
def example_loop() -> Path:
    """The real apical 4-chamber loop of ../shared/examples; skipped where absent, but never under CI."""
    path = REPO.parent / "shared" / "examples" / "a4c_sequence.nii.gz"
    if not path.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the example loop is missing at {path}")
        pytest.skip(f"example loop not found at {path}")
    return path


NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
EXT_TRAINERS = Path(__file__).resolve().parent / "ext_trainers"


def _nnunet_environment(base: Path | None, *, ext_trainers: bool = False, processes: int = 2) -> dict[str, str]:
    """The nnU-Net settings every test runs under: its three folders below `base` (created; none without a base),
    augmentation in the main process, no torch.compile, `processes` workers; the test-only trainers of
    tests/ext_trainers findable by nnU-Net's lookup where `ext_trainers`."""
    env = {"nnUNet_n_proc_DA": "0", "nnUNet_compile": "false", "nnUNet_def_n_proc": str(processes)}
    if ext_trainers:
        env["nnUNet_extTrainer"] = str(EXT_TRAINERS)
    for name in NNUNET_FOLDERS if base is not None else ():
        (base / name).mkdir(parents=True, exist_ok=True)
        env[name] = str(base / name)
    return env


@pytest.fixture(scope="session")
def nnunet_environment() -> Callable[..., dict[str, str]]:
    """The one nnU-Net test environment, as a function: `nnunet_environment(base, ext_trainers=..., processes=...)`
    gives the variables (for a subprocess, or for `monkeypatch.setenv`)."""
    return _nnunet_environment


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch) -> dict[str, Path]:
    """Fresh nnUNet_raw / nnUNet_preprocessed / nnUNet_results folders for one test, set in the environment."""
    for name, value in _nnunet_environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    return {name: tmp_path / name for name in NNUNET_FOLDERS}


TINY_DATASET_ID = 901
TINY_PATIENTS = [f"patient{i:04d}" for i in range(1, 9)]


def _write_tiny_camus_dataset(raw: Path, preprocessed_dataset: Path) -> Path:
    """8 real CAMUS patients as an nnU-Net dataset, 6 patients for training and 2 for validation in fold 0."""
    import SimpleITK as sitk
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    folder = raw / f"Dataset{TINY_DATASET_ID:03d}_CamusTiny"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    cases = []
    for patient in TINY_PATIENTS:
        for view in ("2CH", "4CH"):
            for phase in ("ED", "ES"):
                case = f"{patient}_{view}_{phase}"
                source = CAMUS_PUBLIC / "database_nifti" / patient / case
                sitk.WriteImage(sitk.ReadImage(f"{source}.nii.gz"), str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
                sitk.WriteImage(sitk.ReadImage(f"{source}_gt.nii.gz"), str(folder / "labelsTr" / f"{case}.nii.gz"))
                cases.append(case)
    generate_dataset_json(
        str(folder),
        {0: "echo"},
        {"background": 0, "LV": 1, "MYO": 2, "LA": 3},
        len(cases),
        ".nii.gz",
        dataset_name=folder.name,
    )
    preprocessed_dataset.mkdir(parents=True)
    val = [c for c in cases if c.split("_")[0] in TINY_PATIENTS[-2:]]
    (preprocessed_dataset / "splits_final.json").write_text(
        json.dumps([{"train": [c for c in cases if c not in val], "val": val}])
    )
    return folder


@pytest.fixture(scope="session")
def trained_lightecho(camus_root, tmp_path_factory) -> dict:
    """A LightEcho model trained for one CPU epoch by `nnUNetv2_train` on 8 real CAMUS patients (fold 0)."""
    base = tmp_path_factory.mktemp("trained_lightecho")
    env = dict(os.environ, **_nnunet_environment(base, ext_trainers=True), LIGHTECHO_TEST_EPOCHS="1")
    raw_folder = _write_tiny_camus_dataset(
        base / "nnUNet_raw", base / "nnUNet_preprocessed" / f"Dataset{TINY_DATASET_ID:03d}_CamusTiny"
    )
    planned = subprocess.run(["lightecho", "plan", "-d", str(TINY_DATASET_ID)], env=env, capture_output=True, text=True)
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    trainer = "nnUNetTrainerLightEcho_Test"
    train = subprocess.run(
        ["nnUNetv2_train", str(TINY_DATASET_ID), "2d", "0", "-tr", trainer, "-device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    results_folder = base / "nnUNet_results" / raw_folder.name / f"{trainer}__nnUNetPlans__2d"
    return {
        "env": env,
        "dataset_id": TINY_DATASET_ID,
        "dataset_name": raw_folder.name,
        "trainer": trainer,
        "raw_folder": raw_folder,
        "images_dir": raw_folder / "imagesTr",
        "labels_dir": raw_folder / "labelsTr",
        "results_folder": results_folder,
        "train_log": train.stdout,
    }


# ---------------------------------------------------------------------------------------------------------------
# Data-safety cases: one table row = inputs, argv, expected exit code and message, files that must survive
# ---------------------------------------------------------------------------------------------------------------


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process may not write in: a read-only one for root (who may write anywhere else), skipped
    where there is none; otherwise a folder under `tmp_path` without write permission."""
    if os.geteuid() == 0:
        if os.path.isdir("/proc/sys") and not os.access("/proc/sys", os.W_OK):
            return Path("/proc/sys")
        pytest.skip("running as root without a read-only folder to test unwritable outputs")
    folder = tmp_path / "unwritable"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    return folder


def _snapshot(path: Path) -> dict[str, str] | None:
    """Hash of a file, or of every file under a folder (by relative path); None where the path is missing."""
    if path.is_file():
        return {"": hashlib.sha256(path.read_bytes()).hexdigest()}
    if path.is_dir():
        return {
            str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*"))
            if p.is_file()
        }
    return None


@pytest.fixture
def run_safety_case(tmp_path, nnunet_dirs, capsys) -> Callable[[SafetyCase], str]:
    """Runs a `SafetyCase` through `nnunet_lightweight.cli.main` in fresh nnU-Net folders; returns its output."""
    from nnunet_lightweight.cli import main

    def run(case: SafetyCase) -> str:
        case.build(tmp_path)
        before = {kept: _snapshot(tmp_path / kept) for kept in case.kept}
        missing = [kept for kept, snapshot in before.items() if snapshot is None]
        assert not missing, f"{case.id}: the builder did not create {missing}"
        capsys.readouterr()
        argv = [arg.replace("{tmp}", str(tmp_path)) for arg in case.argv]
        if any("{unwritable}" in arg for arg in argv):
            argv = [arg.replace("{unwritable}", str(unwritable_folder(tmp_path))) for arg in argv]
        try:
            code = main(argv)
        except SystemExit as error:  # argparse refuses bad arguments by exiting (code 2)
            code = error.code
        captured = capsys.readouterr()
        output = captured.err + captured.out
        assert code == case.exit_code, f"{case.id}: exit {code}, expected {case.exit_code}; output:\n{output}"
        assert case.message in output, f"{case.id}: {case.message!r} not in the output:\n{output}"
        assert "Traceback" not in output, f"{case.id}: traceback in the output:\n{output}"
        for kept, snapshot in before.items():
            assert _snapshot(tmp_path / kept) == snapshot, f"{case.id}: {kept} was removed or changed"
        return output

    return run
