"""lightecho demo: the whole product on an embedded synthetic dataset (or on CAMUS), in one command."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="phantom -> nnU-Net -> LightEcho vs default nnU-Net -> report.md",
        description="Generates a synthetic echo phantom (no download), converts it, plans and preprocesses it with "
        "nnU-Net, trains LightEcho and the default nnU-Net for the same wall-clock budget, predicts the "
        "held-out patients, applies nnU-Net's connected-component post-processing, measures both "
        "networks' cost (parameters, GMACs, inference and training time) side by side, compares their "
        "accuracy (paired differences with 95 % CIs, Wilcoxon, equivalence verdict at ±0.01 Dice), "
        "computes EF, segments a real cine loop with the shipped CAMUS model and writes "
        "OUTPUT/report.md with figures. "
        "All nnU-Net folders live in OUTPUT; re-running with the same settings resumes. "
        "--camus PATH runs the same pipeline on real CAMUS data with the paper's schedule (GPU advised).",
    )
    parser.add_argument("-o", "--output", default="lightecho_demo", help="work directory (default: ./lightecho_demo)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller phantom and a 30 s training budget per model (about 5 min on 2 CPU cores)",
    )
    parser.add_argument("--camus", metavar="PATH", help="a CAMUS download (official NIfTI, legacy MHD or the 224 copy)")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="training/inference device (default: cuda when available)",
    )
    parser.set_defaults(
        func=_run,
        interrupted_note="the finished steps are kept in the work directory; rerun the same command to resume",
    )


def _run(args: argparse.Namespace) -> int:
    from nnunet_lightweight.workflows.demo import demo

    report = demo(args.output, args.quick, args.camus, args.device)
    print(report.read_text())
    return 0
