"""Fast inference with trained nnU-Net model folders: model loading, optimised engines, batched prediction,
ONNX export and speed benchmarks."""
