"""`TorchRunner`: a polygraphy runner for a PyTorch module on any device (polygraphy's own
PytRunner moves inputs to CUDA unconditionally), so PyTorch is the reference in Comparator runs."""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata


class TorchRunner(BaseRunner):
    """Runs `module(*inputs)` under `torch.no_grad()`; outputs are named by `output_names`."""

    def __init__(self, module: torch.nn.Module, input_metadata: TensorMetadata, output_names: list[str],
                 device: str = "cpu", name: str | None = None) -> None:
        super().__init__(name=name, prefix="pytorch-runner")
        self.module = module
        self.input_metadata = input_metadata
        self.output_names = list(output_names)
        self.device = torch.device(device)

    def activate_impl(self) -> None:
        self.module.eval().to(self.device)

    def get_input_metadata_impl(self) -> TensorMetadata:
        return self.input_metadata

    def infer_impl(self, feed_dict: dict[str, np.ndarray]) -> OrderedDict:
        inputs = [torch.from_numpy(np.ascontiguousarray(feed_dict[name])).to(self.device) for name in self.input_metadata]
        start = time.perf_counter()
        with torch.no_grad():
            outputs = self.module(*inputs)
        self.inference_time = time.perf_counter() - start
        return OrderedDict((name, output.cpu().numpy()) for name, output in zip(self.output_names, outputs))

    def deactivate_impl(self) -> None:
        pass
