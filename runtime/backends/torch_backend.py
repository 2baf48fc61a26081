"""PyTorch backend: the reference, run through the same contract as the exported graph."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from detrt.detectors import Detector, InputError
from detrt.export import OUTPUT_NAMES, ExportModule, ModelMetadata, describe_detector

from ..errors import BackendUnavailableError
from .base import BatchRange


def detector_metadata(detector: Detector, size: tuple[int, int]) -> ModelMetadata:
    """What an export of `detector` at `size` would record, for a model that is not exported."""
    dtype = next(detector.model.parameters()).dtype
    return describe_detector(detector, size, normalize_in_graph=True, batch=None, msda="pytorch",
                             outputs=OUTPUT_NAMES, precision={torch.float16: "fp16"}.get(dtype, "fp32"))


@dataclass(frozen=True)
class TorchOptions:
    """How eager PyTorch runs a `Detector`."""

    device: str = "cpu"  # cpu, cuda or cuda:N
    threads: int = 0  # intra-op threads (torch.set_num_threads, process-wide); 0: leave PyTorch's
    size: tuple[int, int] | None = None  # input (H, W); default: the detector's fixed pre-processing size


class TorchBackend:
    """A `Detector` wrapped in `ExportModule`: images in, (scores, labels, boxes) out, eager PyTorch."""

    name = "pytorch"

    def __init__(self, detector: Detector, options: TorchOptions = TorchOptions()) -> None:
        device = options.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError("PyTorch sees no CUDA device here; use --device cpu")
        if options.threads:
            torch.set_num_threads(options.threads)
        size = options.size or detector.preprocess.fixed_size
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
