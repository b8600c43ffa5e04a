from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from nnunet_lightweight.training.nnUNetTrainerLightEcho import nnUNetTrainerLightEcho


class ValidationLossPlateau:
    """ReduceLROnPlateau on the validation loss, behind the scheduler interface nnU-Net's training loop calls.

    nnU-Net calls `lr_scheduler.step(current_epoch)` at the start of every epoch; a plateau schedule does not
    depend on the epoch number, so that call does nothing. The trainer reports each epoch's validation loss
    instead. PyTorch's defaults (factor 0.1, patience 10): the paper names the scheduler but not its settings.
    """

    def __init__(self, optimizer: Optimizer, factor: float = 0.1, patience: int = 10):
        self.plateau = ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience)

    def step(self, current_epoch: int | None = None) -> None:
        """nnU-Net's epoch-start call: the learning rate only changes when a validation loss is reported."""

    def report(self, validation_loss: float) -> None:
        """Lower the learning rate once the validation loss has not improved for `patience` epochs."""
        self.plateau.step(validation_loss)


class nnUNetTrainerLightEcho_ReduceLROnPlateau(nnUNetTrainerLightEcho):
    """The final model trained with ReduceLROnPlateau (as for U-Net 0, 2 and 3 in Table III) instead of a constant
    learning rate. A run resumed with --c keeps its learning rate (optimizer state) but restarts the plateau count."""

    def configure_optimizers(self):
        optimizer, _ = super().configure_optimizers()
        return optimizer, ValidationLossPlateau(optimizer)

    def on_epoch_end(self):
        self.lr_scheduler.report(self.logger.get_value("val_losses", step=-1))
        super().on_epoch_end()
