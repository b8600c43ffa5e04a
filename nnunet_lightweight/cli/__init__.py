"""`lightecho`: one console command, one module per subcommand in this package.

Each module defines `register(subparsers)`, which adds its parser and sets `func` to a thin handler over a
library function. Modules import heavy dependencies (torch, nnU-Net) inside their handlers so that
`lightecho --help` stays fast.
"""
import argparse
import importlib
import pkgutil
import sys

from nnunet_lightweight import __version__
from nnunet_lightweight.errors import InputError


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
    """Entry point of the `lightecho` console command."""
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
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
