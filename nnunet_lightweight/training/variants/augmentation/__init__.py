"""Augmentation variants of U-Net 1 with BatchNorm and Mish: affine (kept by the paper) and Table II configs I-V."""
