"""Time `lightecho predict` on one frame against `python -c "import torch"`: what the command costs above torch.

Each round runs both in fresh processes, alternating, after one untimed `lightecho predict` that fills the ONNX
cache (later commands with the same model find it there). Two readings, medians over the rounds:
- whole process: launch to exit for both; the difference is the start-up that is not torch's own import (this
  package's and nnU-Net's imports, model loading, engine build, reading, writing) plus any difference in exit time;
- to first frame: launch until the predicted frame is written (its output folder appears: outputs are staged and
  appear whole) against launch until `import torch` has returned, so neither process's exit counts.

Example (the shipped model, one CAMUS frame):
    python scripts/benchmark_startup.py ../shared/camus224/CAMUS_public/database_nifti/patient0001/patient0001_4CH_ED.nii.gz
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nnunet_lightweight.core.commands import console_command
from nnunet_lightweight.core.cpu_features import describe_cpu


def timed(command: list[str], appears: Path) -> tuple[float, float]:
    """Seconds from launching `command` until the path `appears` exists, and until the command has exited."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = None
    while ready is None and process.poll() is None:
        if appears.exists():
            ready = time.perf_counter() - start
        else:
            time.sleep(0.001)
    stderr = process.communicate()[1]
    total = time.perf_counter() - start
    if process.returncode != 0 or not appears.exists():
        last = (stderr.strip().splitlines() or ["no message"])[-1]
        print(f"{' '.join(command[3:5])} failed (exit {process.returncode}): {last}", file=sys.stderr)
        sys.exit(2)
    return (total if ready is None else ready), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("frame", type=Path, help="one frame file (e.g. a CAMUS NIfTI frame)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--predict-options", nargs=argparse.REMAINDER, default=[], help="extra options, last")
    args = parser.parse_args()
    if not args.frame.is_file():
        parser.error(f"frame file not found: {args.frame}")
    print(describe_cpu(), f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as work:
        predict = [*console_command("lightecho"), "predict", "-i", str(args.frame), *args.predict_options, "-o"]
        timed([*predict, f"{work}/warm"], Path(work, "warm"))
        torch_runs, predict_runs = [], []
        for round_ in range(args.rounds):
            imported = Path(work, f"torch{round_}")
            torch_runs.append(timed([sys.executable, "-c", f"import torch; open({str(imported)!r}, 'w')"], imported))
            output = Path(work, f"round{round_}")
            predict_runs.append(timed([*predict, str(output)], output))
    ready_torch, total_torch = (statistics.median(run[i] for run in torch_runs) for i in (0, 1))
    ready_predict, total_predict = (statistics.median(run[i] for run in predict_runs) for i in (0, 1))
    result = {
        "import_torch_s": round(total_torch, 3),
        "predict_one_frame_s": round(total_predict, 3),
        "above_torch_s": round(total_predict - total_torch, 3),
        "torch_imported_s": round(ready_torch, 3),
        "first_frame_written_s": round(ready_predict, 3),
        "first_frame_above_torch_s": round(ready_predict - ready_torch, 3),
        "rounds": args.rounds,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
