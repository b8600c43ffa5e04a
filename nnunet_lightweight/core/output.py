"""Staged (atomic) output folders and files: an interrupted or failed command leaves no half output, and
`--overwrite` replaces only folders and files lightecho wrote.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nnunet_lightweight import __version__
from nnunet_lightweight.core.errors import InputError


class OutputExistsError(InputError, FileExistsError):
    """An output folder that already holds files, and no permission to replace it."""


# Written into every output folder this project creates: `--overwrite` replaces only folders that hold it (or, from
# versions before it, nothing but the files the command writes), never a folder of the user's own files. It lists
# the files the command wrote, with their sizes: a folder holding anything else, or one of them changed, is the
# user's work too and is not replaced.
OUTPUT_MARKER = ".lightecho-output.json"


_GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class OutputLayout:
    """What a command writes into its output folder, to recognise a folder an earlier version wrote (no marker).

    `signature` is a file every such folder holds (None for a command that writes no such file); `entries` are the
    fnmatch patterns of its other top-level entries. A folder with anything else in it is not replaced.
    """

    signature: str | None
    entries: tuple[str, ...] = ()

    def matches(self, folder: Path) -> bool:
        """Whether `folder` holds the signature file (where there is one) and nothing but this layout's entries."""
        names = [entry.name for entry in folder.iterdir()]
        patterns = (*self.entries, self.signature) if self.signature else self.entries
        return (self.signature is None or self.signature in names) and all(
            any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns) for name in names
        )


@dataclass(frozen=True)
class OutputTarget:
    """An output folder that passed `check_output_dir`; `staged_output` checks it again at the final rename."""

    path: Path
    overwrite: bool
    what: str = "output folder"
    layout: OutputLayout | None = None
    # Run again under the lock of the parent folder just before the rename (e.g. the dataset id is still free).
    recheck: Callable[[], object] | None = None


def _real(path: str | os.PathLike) -> Path:
    """`path` with symlinks resolved; for a glob pattern, the folder part before its first wildcard."""
    text = os.fspath(path)
    if any(character in text for character in _GLOB_CHARACTERS):
        text = os.path.dirname(text[: min(text.index(c) for c in _GLOB_CHARACTERS if c in text)]) or "."
    return Path(os.path.realpath(os.path.expanduser(text)))


def check_not_input(
    out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], what: str = "output folder"
) -> None:
    """InputError where the output is one of the inputs, contains one or lies inside one (symlinks resolved)."""
    real_out = _real(out)
    for source in inputs:
        if source is None:
            continue
        real_in = _real(source)
        if real_out == real_in:
            problem = f"is the input {source}"
        elif real_out in real_in.parents:
            problem = f"contains the input {source}"
        elif real_in in real_out.parents:
            problem = f"lies inside the input {source}"
        else:
            continue
        raise InputError(f"{what} {out} {problem}: choose an output outside the inputs (nothing was written)")


def check_writable(out: str | os.PathLike, what: str = "output folder") -> None:
    """InputError where the file or folder `out` cannot be created or replaced (checked before any work, not after
    it): the nearest existing folder above it, and an existing folder `out` itself, must be writable."""
    out = Path(out).expanduser().absolute()
    above = next(p for p in out.parents if p.exists())
    if not above.is_dir():
        raise InputError(f"cannot create {what} {out}: {above} is not a folder")
    for folder in ([out] if out.is_dir() else []) + [above]:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"cannot write {what} {out}: no permission to write in {folder}")


