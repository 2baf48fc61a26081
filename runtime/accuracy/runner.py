"""`ModelRunner`: a polygraphy runner over a runtime `Model`, so polygraphy's Comparator drives the very
backends `detrt run` uses (ONNX Runtime, TensorRT, PyTorch), with the runtime's batching around them."""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

from ..backends.base import INPUT_NAME
from ..model import Model, Prepared


class ModelRunner(BaseRunner):
    """Feeds ``images`` (N, 3, H, W) float32 to `model.infer` (split or padded to what the backend takes);
    outputs ``scores``, ``labels``, ``boxes``."""

    def __init__(self, model: Model, name: str, progress: Callable[[], None] = lambda: None) -> None:
        super().__init__(name=name, prefix="detrt-runner")
        self.model = model
        self.progress = progress  # called after each inference
        height, width = model.metadata.input_size
        self.input_metadata = TensorMetadata().add(INPUT_NAME, np.float32, ("N", 3, height, width))

    def activate_impl(self) -> None:
        pass

    def get_input_metadata_impl(self) -> TensorMetadata:
        return self.input_metadata

    def infer_impl(self, feed_dict: dict[str, np.ndarray]) -> OrderedDict:
        images = feed_dict["images"]
        start = time.perf_counter()
        outputs = self.model.infer(Prepared(images, [(0, 0)] * len(images)))
        self.inference_time = time.perf_counter() - start
        self.progress()
        return OrderedDict(outputs)

    def deactivate_impl(self) -> None:
        pass
