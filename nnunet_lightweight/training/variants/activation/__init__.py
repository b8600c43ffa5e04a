"""Activation variants of U-Net 1 with BatchNorm: Mish (kept by the paper), LeakyReLU and GELU; ReLU is the BN step itself."""
