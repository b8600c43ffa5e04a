"""`lightecho`: one console command, one module per subcommand in this package.

Each module defines `register(subparsers)`, which adds its parser and sets `func` to a thin handler over a
library function. Modules import heavy dependencies (torch, nnU-Net) inside their handlers so that
`lightecho --help` stays fast.
"""

import argparse
import errno
import gc
import importlib
import math
import os
import pkgutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from nnunet_lightweight import __version__
from nnunet_lightweight.core.deferred_imports import defer_imports
from nnunet_lightweight.core.errors import InputError

# OS errors that come from the user's machine, not from a bug: a forbidden or read-only folder, a full disk.
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
# What Ctrl-C leaves, for commands that write through staged output folders; resumable ones set their own note.
INTERRUPTED_NOTE = "unfinished outputs were removed; inputs and outputs written before are kept"


def bounded(
    kind: Callable[[str], float], low: float | None = None, high: float | None = None, *, low_open: bool = False
) -> Callable[[str], float]:
    """An argparse `type` converting with `kind` (int or float) and refusing values outside [low, high] (low
    excluded where `low_open`), and NaN/inf: the parser then names the option, so a bad number never reaches the
    library code as a silent wrong value or a traceback."""

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_describe_range(low, high, low_open)}, got {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    convert.bounds = (low, high)  # marks a range-checked type (tests check every numeric option has one)
    return convert


def _describe_range(low: float | None, high: float | None, low_open: bool) -> str:
    parts = [
        f"{'greater than' if low_open else 'at least'} {low}" if low is not None else "",
        f"at most {high}" if high is not None else "",
    ]
    return " and ".join(part for part in parts if part)


# Option types shared by several subcommands.
SEED = bounded(int, 0, 2**32 - 1)  # numpy's RandomState takes 32-bit seeds
SIGNIFICANCE_LEVEL = bounded(float, 0, 0.5, low_open=True)
DISKS = bounded(int, 1, 1000)  # Simpson disks; more than rows in a frame measures nothing new
# A disk of radius r is (2r+1)^2 pixels and opening/closing pads every structure by r: beyond 50 pixels (a third of
# a 128-pixel frame) it erases whole structures and its memory grows without bound.
MORPHOLOGY_RADIUS = bounded(int, 1, 50)


def add_unit_options(parser: argparse.ArgumentParser, spacing_source: str) -> None:
    """`--pixel-units` / `--mm-units` (dest `units`, default "auto"): how far to trust `spacing_source`'s spacing."""
    units = parser.add_mutually_exclusive_group()
    units.add_argument(
        "--pixel-units",
        dest="units",
        action="store_const",
        const="px",
        help=f"measure in pixels (volumes in px^3) whatever {spacing_source} says",
    )
    units.add_argument(
        "--mm-units",
        dest="units",
        action="store_const",
        const="mm",
        help=f"trust {spacing_source} as mm (volumes in mL), even where it is exactly 1 x 1",
    )
    parser.set_defaults(units="auto")


def written_line(folder: Path) -> str:
    """The line `written: <the files in folder> in <folder>`, for commands whose outputs depend on their inputs."""
    names = sorted(path.name for path in Path(folder).iterdir() if not path.name.startswith("."))
    return f"written: {', '.join(names)} in {folder}"


def build_parser() -> argparse.ArgumentParser:
    """The `lightecho` parser with every subcommand module of this package registered."""
    parser = argparse.ArgumentParser(
        prog="lightecho",
        description="LightEcho: lightweight echocardiography segmentation on top of nnU-Net v2.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        importlib.import_module(f"{__name__}.{info.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: the command line), run the subcommand's handler and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        result = args.func(args)
    except (InputError, FileNotFoundError, FileExistsError) as error:
        print(f"lightecho {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in USER_ERRNOS:
            raise
        print(f"lightecho {args.command}: error: {error.filename or 'output'}: {error.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:
        how, status = (
            ("terminated (SIGTERM)", 143) if isinstance(interruption, Terminated) else ("interrupted (Ctrl-C)", 130)
        )
        print(
            f"lightecho {args.command}: {how}: {getattr(args, 'interrupted_note', INTERRUPTED_NOTE)}",
            file=sys.stderr,
        )
        return status
    return int(result or 0)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's time limit, `kill`) raised in the main thread: unwound like Ctrl-C, so that staged
    outputs are removed, and reported with exit status 143 (128 + SIGTERM)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def _default_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def unwind_on_sigterm() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (Python's default ends the process at once, leaving a
    half-written staging folder behind). Forked children keep the default: nnU-Net's multiprocessing pools end
    their workers with SIGTERM, and a worker that unwound instead could die holding the pool's queue lock."""
    signal.signal(signal.SIGTERM, _raise_terminated)
    os.register_at_fork(after_in_child=_default_sigterm)


def console_main() -> int:
    """The installed `lightecho` command: `main`, with start-up and exit made cheaper for a short-lived process.

    Before it, modules that nnU-Net imports but no prediction uses are deferred (`defer_imports`). After it, when
    outputs are committed and files closed, what remains is Python's shutdown, whose garbage collections trace
    every object that torch's, nnU-Net's and OpenVINO's modules made: 0.4 s of a one-frame `lightecho predict` on
    a 2-core machine. `gc.freeze` takes those objects out of the collector's view, so the shutdown frees modules
    without tracing them; atexit handlers and thread joins run as before. SIGTERM unwinds like Ctrl-C (exit 143).
    A program calling `main` gets none of these.
    """
    defer_imports()
    unwind_on_sigterm()
    status = main()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(console_main())
