"""Issue 15 (start-up): modules the `lightecho` command defers until first use."""

import inspect
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nnunet_lightweight.core.deferred_imports import DeferredModule, defer_imports


@pytest.fixture
def probe_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module and a package with a submodule, each counting its imports in `imports.log`, on sys.path; removed
    from sys.modules afterwards."""
    log = tmp_path / "imports.log"
    counting = f"open({str(log)!r}, 'a').write(__name__ + '\\n')\n"
    (tmp_path / "deferred_probe.py").write_text(counting + "VALUE = 42\n\ndef twice(x):\n    return 2 * x\n")
    (tmp_path / "deferred_probe_slow.py").write_text(counting + "import time\ntime.sleep(0.3)\nVALUE = 3\n")
    (tmp_path / "deferred_probe_pkg").mkdir()
    (tmp_path / "deferred_probe_pkg" / "__init__.py").write_text("")
    (tmp_path / "deferred_probe_pkg" / "sub.py").write_text(counting + "VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield log
    for name in ("deferred_probe", "deferred_probe_slow", "deferred_probe_pkg", "deferred_probe_pkg.sub"):
        sys.modules.pop(name, None)


def imported(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_deferred_module_imports_on_first_attribute_only(probe_modules: Path):
    assert defer_imports(("deferred_probe",)) == ["deferred_probe"]
    import deferred_probe as probe

    assert isinstance(probe, DeferredModule)
    # What import machinery and sys.modules walkers read does not load it.
    assert probe.__spec__.name == "deferred_probe" and probe.__file__.endswith("deferred_probe.py")
    inspect.getmodule(test_deferred_module_imports_on_first_attribute_only)
    assert imported(probe_modules) == []
    assert probe.twice(probe.VALUE) == 84
    assert imported(probe_modules) == ["deferred_probe"]
    import deferred_probe as again

    assert not isinstance(again, DeferredModule) and again.VALUE == 42
    assert probe.VALUE == 42 and imported(probe_modules) == ["deferred_probe"]  # loaded once


def test_deferred_submodule_through_from_import(probe_modules: Path):
    assert defer_imports(("deferred_probe_pkg.sub",)) == ["deferred_probe_pkg.sub"]
    from deferred_probe_pkg import sub  # the form nnU-Net uses for scikit-image's io

    assert isinstance(sub, DeferredModule) and imported(probe_modules) == []
    assert sub.VALUE == 7 and imported(probe_modules) == ["deferred_probe_pkg.sub"]


def test_threads_reading_a_deferred_module_at_once_import_it_once(probe_modules: Path):
    defer_imports(("deferred_probe_slow",))
    import deferred_probe_slow as slow

    with ThreadPoolExecutor(max_workers=8) as pool:
        values = list(pool.map(lambda _: slow.VALUE, range(8)))
    assert values == [3] * 8
    assert imported(probe_modules) == ["deferred_probe_slow"]


def test_defer_imports_skips_missing_and_already_imported(probe_modules: Path):
    import deferred_probe  # noqa: F401

    assert defer_imports(("deferred_probe", "no_such_module_here", "no_such_package.sub")) == []
    assert not isinstance(sys.modules["deferred_probe"], DeferredModule)
