"""The fast CPU training path against nnU-Net's plain one, and `lightecho benchmark --train` (tiny frames)."""

import copy
import json
import platform

import pytest
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_lightweight.cli import main
from nnunet_lightweight.core.cpu_features import cpu_flags, cpu_has_bf16, describe_cpu
from nnunet_lightweight.training.benchmark import (
    PLAIN_PATH,
    TrainingPath,
    benchmark_training,
    build_benchmark_trainer,
    random_batch,
)
from nnunet_lightweight.training.cpu_training import resolve_cpu_precision
from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho
from nnunet_lightweight.training.nnUNetTrainerLightEcho_CPU1h import nnUNetTrainerLightEcho_CPU1h
from nnunet_lightweight.training.skip_gradients import concatenated_modules, keep_skip_gradients_channels_last

SIZE, BATCH = 64, 4


def _losses(path: TrainingPath, work_dir, steps: int = 3, trainer_class: type = nnUNetTrainerLightEcho) -> tuple:
    torch.manual_seed(0)  # same initial weights for every path
    trainer = build_benchmark_trainer(trainer_class, SIZE, BATCH, path, str(work_dir))
    batch = random_batch(trainer, BATCH, SIZE)
    losses = [float(trainer.train_step(batch)["loss"]) for _ in range(steps)]
    return losses, trainer


def test_cpu_precision_follows_the_detected_instructions():
    assert resolve_cpu_precision("auto") == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_cpu_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        resolve_cpu_precision("fp16")
    if "avx512_bf16" not in cpu_flags() and "amx_bf16" not in cpu_flags():
        assert not cpu_has_bf16()
    assert "bf16" in describe_cpu()


def test_cpu_description_names_the_kernels_timed(monkeypatch):
    """A timing made with the kernels capped below the CPU's flags says so."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert f"ATen kernels {torch.backends.cpu.get_cpu_capability()}" in describe_cpu()
    assert "capped" not in describe_cpu()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert describe_cpu().endswith("oneDNN capped at AVX2")


def test_channels_last_trains_like_nnunets_plain_path(tmp_path):
    plain, plain_trainer = _losses(PLAIN_PATH, tmp_path / "plain")
    fast, fast_trainer = _losses(TrainingPath("fp32", True), tmp_path / "fast")
    assert fast == pytest.approx(plain, rel=1e-4)
    assert plain[-1] < plain[0]  # three Adam steps on one batch lower its loss
    # The optimised network is the same module tree: checkpoints keep their state-dict keys and values' shapes.
    plain_state, fast_state = plain_trainer.network.state_dict(), fast_trainer.network.state_dict()
    assert list(plain_state) == list(fast_state)
    assert all(plain_state[k].shape == fast_state[k].shape for k in plain_state)
    weight = next(p for p in fast_trainer.network.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16: the bf16 path is not used here")
def test_bf16_autocast_follows_the_fp32_loss(tmp_path):
    plain, _ = _losses(PLAIN_PATH, tmp_path / "plain")
    bf16, trainer = _losses(TrainingPath("bf16", True), tmp_path / "bf16")
    assert bf16 == pytest.approx(plain, rel=0.05)
    assert bf16[-1] < bf16[0]
    assert all(p.dtype == torch.float32 for p in trainer.network.parameters())  # fp32 master weights
    with torch.no_grad():
        outputs = trainer.network(torch.zeros(1, 1, SIZE, SIZE))
    assert all(o.dtype == torch.float32 for o in outputs)  # the loss sees fp32 logits


def test_stock_trainer_gets_the_same_path(tmp_path):
    """The benchmark's default nnU-Net trainer runs the same optimisations (a FastCPUTraining composition)."""
    plain, _ = _losses(PLAIN_PATH, tmp_path / "plain", steps=2, trainer_class=nnUNetTrainer)
    fast, trainer = _losses(TrainingPath("fp32", True), tmp_path / "fast", steps=2, trainer_class=nnUNetTrainer)
    assert type(trainer.network).__name__ == "PlainConvUNet"
    assert fast == pytest.approx(plain, rel=1e-4)
    # Both trainers keep freed buffers in the process (process-wide; see test_inference for what that changes).
    assert trainer.cpu_retains_freed_memory is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def test_cpu1h_schedule_decays_to_zero_and_keeps_the_last_weights():
    assert nnUNetTrainerLightEcho_CPU1h.patience is None and nnUNetTrainerLightEcho_CPU1h.final_weights == "last"
    trainer = nnUNetTrainerLightEcho_CPU1h.__new__(nnUNetTrainerLightEcho_CPU1h)
    trainer.network, trainer.initial_lr, trainer.weight_decay = torch.nn.Linear(1, 1), 1e-3, 0.0
    trainer.num_epochs = nnUNetTrainerLightEcho_CPU1h.max_epochs
    _, scheduler = trainer.configure_optimizers()
    rates = []
    for epoch in range(trainer.num_epochs):
        scheduler.step(epoch)
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert rates[-1] < 0.15e-3


