"""Speed benchmark plumbing (tiny frames, few iterations): networks per trainer, counts, the final JSON line."""

import json
import math
import statistics

import pytest

from nnunet_lightweight.core.errors import InputError
from nnunet_lightweight.inference.benchmark import benchmark, network_for_trainer, parse_path, time_engine
from nnunet_lightweight.inference.engines import count_gmacs, openvino_available
from nnunet_lightweight.inference.onnx_export import onnxruntime_available
from nnunet_lightweight.network import count_parameters


def test_default_network_matches_the_reference_figures():
    network = network_for_trainer("nnUNetTrainer")
    assert type(network).__name__ == "PlainConvUNet"
    assert count_parameters(network) == 33_474_840  # REFERENCE.md: nnU-Net 2.8.1 default 2d plan, 256x256
    assert count_gmacs(network, (1, 1, 256, 256)) == pytest.approx(14.8, abs=0.05)


def test_lightecho_network_counts():
    """U-Net 1 as specified: 4.0 GMACs per 256x256 frame (REFERENCE.md); as computed, with the decoder convolving
    the nearest-upsampled maps as transposed convolutions of the maps themselves, 15 % fewer."""
    network = network_for_trainer("nnUNetTrainerLightEcho")
    assert count_parameters(network) == 1_981_588
    assert count_gmacs(network, (1, 1, 256, 256)) == pytest.approx(3.40, abs=0.01)
    network.decoder.upsampled_convolution = [False] * len(network.decoder.stages)
    assert count_gmacs(network, (1, 1, 256, 256)) == pytest.approx(4.0, abs=0.05)
    assert not network.decoder.deep_supervision


def test_network_for_trainer_errors():
    with pytest.raises(InputError, match="total stride"):
        network_for_trainer("nnUNetTrainer", patch=(224, 224))  # 7 stages need multiples of 64
    with pytest.raises(InputError, match="at least twice"):
        network_for_trainer("nnUNetTrainer", patch=(64, 64))
    with pytest.raises(InputError, match="backend-precision"):
        parse_path("torch")
    with pytest.raises(InputError, match="unknown backend 'eagr'"):  # it was skipped, and the run exited 0
        parse_path("eagr-fp32")
    with pytest.raises(InputError, match="unknown precision 'fp33'"):
        parse_path("torch-fp33")
    assert parse_path("torch-fp16-graphs").cuda_graphs


def test_time_engine_statistics():
    import torch

    stats = time_engine(
        lambda x: x * 2,
        torch.zeros(4, 1, 8, 8),
        torch.device("cpu"),
        warmup=1,
        iterations=7,
        max_seconds=5,
        min_iterations=2,
    )
    assert stats["iterations"] == 7
    assert 0 < stats["p10"] <= stats["ms_per_frame"] <= stats["p90"]


def test_benchmark_cli_last_line_is_json(capsys, tmp_path):
    from nnunet_lightweight.cli import main

    paths = (
        ["eager-fp32", "torch-fp32"]
        + (["onnx-fp32"] if onnxruntime_available() else [])
        + (["openvino-fp32"] if openvino_available() else [])
    )
    argv = [
        "benchmark",
        "--device",
        "cpu",
        "--size",
        "128",
        "--batch-sizes",
        "1",
        "2",
        "--paths",
        *paths,
        "--warmup",
        "0",
        "--iterations",
        "2",
        "--min-iterations",
        "1",
        "--max-seconds",
        "0.1",
        "--threads",
        "1",
    ]
    assert main([*argv, "--output-json", str(tmp_path / "bench.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["written_by"] == "lightecho benchmark" and saved["summary"] == summary
    # --overwrite replaces a file of ours (a user's file is refused: the data-safety table)
    assert main([*argv, "--output-json", str(tmp_path / "bench.json"), "--overwrite"]) == 0
    for key in (
        "light_ms_per_frame",
        "default_ms_per_frame",
        "speedup",
        "light_fp32_ms_per_frame",
        "light_eager_ms_per_frame",
        "light_batch2_frames_per_second",
    ):
        assert math.isfinite(summary[key]) and summary[key] > 0, key
    assert summary["light_path"] in paths and summary["default_path"] in paths
    # The headline figures come from the alternating head-to-head rounds of the two fastest paths.
    assert summary["head_to_head_rounds"] == 5 and len(summary["speedup_per_round"]) == 5
    assert summary["speedup"] == pytest.approx(statistics.median(summary["speedup_per_round"]), rel=0.01)
    assert summary["nnUNetTrainerLightEcho_params"] == 1_981_588
    assert any(line.startswith("| nnUNetTrainer |") for line in lines)


def test_benchmark_skips_unavailable_paths():
    result = benchmark(
        ["nnUNetTrainerLightEcho"],
        "cpu",
        64,
        (1,),
        ["torch-fp32", "onnx-bf16"],
        warmup=0,
        iterations=1,
        min_iterations=1,
        max_seconds=0.1,
        num_threads=1,
        log=None,
    )
    assert [r["path"] for r in result["rows"]] == ["torch-fp32"]  # onnx runs fp32 only
    assert result["summary"]["default_ms_per_frame"] is None and result["summary"]["speedup"] is None
    assert result["rows"][0]["argmax_agreement_vs_eager_fp32"] > 0.999
