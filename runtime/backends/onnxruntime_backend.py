"""ONNX Runtime backend: any detrt ONNX on the CPU or CUDA provider (plugin graphs included)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from detrt.export import create_session, load_onnx, read_metadata

from ..errors import BackendUnavailableError
from .base import INPUT_NAME, OUTPUT_NAMES, BatchRange, gpu_index


def providers_for(device: str) -> list[str | tuple[str, dict]]:
    """ONNX Runtime providers for "cpu", "cuda" or "cuda:N"; a clear error where CUDA is missing."""
    import onnxruntime as ort

    index = gpu_index(device)  # checks the name
    if device == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailableError(f"this ONNX Runtime has no CUDA provider (available: {available}); "
                                      "install onnxruntime-gpu on a machine with an NVIDIA GPU, or use --device cpu")
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """How ONNX Runtime runs a graph."""

    device: str = "cpu"  # cpu, cuda or cuda:N (the CUDA provider of onnxruntime-gpu)
    threads: int = 0  # intra-op threads; 0: ONNX Runtime's default


class OnnxRuntimeBackend:
    """An ONNX Runtime session over an exported graph; the graph's metadata describes its I/O."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, options: OnnxRuntimeOptions = OnnxRuntimeOptions()) -> None:
        proto = load_onnx(path)
        self.metadata = read_metadata(proto)
        self.session = create_session(proto, providers=providers_for(options.device), threads=options.threads)
        self.device = f"{options.device} ({self.session.get_providers()[0]})"
        batch = self.metadata.batch
        self.batch = BatchRange(batch, batch) if batch else BatchRange()

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run the session on an (N, 3, H, W) float32 batch."""
        outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})
        return dict(zip(OUTPUT_NAMES, outputs))
