"""The bottom layer every other layer may use: labels and case ids, frame I/O, label maps, staged output, JSON,
the metadata sidecar, nnU-Net paths and dataset ids, errors, CPU features and architecture presets."""
