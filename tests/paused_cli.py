"""`lightecho ARGV` with a pause after one library function, for tests that need a second process or a signal at a
known point of a command: `python paused_cli.py MODULE:FUNCTION READY GO ARGV...` runs the command; after
MODULE.FUNCTION returns it creates the file READY and waits until the file GO exists."""

import importlib
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    target, ready, go, *argv = sys.argv[1:]
    # A shell starts background jobs with SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    # restore it, as an interactive terminal would have it, so that the test's SIGINT is a Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    module_name, function_name = target.split(":")
    module = importlib.import_module(module_name)
    original = getattr(module, function_name)

    def paused(*args, **kwargs):
        result = original(*args, **kwargs)
        Path(ready).touch()
        while not Path(go).exists():
            time.sleep(0.05)
        return result

    setattr(module, function_name, paused)
    from nnunet_lightweight.cli import main as lightecho
    from nnunet_lightweight.cli import unwind_on_sigterm

    unwind_on_sigterm()  # as the installed command does
    return lightecho(argv)


if __name__ == "__main__":
    sys.exit(main())
