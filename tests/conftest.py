"""Shared fixtures: the real CAMUS copy beside the repository, and isolated nnU-Net folders."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CAMUS_PUBLIC = Path(os.environ.get("LIGHTECHO_CAMUS", REPO.parent / "shared" / "camus224" / "CAMUS_public"))


@pytest.fixture(scope="session")
def camus_root() -> Path:
    """The real CAMUS NIfTI copy; skipped where absent, but never under CI, where it must be present."""
    if not (CAMUS_PUBLIC / "database_nifti").is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the CAMUS copy is missing at {CAMUS_PUBLIC}")
        pytest.skip(f"real CAMUS data not found at {CAMUS_PUBLIC} (set LIGHTECHO_CAMUS to its CAMUS_public folder)")
    return CAMUS_PUBLIC


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch) -> dict[str, Path]:
    """Fresh nnUNet_raw / nnUNet_preprocessed / nnUNet_results folders for one test."""
    dirs = {}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        path = tmp_path / name
        path.mkdir()
        monkeypatch.setenv(name, str(path))
        dirs[name] = path
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("nnUNet_def_n_proc", "2")
    monkeypatch.setenv("nnUNet_compile", "false")
    return dirs
