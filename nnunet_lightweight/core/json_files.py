"""Reading JSON files that must hold an object, with errors that name the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nnunet_lightweight.core.errors import InputError


def read_json(path: str | os.PathLike, what: str, missing_hint: str = "") -> dict | list:
    """A JSON file's content; InputError naming the file where it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing file: {path}" + (f" ({missing_hint})" if missing_hint else ""))
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read {what} {path}: {error}") from None


def read_json_object(path: str | os.PathLike, what: str, missing_hint: str = "") -> dict:
    """A JSON file holding an object; InputError naming the file where it is missing, unreadable or no object."""
    data = read_json(path, what, missing_hint)
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} is not a JSON object")
    return data
