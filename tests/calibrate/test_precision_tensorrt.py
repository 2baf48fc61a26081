"""TensorRT engines built from the FP16 and INT8 graphs (float32 or FP16 between the INT8 layers;
strongly typed: the precision is in the ONNX) pass `detrt compare` against PyTorch, next to their ONNX
Runtime runs.

Marked `tensorrt` and `gpu`: skipped where TensorRT cannot be imported or no GPU is present. The
plugin graph needs libdetrt_trt_plugins (found as `detrt build` finds it); the portable graph does not.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from detrt.calibrate.calibration_images import list_images
from detrt.calibrate.fp16 import convert_fp16
from detrt.calibrate.pipeline import CalibrationSettings, calibrate_model
from detrt.runtime.accuracy.compare import compare
from detrt.runtime.backends.tensorrt.build import build_engine
from support.shipped import shapes_dataset, shipped, shipped_onnx

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]


@pytest.mark.parametrize("mode", ["portable", "plugin"])
def test_fp16_and_int8_engines_pass_compare(mode, tmp_path):
    source = shipped_onnx(mode)
    fp16 = tmp_path / "model.fp16.onnx"
    convert_fp16(source, fp16)
    int8, mixed = tmp_path / "model.int8.onnx", tmp_path / "model.int8-fp16.onnx"
    settings = CalibrationSettings(batch_size=4, cache=tmp_path / "calib.json")
    calibrate_model(source, int8, list_images(coco=shapes_dataset()), settings)
    calibrate_model(source, mixed, list_images(coco=shapes_dataset()), replace(settings, float_layers="fp16"))
    engines = []
    for onnx_path in (source, fp16, int8, mixed):
        engine = tmp_path / onnx_path.with_suffix(".engine").name
        sidecar = build_engine(onnx_path, engine)
        assert sidecar["precision"] in ("fp32", "fp16", "int8")
        engines.append(engine)
    comparison = compare(shipped(), [*engines, fp16, int8, mixed], coco=shapes_dataset(), batch=1)
    by_name = {c.name: c for c in comparison.candidates}
    for candidate in comparison.candidates:
        assert candidate.passed, (candidate.name, candidate.failures)
    assert {by_name[e.name].backend for e in engines} == {"tensorrt"}
    assert by_name["model.int8.engine"].precision == "int8" and by_name["model.fp16.engine"].precision == "fp16"
    assert by_name["model.int8-fp16.engine"].precision == "int8"  # INT8 layers, FP16 between them
