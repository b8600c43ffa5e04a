"""Time `lightecho predict` on one frame against `python -c "import torch"`: what the command costs above torch.

Each round runs both in fresh processes, alternating, after one untimed `lightecho predict` that fills the ONNX
cache (later commands with the same model find it there). The difference of the medians is the start-up that is
not torch's own import: this package's and nnU-Net's imports, model loading, engine build, reading, writing.

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


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    finished = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if finished.returncode != 0:
        last = (finished.stderr.strip().splitlines() or ["no message"])[-1]
        print(f"{' '.join(command[3:5])} failed (exit {finished.returncode}): {last}", file=sys.stderr)
        sys.exit(2)
    return time.perf_counter() - start


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
        timed([*predict, f"{work}/warm"])
        torch_seconds, predict_seconds = [], []
        for round_ in range(args.rounds):
            torch_seconds.append(timed([sys.executable, "-c", "import torch"]))
            predict_seconds.append(timed([*predict, f"{work}/round{round_}"]))
    result = {
        "import_torch_s": round(statistics.median(torch_seconds), 3),
        "predict_one_frame_s": round(statistics.median(predict_seconds), 3),
        "above_torch_s": round(statistics.median(predict_seconds) - statistics.median(torch_seconds), 3),
        "rounds": args.rounds,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
