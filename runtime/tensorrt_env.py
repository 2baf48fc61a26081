"""TensorRT itself: importing it with a clear error, and describing where engines are built and run."""
from __future__ import annotations

from .cuda_device import CudaDevice
from .errors import BackendUnavailableError


def import_tensorrt():  # noqa: ANN201 (the tensorrt module)
    """`import tensorrt`, or an error saying how to get it."""
    try:
        import tensorrt
    except ImportError as error:
        raise BackendUnavailableError(f"TensorRT is not installed here ({error}); install the trt extra "
                                      "(`python3 -m pip install -e '.[trt]'`) on a machine with an NVIDIA GPU, or run "
                                      "the ONNX model with ONNX Runtime instead (`detrt run MODEL.onnx ...`)") from None
    return tensorrt


def current_environment(trt: object, device: CudaDevice) -> dict:
    """TensorRT version, GPU name and compute capability: what a sidecar is checked against."""
    gpu, capability = device.properties()
    return {"tensorrt_version": str(trt.__version__), "gpu": gpu, "compute_capability": capability}  # type: ignore[attr-defined]