def check_output_file(
    out: str | os.PathLike, overwrite: bool, what: str, is_ours: Callable[[Path], bool], suffix: str | None = None
) -> None:
    """Check an output file path before any work: not a folder (and ending in `suffix` where given), writable, and
    an existing file replaced only with `overwrite` and only where `is_ours(path)` says lightecho wrote it."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{what} {out} is a folder: give the path of the file to write")
    if suffix is not None and out.suffix.lower() != suffix:
        raise InputError(f"{what} {out}: the file name must end in {suffix}")
    if out.exists():
        if not overwrite:
            raise OutputExistsError(f"{what} {out} exists (pass --overwrite to replace it)")
        if not is_ours(out):
            raise InputError(
                f"{what} {out} was not written by lightecho, so --overwrite does not replace it: "
                "choose another output path"
            )
    check_writable(out, what)


def check_output_dir(
    out_dir: str | os.PathLike,
    overwrite: bool,
    what: str = "output folder",
    *,
    inputs: Iterable[str | os.PathLike | None],
    layout: OutputLayout | None = None,
    recheck: Callable[[], object] | None = None,
) -> OutputTarget:
    """Check an output folder before any work is done; pass the result to `staged_output`.

    The output may never be an input, contain one or lie inside one, whatever `overwrite` says. A non-empty folder
    is refused without `overwrite`, and with it unless this project wrote it (its marker file, or `layout` for a
    folder from an earlier version).
    """
    out_dir = Path(out_dir)
    check_not_input(out_dir, inputs, what)
    target = OutputTarget(out_dir, overwrite, what, layout, recheck)
    _check_replaceable(target)
    check_writable(out_dir, what)
    return target


def _check_replaceable(target: OutputTarget) -> None:
    out_dir = target.path
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output path {out_dir} exists and is not a folder")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not target.overwrite:
        raise OutputExistsError(f"{target.what} {out_dir} exists and is not empty (pass --overwrite to replace it)")
    if not (out_dir / OUTPUT_MARKER).is_file() and not (target.layout and target.layout.matches(out_dir)):
        raise InputError(
            f"{target.what} {out_dir} was not written by lightecho (no {OUTPUT_MARKER}), so "
            "--overwrite does not replace it: choose another folder or empty it yourself"
        )
    written = _marker_files(out_dir / OUTPUT_MARKER)
    if written is not None:
        changed = sorted(name for name, size in _file_sizes(out_dir).items() if written.get(name) != size)
        if changed:
            raise InputError(
                f"{target.what} {out_dir} holds {out_dir / changed[0]}"
                f"{f' and {len(changed) - 1} more file(s)' if len(changed) > 1 else ''}, which lightecho did not "
                "write (added or changed since), so --overwrite does not replace it: move them away or choose "
                "another folder"
            )


def _file_sizes(folder: Path) -> dict[str, int]:
    """Size of every file below `folder` (links not followed) by its relative path, the marker file left out."""
    sizes = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            sizes[path.relative_to(folder).as_posix()] = path.lstat().st_size
    sizes.pop(OUTPUT_MARKER, None)
    return sizes


def _marker_files(marker: Path) -> dict[str, int] | None:
    """The files a marker says its command wrote; None for a marker that lists none (earlier versions)."""
    try:
        files = json.loads(marker.read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return files if isinstance(files, dict) else None


def current_umask() -> int:
    """The process umask (reading it means setting it; set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Give a file or folder made by `tempfile` (always private, 0600/0700) the permissions the umask asks for."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~current_umask())


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it: an interruption or a failed write leaves no
    half file (the temporary one is removed)."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        try:
            handle.write(data)
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    follow_umask(handle.name)
    os.replace(handle.name, path)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """`write_bytes_atomically` of `text` in UTF-8."""
    write_bytes_atomically(path, text.encode("utf-8"))


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` (flock on the folder itself: released by the kernel if the process dies)."""
    import fcntl

    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


@contextmanager
def staged_output(target: OutputTarget) -> Iterator[Path]:
    """A hidden temporary sibling folder that becomes the output only when the block succeeds; removed on failure
    (Ctrl-C included).

    `target` comes from `check_output_dir`; its checks run again at the end, under a lock on the parent folder, so
    an output that another run wrote in the meantime is never replaced without `--overwrite`. The staging folder
    follows the umask and, once the block has written it, gets the marker file listing what it holds.
    """
    out_dir = target.path
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    except OSError as error:
        raise InputError(f"cannot write {target.what} {out_dir}: {error.strerror}") from None
    try:
        follow_umask(staging)
        yield staging
        record = {"written_by": "lightecho", "version": __version__, "files": _file_sizes(staging)}
        (staging / OUTPUT_MARKER).write_text(json.dumps(record, indent=1) + "\n")
        follow_umask(staging / OUTPUT_MARKER)
        with _folder_lock(out_dir.parent):
            try:
                if target.recheck is not None:
                    target.recheck()
                _check_replaceable(target)
            except InputError as error:
                raise type(error)(
                    f"{error} (found at the end: another run wrote it meanwhile; this run's result was discarded)"
                ) from None
            if out_dir.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
                out_dir.rename(retired / out_dir.name)
                staging.rename(out_dir)
                shutil.rmtree(retired)
            else:
                staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
