"""Every export mode builds a TensorRT engine whose detections match ONNX Runtime (needs TensorRT
and a GPU; skipped elsewhere). TF32 may be on for fp32 engines, so detections are matched rather
than compared bit for bit: scores within 0.02, boxes within 2 px at 256x256."""
from __future__ import annotations

import pytest

from detrt import runtime
from detrt.detectors.zoo import load_zoo
from detrt.export import ExportOptions, export_onnx
from detrt.runtime.accuracy.agreement import compare_detections
from detrt.runtime.backends.tensorrt.build import build_engine
from support.shipped import images

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]


@pytest.mark.parametrize("mode, fused", [("plugin", False), ("plugin", True), ("nvidia", False), ("portable", False)])
def test_engine_of_each_export_mode_matches_onnxruntime(mode, fused, tmp_path):
    path = tmp_path / f"{mode}{'-fused' if fused else ''}.onnx"
    export_onnx(load_zoo("shapes-deformable-detr"), path, ExportOptions(msda=mode, fused=fused))
    engine = tmp_path / "model.engine"
    build_engine(path, engine)
    pictures = images(3)
    expected = runtime.open(path).detect(pictures)
    found = runtime.open(engine, device="cuda").detect(pictures)
    agreement = compare_detections(expected, found, conf=0.3)
    assert agreement["agree"] and agreement["matched"] > 0, agreement
    assert agreement["max_score_diff"] < 0.02 and agreement["max_box_diff_px"] < 2.0, agreement
