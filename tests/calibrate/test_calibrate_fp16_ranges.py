"""FP16 where float16 cannot hold the values: the range check, and float32 islands that stay float32.

The model: the small DETR variant with random weights, whose backbone and first encoder activations
reach ~4e7 on real images (far beyond float16's 65504): the failure users see as NaN scores from FP16
engines.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from detrt.calibrate.calibration_images import ImageBatches, list_images, prepare
from detrt.calibrate.fp16 import KeepList, convert_fp16
from detrt.calibrate.fp16_ranges import FLOAT16_MAX, activation_peaks, nodes_beyond
from detrt.detectors import Detector, PreprocessSpec
from detrt.detectors.data.images import read_image
from detrt.export import ExportOptions, export_onnx, read_metadata
from detrt.export.onnx_passes import element_types
from detrt.export.ort_plugins import create_session
from support.shipped import shapes_dataset
from support.variants import small_config, small_model


@pytest.fixture(scope="module")
def large_activations(tmp_path_factory):
    path = tmp_path_factory.mktemp("ranges") / "detr.onnx"
    detector = Detector(small_model("detr"), small_config("detr"), PreprocessSpec(fixed_size=(256, 256)))
    export_onnx(detector, path, ExportOptions(msda="portable", batch=None))
    return path


def outputs(path, images) -> list[np.ndarray]:
    batch = prepare([read_image(p) for p in images], read_metadata(path))
    return create_session(str(path)).run(["scores", "boxes"], {"images": batch})


def test_peaks_find_the_nodes_beyond_float16(large_activations):
    model = onnx.load(str(large_activations))
    images = list_images(coco=shapes_dataset())[:4]
    peaks = activation_peaks(model, ImageBatches(images, read_metadata(model), 4))
    assert max(peaks.values()) > FLOAT16_MAX  # the premise: this model overflows float16
    beyond = nodes_beyond(model, peaks, FLOAT16_MAX / 4)
    assert any("/backbone/" in name for name in beyond)  # where the values grow (up to ~4e7)
    assert not any("/decoder/" in name for name in beyond)  # after the encoder's LayerNorms they are small
    assert nodes_beyond(model, peaks, float("inf")) == []


def test_range_check_turns_nan_scores_into_fp32_agreement(large_activations, tmp_path):
    images = list_images(coco=shapes_dataset())
    reference = outputs(large_activations, images[4:8])
    plain = convert_fp16(large_activations, tmp_path / "plain.onnx")
    assert plain.kept_for_range is None and "not run" in plain.to_dict()["range_check"]
    assert np.isnan(outputs(plain.path, images[4:8])[0]).any()

    checked = convert_fp16(large_activations, tmp_path / "checked.onnx", range_images=images[:4])
    assert len(checked.kept_for_range) > 10
    scores, boxes = outputs(checked.path, images[4:8])  # images the check did not see
    assert np.abs(scores - reference[0]).max() < 1e-2  # fp16 rounding of probabilities (measured 4e-4)
    assert np.quantile(np.abs(boxes - reference[1]), 0.99) < 1.0  # pixels of 256 (measured 0.25)
    model = onnx.load(str(checked.path))
    types = element_types(model)
    nodes = {node.name: node for node in model.graph.node}
    for name in checked.kept_for_range:  # no node the check named writes float16
        assert all(types[o] != onnx.TensorProto.FLOAT16 for o in nodes[name].output), name
        assert all(types.get(i) != onnx.TensorProto.FLOAT16 for i in nodes[name].input), name


def test_kept_neighbours_pass_float32_directly(large_activations, tmp_path):
    """Two adjacent kept nodes: no float16 round trip between them (it would round, and overflow)."""
    keep = KeepList((), ("/model/backbone/backbone.0/body/layer4/*",))
    model = onnx.load(str(convert_fp16(large_activations, tmp_path / "island.onnx", keep).path))
    producer = {o: n for n in model.graph.node for o in n.output}
    casts = {n.name: next(a.i for a in n.attribute if a.name == "to") for n in model.graph.node if n.op_type == "Cast"}
    for node in model.graph.node:
        if casts.get(node.name) == onnx.TensorProto.FLOAT and node.input[0] in producer:
            source = producer[node.input[0]]
            assert not (casts.get(source.name) == onnx.TensorProto.FLOAT16
                        and "layer4" in source.input[0]), (source.name, node.name)
    kept = [n for n in model.graph.node if n.name.startswith("/model/backbone/backbone.0/body/layer4/")]
    inside = {o for n in kept for o in n.output}
    assert sum(1 for n in kept for i in n.input if i in inside) > 10  # kept nodes read each other directly
