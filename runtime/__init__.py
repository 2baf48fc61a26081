"""detrt.runtime: run detectors with TensorRT, ONNX Runtime or PyTorch behind one API.

    from detrt import runtime
    model = runtime.open("model.onnx")          # or a .engine, a .pth, a zoo name, a Detector
    detections = model.detect([image])          # one Detections per image, original pixels

Imports are lazy so that the command line starts fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from detrt.detectors import Detector

    from .model import Model


def open(source: str | Path | Detector, device: str = "cpu", threads: int = 0,  # noqa: A001 (runtime.open)
         plugin_lib: str | None = None, cuda_graph: bool = False) -> Model:
    """A `Model` for `source`; the file picks the backend (.engine: TensorRT, .onnx: ONNX Runtime,
    .pth or a zoo name or a `Detector`: PyTorch). `device`: cpu, cuda or cuda:N."""
    from .model import open_model

    return open_model(source, device=device, threads=threads, plugin_lib=plugin_lib, cuda_graph=cuda_graph)
