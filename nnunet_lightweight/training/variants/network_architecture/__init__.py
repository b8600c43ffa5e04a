"""Architecture variants of the final model: residual blocks and transposed-convolution upsampling."""
