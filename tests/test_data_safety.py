"""Data safety (issue 14): no command destroys its input, and user errors give one clear line, never a traceback.

Each row of CASES is run in-process through `lightecho`'s `main(argv)` by the `run_safety_case` fixture
(tests/conftest.py); the race between concurrent conversions and Ctrl-C need real processes.
"""
from pathlib import Path

import numpy as np
import pytest

from conftest import SafetyCase
from dataset_conversion.common import write_frame


def _masks(folder: Path, n: int = 2) -> None:
    """`n` tiny 32x32 label maps <patientNNNN>_2CH_ED.nii.gz in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 10:22] = 1
    for index in range(1, n + 1):
        write_frame(mask, (1.0, 1.0), folder / f"patient{index:04d}_2CH_ED.nii.gz")


CASES = [
    SafetyCase("postprocess -o = -i", lambda tmp: _masks(tmp / "pred"),
               ("postprocess", "-i", "{tmp}/pred", "-o", "{tmp}/pred", "--overwrite"), 2, "input", ("pred",),
               covers="postprocess"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_data_safety_case(case: SafetyCase, run_safety_case) -> None:
    run_safety_case(case)
