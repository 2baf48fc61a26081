"""The contract every backend keeps: a batch of network-ready images in, the graph's outputs out.

Input: ``images`` float32 (N, 3, H, W), RGB resized to the metadata's input size (0..255 when the
graph normalises, else normalised). Output: ``scores`` (N, K), ``labels`` (N, K) int64 and
``boxes`` (N, K, 4) xyxy in pixels of the H x W input, exactly as the exported ONNX returns them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from detrt.detectors import InputError
from detrt.export import INPUT_NAME, OUTPUT_NAMES, ModelMetadata  # noqa: F401 (re-exported for the backends)


@dataclass(frozen=True)
class BatchRange:
    """The batch sizes a backend accepts in one call: min..max (max None: no limit)."""

    min: int = 1
    max: int | None = None

    def chunk(self, count: int) -> list[int]:
        """Sizes of the calls that cover `count` images (each at most `max`)."""
        step = self.max or count
        return [min(step, count - start) for start in range(0, count, step)]


class Backend(Protocol):
    """What `Model` needs from TensorRT, ONNX Runtime or PyTorch."""

    name: str  # "tensorrt" | "onnxruntime" | "pytorch"
    device: str  # where it runs, in words ("cpu", "cuda:0", ...)
    metadata: ModelMetadata  # drives pre- and post-processing
    batch: BatchRange

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run the network on an (N, 3, H, W) float32 batch; returns at least OUTPUT_NAMES."""
        ...


def gpu_index(device: str) -> int:
    """"cuda:N" -> N; "cuda" or "cpu" (the default of `runtime.open`) -> 0."""
    if device in ("cpu", "cuda"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise InputError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
