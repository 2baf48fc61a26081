"""`detrt compare` on the shipped model: FP32 (plugin and portable), FP16 and INT8 exports pass against
PyTorch; a corrupted candidate and a candidate from other weights are caught.

Images: a small generated shapes dataset with COCO annotations (8 images, ~25 confident detections),
so every part runs: polygraphy's tensor comparison, detection agreement, AP, the report files.
The limits are the precision policies of runtime/compare_policy.py (stated and justified there).
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image

from detrt.calibrate.calibration_images import list_images
from detrt.calibrate.fp16 import convert_fp16
from detrt.calibrate.pipeline import CalibrationSettings, calibrate_model
from detrt.detectors import Detections, Detector, PreprocessSpec
from detrt.detectors.evaluate import evaluate_detector
from detrt.export import ExportOptions, export_onnx
from detrt.export.onnx_passes import save_atomic
from detrt.runtime.cli import main
from detrt.runtime.accuracy.compare import ModelMismatchError, compare
from detrt.runtime.accuracy.report import write_report
from detrt.runtime.accuracy.agreement import image_agreement, summarize
from support.shipped import ZOO, shapes_dataset, shipped, shipped_onnx
from support.variants import small_config, small_model


@pytest.fixture(scope="module")
def candidates(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("candidates")
    convert_fp16(shipped_onnx(), folder / "model.fp16.onnx")
    calibrate_model(shipped_onnx(), folder / "model.int8.onnx", list_images(coco=shapes_dataset()),
                    CalibrationSettings(batch_size=4))
    return {"fp32": str(shipped_onnx()), "portable": str(shipped_onnx("portable")),
            "fp16": str(folder / "model.fp16.onnx"), "int8": str(folder / "model.int8.onnx")}


@pytest.fixture(scope="module")
def comparison(candidates):
    return compare(shipped(), list(candidates.values()), coco=shapes_dataset(), batch=4)


def test_every_precision_passes_against_pytorch(comparison):
    results = {c.precision + ("-portable" if "portable" in c.path else ""): c for c in comparison.candidates}
    assert set(results) == {"fp32", "fp32-portable", "fp16", "int8"}
    for name, result in results.items():
        assert result.passed, (name, result.failures)
        assert result.agreement["reference_detections"] >= 15  # a real comparison
    for name in ("fp32", "fp32-portable"):  # float32: every element within 1e-4 (boxes 1e-4 of 256 px)
        tensors = results[name].tensors
        assert all(tensors[o]["checked"] and tensors[o]["passed"] for o in ("scores", "labels", "boxes"))
        assert tensors["scores"]["max_abs"] < 1e-4 and tensors["labels"]["max_abs"] == 0
        assert results[name].agreement["precision"] == results[name].agreement["recall"] == 1.0
        assert abs(results[name].ap["drop_points"]) <= 0.1
    assert not any(result.ap["checked"] for result in results.values())  # 8 images: AP reported, not judged
    for name in ("fp16", "int8"):  # reduced precision: scores checked at the 99th percentile
        assert results[name].tensors["scores"]["check"] == "99th percentile"
        assert 0 < results[name].tensors["scores"]["mean_abs"]  # it really is a different computation
    assert comparison.reference_ap["AP"] > 50


def test_report_files(comparison, tmp_path):
    files = write_report(comparison, tmp_path / "report", tmp_path / "result.json")
    report = json.loads((tmp_path / "result.json").read_text())
    assert report["passed"] and len(report["candidates"]) == 4
    first = next(iter(report["candidates"].values()))
    assert {"passed", "tensors", "agreement", "ap"} <= set(first)
    assert set(first["tensors"]) == {"scores", "labels", "boxes"} and "p99_abs" in first["tensors"]["boxes"]
    markdown = (tmp_path / "report" / "compare.md").read_text()
    assert "| candidate | backend | precision | passed |" in markdown and markdown.count("| yes |") >= 4
    pictures = [path for key, path in files.items() if key.startswith("worst_")]
    assert len(pictures) == 4
    image = np.asarray(Image.open(pictures[0]))
    assert image.shape[1] > image.shape[0] / 6 and image.std() > 10  # side-by-side drawings, not blank


def test_a_corrupted_candidate_fails(tmp_path, capsys):
    model = onnx.load(str(shipped_onnx()))
    weight = next(n.input[1] for n in model.graph.node if n.name == "/model/class_embed.2/MatMul")
    target = next(t for t in model.graph.initializer if t.name == weight)
    values = numpy_helper.to_array(target).copy()
    values *= 1.5  # a plausible export bug: wrong scale on the classifier
    target.CopyFrom(numpy_helper.from_array(values, target.name))
    corrupted = save_atomic(model, tmp_path / "corrupted.onnx")
    code = main(["compare", "--zoo", ZOO, "--candidate", str(shipped_onnx()), str(corrupted), "--coco",
                 str(shapes_dataset()), "--num", "4", "--out", str(tmp_path / "out"),
                 "--json", str(tmp_path / "r.json")])
    assert code == 2
    error = capsys.readouterr().err
    assert "1 candidate(s) failed: corrupted.onnx" in error and "scores" in error and "compare.md" in error
    report = json.loads((tmp_path / "r.json").read_text())["candidates"]
    assert report["corrupted.onnx"]["passed"] is False and report[shipped_onnx().name]["passed"] is True
    assert (tmp_path / "out" / "worst-corrupted.onnx.png").is_file()


def test_cli_passes_for_fp32(tmp_path, capsys):
    images = shapes_dataset().parent / "images"
    assert main(["compare", "--zoo", ZOO, "--candidate", str(shipped_onnx()), "--images", str(images), "--num", "3",
                 "--out", str(tmp_path)]) == 0
    assert "passed" in capsys.readouterr().out
    report = json.loads((tmp_path / "compare.json").read_text())
    assert report["images"] == 3 and report["reference_ap"] is None  # no annotations: no AP


def test_ap_of_the_first_images_is_over_those_images(tmp_path):
    """With --num, AP covers the images compared, not the whole annotation file (where the others would
    count as missed objects)."""
    data = json.loads(shapes_dataset().read_text())
    kept = {image["id"] for image in data["images"][:4]}
    subset = {**data, "images": data["images"][:4], "annotations": [a for a in data["annotations"]
                                                                    if a["image_id"] in kept]}
    (tmp_path / "subset.json").write_text(json.dumps(subset))
    expected = evaluate_detector(shipped(), tmp_path / "subset.json", shapes_dataset().parent / "images")
    comparison = compare(shipped(), [shipped_onnx()], coco=shapes_dataset(), num=4)
    assert comparison.reference_ap["AP"] == pytest.approx(expected["AP"] * 100, abs=0.01)
    assert comparison.candidates[0].ap["drop_points"] == 0


def test_candidate_from_other_weights_is_refused(tmp_path):
    config = small_config("deformable_detr")
    other = Detector(small_model("deformable_detr"), config, PreprocessSpec(fixed_size=(256, 256)))
    path = tmp_path / "other.onnx"
    export_onnx(other, path, ExportOptions(msda="plugin"))
    with pytest.raises(ModelMismatchError, match="other.onnx was not exported from the reference weights.*--reference"):
        compare(shipped(), [path], coco=shapes_dataset(), num=2)
    resized = tmp_path / "resized.onnx"  # same weights, another input size
    export_onnx(shipped(), resized, ExportOptions(msda="plugin", size=(320, 320)))
    with pytest.raises(ModelMismatchError, match="takes \\(320, 320\\) images"):
        compare(shipped(), [resized], coco=shapes_dataset(), num=2)


def test_bad_image_inputs(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", "--zoo", ZOO, "--candidate", str(shipped_onnx()), "--images", str(empty)]) == 2
    assert "no images" in capsys.readouterr().err


def test_agreement_counts_pairs_at_iou_09():
    names = ["a", "b"]
    reference = Detections(torch.tensor([[0.0, 0, 100, 100], [200, 200, 300, 300]]), torch.tensor([0.9, 0.8]),
                           torch.tensor([0, 1]), names)
    shifted = Detections(torch.tensor([[0.0, 0, 100, 100], [210, 200, 310, 300]]), torch.tensor([0.85, 0.8]),
                         torch.tensor([0, 1]), names)  # IoU 0.82: not a pair at 0.9
    relabelled = Detections(reference.boxes, torch.tensor([0.9, 0.45]), torch.tensor([0, 0]), names)
    first = image_agreement(reference, shifted)
    assert (first.recalled, first.precise, first.score_deltas) == (1, 1, [pytest.approx(-0.05)])
    second = image_agreement(reference, relabelled)  # label 1 became 0 (and fell below 0.5): one miss
    assert (second.reference, second.candidate, second.recalled, second.precise) == (2, 1, 1, 1)
    summary = summarize([first, second])
    assert summary["recall"] == pytest.approx(2 / 4) and summary["precision"] == pytest.approx(2 / 3)
    assert summary["images_disagreeing"] == 2
    near = Detections(reference.boxes, torch.tensor([0.9, 0.49]), torch.tensor([0, 1]), names)
    assert image_agreement(reference, near).recalled == 2  # 0.8 vs 0.49: a pair, not a miss
