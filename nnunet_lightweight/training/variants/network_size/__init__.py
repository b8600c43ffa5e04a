"""Network-size variants of the final model (paper Table III): U-Net 0, 2 and 3."""
