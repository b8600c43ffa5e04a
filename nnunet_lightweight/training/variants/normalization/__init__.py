"""Normalization variants of U-Net 1: BatchNorm (kept by the paper) and InstanceNorm."""
