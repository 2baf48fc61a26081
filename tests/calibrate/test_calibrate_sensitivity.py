"""INT8 sensitivity: the order-free detection error, the layer ranking on the shipped model, the
search for the fewest float layers that meet an AP budget, and the whole `--sensitivity` path."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from detrt.calibrate.calibration_images import ImageBatches, list_images, prepare
from detrt.calibrate.int8 import calibrated_ranges, quantizable_nodes
from detrt.calibrate.model_files import load_fp32
from detrt.calibrate.sensitivity import LayerSensitivity, detection_error, fewest_exclusions, rank_layers
from detrt.detectors.data.images import read_image
from detrt.export import read_metadata
from detrt.runtime.cli import main
from support.shipped import shapes_dataset, shipped_onnx

SENSITIVE = "/model/bbox_embed.2/layers.2/MatMul"  # the last box layer: its error moves every box


def outputs(scores, labels, boxes) -> list[np.ndarray]:
    return [np.array([scores], np.float32), np.array([labels], np.int64), np.array([boxes], np.float32)]


def test_detection_error_is_order_free_and_grows_with_damage():
    boxes = [[0, 0, 50, 50], [100, 100, 150, 150], [10, 200, 60, 250]]
    reference = outputs([0.9, 0.6, 0.6], [0, 1, 2], boxes)
    swapped = outputs([0.9, 0.6, 0.6], [0, 2, 1], [boxes[0], boxes[2], boxes[1]])  # a tie changed places
    assert detection_error(reference, reference) == 0.0 and detection_error(reference, swapped) == 0.0
    moved = outputs([0.9, 0.6, 0.6], [0, 1, 2], [[5, 5, 55, 55], *boxes[1:]])
    rescored = outputs([0.8, 0.6, 0.6], [0, 1, 2], boxes)
    relabelled = outputs([0.9, 0.6, 0.6], [3, 1, 2], boxes)
    assert 0 < detection_error(reference, rescored) < detection_error(reference, moved)
    assert detection_error(reference, relabelled) == pytest.approx(1 / 3)  # one of 3 confident boxes lost


def ranking(count: int) -> list[LayerSensitivity]:
    return [LayerSensitivity(f"layer{i}", "MatMul", 1.0 / (i + 1)) for i in range(count)]


def test_fewest_exclusions_finds_the_smallest_count():
    calls = []

    def ap_with(excluded: list[str]) -> float:  # AP recovers as the 5 worst layers leave INT8
        calls.append(len(excluded))
        return 70.0 + min(len(excluded), 5) * 0.4

    result = fewest_exclusions(ranking(20), ap_with, reference_ap=72.0, max_ap_drop=0.5)
    assert result.met and result.excluded == ["layer0", "layer1", "layer2", "layer3"]  # 71.6: drop 0.4
    assert calls == [0, 1, 2, 4, 3]  # grow 0, 1, 2, 4; then bisect between 2 and 4
    assert fewest_exclusions(ranking(20), ap_with, 70.0, 1.0).excluded == []  # already within budget
    hopeless = fewest_exclusions(ranking(3), lambda excluded: 60.0, 72.0, 1.0)
    assert not hopeless.met and hopeless.excluded == ["layer0", "layer1", "layer2"]
    assert hopeless.to_dict()["budget_met"] is False and hopeless.to_dict()["ap_drop"] == 12.0


def test_ranking_on_the_shipped_model():
    model, metadata = load_fp32(shipped_onnx())
    images = list_images(coco=shapes_dataset())
    ranges, _, _ = calibrated_ranges(model, metadata, lambda: ImageBatches(images, metadata, 4), "minmax", None)
    sample = prepare([read_image(path) for path in images[:4]], metadata)
    backbone = quantizable_nodes(model)[5]
    ranked = rank_layers(model, ranges, sample, None, [backbone, SENSITIVE])
    assert sorted(r.layer for r in ranked) == sorted([backbone, SENSITIVE])
    assert ranked[0].error >= ranked[1].error > 0  # quantising any layer alone changes the detections
    with pytest.raises(ValueError, match="not quantizable"):
        rank_layers(model, ranges, sample, None, ["/model/transformer/encoder/layers.0/norm1/LayerNormalization"])


def test_sensitivity_end_to_end(tmp_path, capsys):
    coco = shapes_dataset()
    out = tmp_path / "sens.int8.onnx"
    code = main(["calibrate", str(shipped_onnx()), "--coco", str(coco), "--batch", "4", "--method", "minmax",
                 "--sensitivity", "--max-ap-drop", "100", "--sensitivity-images", "2",
                 "--sensitivity-layers", SENSITIVE, "--sensitivity-layers", "/model/class_embed*", "-o", str(out),
                 "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    sensitivity = result["sensitivity"]
    assert {w["layer"] for w in sensitivity["worst_layers"]} == {SENSITIVE, "/model/class_embed.2/MatMul"}
    assert sensitivity["budget_met"] and sensitivity["excluded_layers"] == []  # a budget any AP meets
    assert result["excluded_layers"] == [] and read_metadata(out).precision == "int8"
    assert set(sensitivity["tried"]) == {"0"} and sensitivity["reference_ap"] > 50
    model = onnx.load(str(out))
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) > 100
