"""PyTorch backend: the reference, run through the same contract as the exported graph."""
from __future__ import annotations

import numpy as np
import torch

from detrt.detectors import Detector
from detrt.detectors.errors import InputError
from detrt.export import ModelMetadata
from detrt.export.export_module import OUTPUT_NAMES, ExportModule
from detrt.export.metadata import describe_detector

from ..errors import BackendUnavailableError
from .base import BatchRange


def detector_metadata(detector: Detector, size: tuple[int, int]) -> ModelMetadata:
    """What an export of `detector` at `size` would record, for a model that is not exported."""
    dtype = next(detector.model.parameters()).dtype
    return describe_detector(detector, size, normalize_in_graph=True, batch=None, msda="pytorch",
                             outputs=OUTPUT_NAMES, precision={torch.float16: "fp16"}.get(dtype, "fp32"))


class TorchBackend:
    """A `Detector` wrapped in `ExportModule`: images in, (scores, labels, boxes) out, eager PyTorch."""

    name = "pytorch"

    def __init__(self, detector: Detector, device: str = "cpu", size: tuple[int, int] | None = None) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError("PyTorch sees no CUDA device here; use --device cpu")
        size = size or detector.preprocess.fixed_size
        if size is None:
            raise InputError("this detector resizes by its shortest edge, so it has no single input size; "
                             "pass size=(H, W)")
        self.device = device
        self.metadata = detector_metadata(detector, (int(size[0]), int(size[1])))
        self.module = ExportModule(detector, self.metadata.input_size, normalize_in_graph=True, raw=False)
        self.module.eval().to(device)
        self.batch = BatchRange()

    @torch.inference_mode()
    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on an (N, 3, H, W) float32 batch of 0..255 images."""
        outputs = self.module(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device))
        return {name: tensor.cpu().numpy() for name, tensor in zip(OUTPUT_NAMES, outputs)}
