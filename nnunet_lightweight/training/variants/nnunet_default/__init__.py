"""nnU-Net-side ablations (paper Sec. III-B): default nnU-Net, 100 epochs, without augmentation / deep supervision."""
