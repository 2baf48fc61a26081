"""Backends: one per runtime (ONNX Runtime, PyTorch, TensorRT), each keeping the contract of `base`."""
