"""Console commands that workflows run as child processes, through this interpreter and their entry points."""

import sys

# The entry points the packages declare for their console scripts (pyproject.toml's [project.scripts], nnU-Net's).
CONSOLE_ENTRY_POINTS = {
    "lightecho": "from nnunet_lightweight.cli import console_main; sys.exit(console_main())",
    "nnUNetv2_train": "from nnunetv2.run.run_training import run_training_entry; sys.exit(run_training_entry())",
    "nnUNetv2_predict": (
        "from nnunetv2.inference.predict_from_raw_data import predict_entry_point; sys.exit(predict_entry_point())"
    ),
}


def console_command(name: str, *arguments: str) -> list[str]:
    """The command line running console script `name` with `arguments` in this interpreter: it works where the
    environment's scripts folder is not on PATH, and never picks up another installation's script."""
    return [sys.executable, "-c", f"import sys; {CONSOLE_ENTRY_POINTS[name]}", *arguments]
