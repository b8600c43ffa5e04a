"""Small-frame training phases: resized and cropped batches, and the phase switch by epoch (and so on resume)."""

import pytest
import torch

from nnunet_lightweight.training.benchmark import TrainingPath, build_benchmark_trainer, random_batch
from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho
from nnunet_lightweight.training.small_frame_phases import SmallFramePhases, crop_batch, resize_batch

SIZE, SMALL, BATCH = 128, 64, 2


def _squares() -> torch.Tensor:
    labels = torch.zeros(BATCH, 1, SIZE, SIZE)
    labels[:, :, 16:48, 16:48] = 1
    labels[:, :, 24:40, 24:40] = 3
    return labels


def test_resize_batch_keeps_labels_and_dtypes():
    labels = _squares()
    image = torch.rand(BATCH, 1, SIZE, SIZE)
    batch = {"data": image, "target": [labels, labels.clone()], "keys": ["a", "b"]}
    resized = resize_batch(batch, SMALL)
    assert resized["data"].shape == (BATCH, 1, SMALL, SMALL) and resized["data"].dtype == torch.float32
    assert [t.shape for t in resized["target"]] == [(BATCH, 1, SMALL, SMALL)] * 2
    # Nearest neighbours: no label value is invented, the squares keep their area ratio, the batch is not changed.
    assert set(resized["target"][0].unique().tolist()) == {0.0, 1.0, 3.0}
    assert int((resized["target"][0] == 3).sum()) == BATCH * 8 * 8
    assert resized["keys"] == ["a", "b"] and batch["data"] is image and batch["target"][0].shape[-1] == SIZE
    # Antialiased, as a coarser scan would see it: lines one pixel wide average out instead of vanishing.
    lines = torch.zeros(1, 1, SIZE, SIZE)
    lines[..., ::4] = 1
    assert float(resize_batch({"data": lines, "target": labels}, SIZE // 4)["data"].mean()) == pytest.approx(
        0.25, abs=0.02
    )


def test_crop_batch_cuts_image_and_labels_at_the_same_place():
    # Every pixel of the image holds its own index, so a crop's corner value gives its position.
    image = torch.arange(BATCH * SIZE * SIZE, dtype=torch.float32).reshape(BATCH, 1, SIZE, SIZE)
    labels = _squares()
    torch.manual_seed(3)
    cropped = crop_batch({"data": image, "target": [labels, labels.clone()]}, SMALL)
    assert cropped["data"].shape == (BATCH, 1, SMALL, SMALL)
    positions = set()
    for index in range(BATCH):
        corner = int(cropped["data"][index, 0, 0, 0]) - index * SIZE * SIZE
        y, x = divmod(corner, SIZE)
        positions.add((y, x))
        assert torch.equal(cropped["data"][index], image[index, :, y : y + SMALL, x : x + SMALL])
        for target in cropped["target"]:
            assert torch.equal(target[index], labels[index, :, y : y + SMALL, x : x + SMALL])
    assert len(positions) == BATCH  # a window per frame


@pytest.mark.parametrize("mode", ["resize", "crop"])
def test_network_sees_small_frames_until_the_whole_frame_epochs(tmp_path, mode):
    class SmallFrameLightEcho(SmallFramePhases, nnUNetTrainerLightEcho):
        small_frame_phases = ((1, SMALL // 2), (1, SMALL))
        small_frame_mode = mode

    torch.manual_seed(0)
    trainer = build_benchmark_trainer(SmallFrameLightEcho, SIZE, BATCH, TrainingPath("fp32", True), str(tmp_path))
    seen = []
    trainer.network.register_forward_pre_hook(lambda module, inputs: seen.append(tuple(inputs[0].shape[-2:])))
    batch = random_batch(trainer, BATCH, SIZE)
    for epoch in range(4):  # the phase follows current_epoch, which nnU-Net restores on --c
        trainer.current_epoch = epoch
        loss = float(trainer.train_step(batch)["loss"])
        assert loss == loss and loss > 0
    assert seen == [(SMALL // 2, SMALL // 2), (SMALL, SMALL), (SIZE, SIZE), (SIZE, SIZE)]
