"""Architecture presets: the JSON files in the repository's `plans/` folder (shipped inside the wheel)."""

import json
from copy import deepcopy
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent
# An installed wheel has plans/ inside the package; a source or editable checkout has it at the top level.
PRESETS_DIR = next(
    (p for p in (_PACKAGE_DIR / "plans", _PACKAGE_DIR.parent / "plans") if p.is_dir()), _PACKAGE_DIR / "plans"
)


def list_presets() -> list[str]:
    """Names of the available presets (file names without .json)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def load_preset(name: str) -> dict:
    """A preset: nnU-Net `architecture` block (network_class_name, arch_kwargs, _kw_requires_import) + batch_size."""
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"unknown architecture preset {name!r}; available: {', '.join(list_presets())}")
    return deepcopy(json.loads(path.read_text()))