def test_benchmark_train_json(capsys):
    code = main(
        ["benchmark", "--train", "--size", "64", "--train-batch-size", "2", "--train-steps", "1", "--no-compile"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("train_light_frames_per_s", "train_default_frames_per_s", "train_speedup", "cpu", "cpu_flags"):
        assert key in summary
    assert summary["train_speedup"] == pytest.approx(
        summary["train_light_frames_per_s"] / summary["train_default_frames_per_s"], rel=1e-2
    )
    expected_paths = {"fp32", "fp32-channels_last"} | ({"bf16-channels_last"} if cpu_has_bf16() else set())
    assert set(summary["train_speedup_per_path"]) == expected_paths


def test_benchmark_training_refuses_other_than_two_trainers():
    from nnunet_lightweight.core.errors import InputError

    with pytest.raises(InputError, match="two trainers"):
        benchmark_training(trainers=(nnUNetTrainerLightEcho,), size=64, batch_size=2, steps=1, log=None)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_fused_mish_is_mish(dtype, tolerance):
    """The compiled one-exponential Mish: aten's values and gradients, extremes included, in x's dtype."""
    from nnunet_lightweight.network.activations import mish_one_exp
    from nnunet_lightweight.training.fused_mish import compiled_mish

    x = torch.cat([torch.linspace(-40, 40, 801), torch.randn(1000) * 3]).to(dtype)
    kernels = [mish_one_exp] + ([compiled_mish()] if compiled_mish() is not None else [])
    for kernel in kernels:
        ours, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
        out = kernel(ours)
        assert out.dtype == dtype
        torch.testing.assert_close(
            out.float(), torch.nn.functional.mish(reference).float(), rtol=tolerance, atol=tolerance
        )
        out.float().sum().backward()
        torch.nn.functional.mish(reference).float().sum().backward()
        torch.testing.assert_close(ours.grad.float(), reference.grad.float(), rtol=tolerance, atol=tolerance)


def test_fast_path_fuses_lightechos_mish(tmp_path):
    from nnunet_lightweight.network.activations import ExpMish
    from nnunet_lightweight.training.fused_mish import compiled_mish

    _, plain = _losses(PLAIN_PATH, tmp_path / "plain", steps=1)
    _, fast = _losses(TrainingPath("fp32", True), tmp_path / "fast", steps=1)

    def slots(network: torch.nn.Module, kind: type) -> int:  # one activation instance may sit in several places
        return sum(isinstance(child, kind) for module in network.modules() for child in module.children())

    assert slots(plain.network, ExpMish) == 0 and slots(plain.network, torch.nn.Mish) > 0  # nnU-Net's own path
    expected = slots(plain.network, torch.nn.Mish) if compiled_mish() is not None else 0
    assert slots(fast.network, ExpMish) == expected == fast.cpu_fused_mish_modules


def test_lightecho_decoder_concatenates_nothing(tmp_path):
    """LightEcho's decoder convolves the upsampled maps and the skips without concatenating them
    (network/upsampled_convolution.py), so no gradient needs the hooks; with concatenation, every skip and
    upsampler does."""
    network = build_benchmark_trainer(nnUNetTrainerLightEcho, SIZE, BATCH, PLAIN_PATH, str(tmp_path)).network
    assert concatenated_modules(network) == []
    network.decoder.upsampled_convolution[-1] = False
    assert concatenated_modules(network) == [network.encoder.stages[0], network.decoder.upsamplers[-1]]


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerLightEcho, nnUNetTrainer])
def test_skip_gradients_become_channels_last_and_keep_their_values(tmp_path, trainer_class):
    """The hooks of training/skip_gradients.py: same parameter gradients, and the gradient reaching the last
    upsampler is one channels_last tensor (a strided slice of cat's gradient without them). LightEcho's decoder
    concatenates here, as with upsampling other than 2x nearest."""
    torch.manual_seed(0)
    trainer = build_benchmark_trainer(trainer_class, SIZE, BATCH, PLAIN_PATH, str(tmp_path))  # no hooks
    if trainer_class is nnUNetTrainerLightEcho:
        trainer.network.decoder.upsampled_convolution = [False] * len(trainer.network.decoder.stages)
    image = torch.randn(BATCH, 1, SIZE, SIZE).contiguous(memory_format=torch.channels_last)

    def gradients(hooked: bool) -> tuple[dict, torch.Tensor]:
        network = copy.deepcopy(trainer.network).to(memory_format=torch.channels_last)
        captured = []

        def capture(module, inputs, output) -> None:  # registered first: it sees the upsampler's own output
            output.register_hook(captured.append)

        concatenated_modules(network)[-1].register_forward_hook(capture)
        if hooked:
            assert keep_skip_gradients_channels_last(network) == len(concatenated_modules(network))
        outputs = network(image)
        sum(o.square().mean() for o in (outputs if isinstance(outputs, list) else [outputs])).backward()
        return {name: p.grad for name, p in network.named_parameters()}, captured[0]

    plain, plain_gradient = gradients(hooked=False)
    hooked, hooked_gradient = gradients(hooked=True)
    assert len(concatenated_modules(trainer.network)) > 4
    assert not plain_gradient.is_contiguous(memory_format=torch.channels_last)
    assert hooked_gradient.is_contiguous(memory_format=torch.channels_last)
    for name in plain:
        torch.testing.assert_close(hooked[name], plain[name], rtol=1e-4, atol=1e-6)
