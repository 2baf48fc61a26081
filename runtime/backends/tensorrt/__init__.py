"""TensorRT and TensorRT-RTX: which flavour is here, engine build, the sidecar, plugin loading, the backend."""
