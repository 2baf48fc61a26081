"""COCO AP of an ONNX graph (a file or an in-memory proto) through the ONNX Runtime backend, with the
runtime's own pre- and post-processing: what the precision work measures its candidates with."""
from __future__ import annotations

from pathlib import Path

import onnx
from detrt.detectors import evaluate_detector, temporary_folder

from ..model import open_model


def onnx_metrics(model: str | Path | onnx.ModelProto, coco: str | Path, images_dir: str | Path | None = None,
                 batch_size: int = 8) -> dict[str, float]:
    """AP, AP50, ... in points (0-100) of `model` on a COCO dataset."""
    if isinstance(model, onnx.ModelProto):
        with temporary_folder("detrt-ap-") as folder:
            path = Path(folder) / "model.onnx"
            onnx.save(model, str(path))
            return onnx_metrics(path, coco, images_dir, batch_size)
    metrics = evaluate_detector(open_model(str(model)), coco, images_dir, batch_size)
    return {key: float(value) * 100 for key, value in metrics.items() if key != "images"}


def onnx_ap(model: str | Path | onnx.ModelProto, coco: str | Path, images_dir: str | Path | None = None) -> float:
    """AP in points (0-100)."""
    return onnx_metrics(model, coco, images_dir)["AP"]
