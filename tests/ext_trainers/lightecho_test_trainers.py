"""Test-only trainers, exposed to nnU-Net through nnUNet_extTrainer by the tests (never installed)."""

import os

from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho
from nnunet_lightweight.training.training_length import nnUNetTrainer_OnePassEpochs
from nnunet_lightweight.training.wall_clock_budget import nnUNetTrainer_Budget, nnUNetTrainerLightEcho_Budget


class nnUNetTrainerLightEcho_Test(nnUNetTrainerLightEcho):
    """LightEcho with a CPU-sized schedule; the epoch count comes from the environment so --c can extend it."""

    max_epochs = int(os.environ.get("LIGHTECHO_TEST_EPOCHS", "1"))
    plans_batch_size = 8
    seed = 12345  # one epoch on 8 patients: unseeded, the tests' size thresholds on its masks would be flaky


class nnUNetTrainer_OnePassEpochs_Test(nnUNetTrainer_OnePassEpochs):
    """nnU-Net's default recipe with the same test-sized schedule."""

    max_epochs = int(os.environ.get("LIGHTECHO_TEST_EPOCHS", "1"))


class nnUNetTrainerLightEcho_BudgetTest(nnUNetTrainerLightEcho_Budget):
    """The demo's equal wall-clock rule with a test-sized budget (seconds from the environment), at most 3 epochs."""

    budget_seconds = float(os.environ.get("LIGHTECHO_TEST_BUDGET", "3"))
    budget_max_epochs = 3
    plans_batch_size = 8


class nnUNetTrainer_BudgetTest(nnUNetTrainer_Budget):
    """nnU-Net's default recipe under the same test-sized budget."""

    budget_seconds = float(os.environ.get("LIGHTECHO_TEST_BUDGET", "3"))
    budget_max_epochs = 3
