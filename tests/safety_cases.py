"""The data-safety tables' row type (tests/test_data_safety*.py); conftest's `run_safety_case` runs a row."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SafetyCase:
    """One row of the data-safety tables (tests/test_data_safety*.py), run in-process by `run_safety_case`.

    `build(tmp)` writes the inputs under the test's folder `tmp`; "{tmp}" in `argv` becomes that folder and
    "{unwritable}" a folder this process cannot write in (`unwritable_folder`). `message`
    must appear in the command's output (stderr and stdout), which must hold no traceback. Every path of `kept`
    (relative to `tmp`) must exist afterwards with its content unchanged (a folder: every file under it).
    `covers` names the subcommand (e.g. "predict", "ablation run") whose output guard the case exercises.
    """

    id: str
    build: Callable[[Path], None]
    argv: tuple[str, ...]
    exit_code: int
    message: str
    kept: tuple[str, ...] = ()
    covers: str | None = None
