"""`detrt dataset shapes` and `detrt eval`: COCO metrics written as JSON, perfect predictions score 1."""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pytest
import torch

from detrt.detectors.data.coco import CocoDataset, DatasetError
from detrt.detectors.detections import Detections
from detrt.detectors.evaluate import METRICS, category_mapping, evaluate_detector
from detrt.detectors.data.shapes_dataset import write_dataset
from detrt.detectors.training.train import frozen_state_dict
from detrt.detectors import build_model
from support.variants import randomize_, small_config


def test_ground_truth_as_predictions_scores_one(tmp_path: Path) -> None:
    """The metric plumbing (label ids, xywh boxes, image ids) is right if the truth scores AP 1."""
    write_dataset(tmp_path, 6, seed=4, progress=False)
    dataset = CocoDataset.read(tmp_path / "annotations.json")
    served = iter(range(len(dataset)))

    def oracle(images: list[torch.Tensor]) -> list[Detections]:
        out = []
        for _ in images:
            index = next(served)
            anns = dataset.annotations[dataset.images[index]["id"]]
            boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
            labels = torch.tensor([dataset.category_ids.index(a["category_id"]) for a in anns])
            out.append(Detections(boxes.view(-1, 4), torch.ones(len(anns)), labels, dataset.class_names))
        return out

    metrics = evaluate_detector(oracle, tmp_path / "annotations.json", batch_size=4)
    assert metrics["images"] == 6 and metrics["AP"] > 0.99 and metrics["AP50"] > 0.99


def test_eval_command_writes_the_metrics(tmp_path: Path) -> None:
    subprocess.run(["detrt", "dataset", "shapes", "--out", str(tmp_path / "data"), "--num", "3", "--seed", "9"],
                   check=True, capture_output=True, timeout=300)
    model = randomize_(build_model(small_config("deformable_detr-refine").replace(num_classes=6)))
    state = {"model": frozen_state_dict(model), "args": argparse.Namespace(nheads=4, num_select=20, dropout=0.0)}
    torch.save(state, tmp_path / "model.pth")
    result = subprocess.run(["detrt", "eval", str(tmp_path / "model.pth"), "--coco", str(tmp_path / "data/annotations.json"),
                             "--json", str(tmp_path / "metrics.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(METRICS) | {"images"} <= set(metrics) and metrics["images"] == 3
    assert all(0.0 <= metrics[name] <= 1.0 or metrics[name] == -1.0 for name in METRICS)


def test_a_model_of_another_label_space_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path, 2, seed=4, progress=False)
    dataset = CocoDataset.read(tmp_path / "annotations.json")
    with pytest.raises(DatasetError, match="the model predicts 3 classes but the dataset has 6 categories"):
        category_mapping(3, dataset)
    assert category_mapping(91, dataset) == list(range(91))  # labels are category ids (reference COCO models)


def test_eval_command_takes_checkpoints_onnx_and_int8_graphs(tmp_path, capsys):
    """`detrt eval` runs any model `runtime.open` takes and names the backend; INT8 stays within 1 AP point."""
    from detrt.calibrate.calibration_images import list_images
    from detrt.calibrate.pipeline import CalibrationSettings, calibrate_model
    from detrt.runtime.cli import main
    from support.shipped import shapes_dataset, shipped_onnx

    coco = shapes_dataset(32, 4343)
    int8 = tmp_path / "model.int8.onnx"
    calibrate_model(shipped_onnx("plugin"), int8, list_images(coco=shapes_dataset(32, 2000)), CalibrationSettings(batch_size=4))
    results = {}
    for name, model in (("checkpoint", "shapes-deformable-detr"), ("fp32", str(shipped_onnx("plugin"))),
                        ("int8", str(int8))):
        out = tmp_path / f"{name}.json"
        assert main(["eval", model, "--coco", str(coco), "--json", str(out)]) == 0
        results[name] = json.loads(out.read_text())
    capsys.readouterr()
    assert results["checkpoint"]["backend"] == "pytorch"
    assert results["fp32"]["backend"] == results["int8"]["backend"] == "onnxruntime"
    assert results["fp32"]["AP"] > 0.5  # the shipped model really detects on these images
    assert abs(results["fp32"]["AP"] - results["checkpoint"]["AP"]) < 1e-3  # same network, fp32 both
    assert abs(results["int8"]["AP"] - results["fp32"]["AP"]) <= 0.01  # within 1.0 AP point
