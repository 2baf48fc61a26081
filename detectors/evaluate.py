"""COCO mAP of any predictor on a COCO-format dataset (pycocotools).

A predictor maps a list of (3, H, W) uint8 images to one `Detections` per image, boxes in the
images' own pixels: a PyTorch `Detector` today, ONNX Runtime and TensorRT backends later.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable
from pathlib import Path

from torch import Tensor
from tqdm import tqdm

from .data.coco import CocoDataset, DatasetError
from .detections import Detections

Predictor = Callable[[list[Tensor]], list[Detections]]
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def category_mapping(num_model_classes: int, dataset: CocoDataset) -> list[int]:
    """COCO category id of each model label.

    A model with one label per category maps labels to the sorted categories; a model whose labels
    are the category ids themselves (the reference COCO models: 91 labels, ids 1..90) maps them as is.
    """
    if num_model_classes == len(dataset.category_ids):
        return list(dataset.category_ids)
    if num_model_classes > max(dataset.category_ids):
        return list(range(num_model_classes))
    raise DatasetError(f"the model predicts {num_model_classes} classes but the dataset has "
                       f"{len(dataset.category_ids)} categories with ids up to {max(dataset.category_ids)}: "
                       "evaluate a model trained on this label space")


def coco_results(dataset: CocoDataset, indices: Iterable[int], detections: Iterable[Detections]) -> list[dict]:
    """COCO result records (xywh boxes) of `detections`, the predictions for the dataset images `indices`."""
    results: list[dict] = []
    categories: list[int] | None = None
    for index, found in zip(indices, detections):
        found.check_finite(f"the model, on image {dataset.images[index].get('file_name', index)},")
        categories = categories or category_mapping(len(found.class_names), dataset)
        image_id = dataset.images[index]["id"]
        for box, score, label in zip(found.boxes.tolist(), found.scores.tolist(), found.labels.tolist()):
            x0, y0, x1, y1 = box
            results.append({"image_id": image_id, "category_id": categories[label],
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return results


def predictions_as_coco(dataset: CocoDataset, predict: Predictor, batch_size: int = 8) -> list[dict]:
    """Run `predict` over the dataset and return COCO result records (xywh boxes)."""
    results: list[dict] = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="evaluating", unit="batch"):
        indices = range(start, min(start + batch_size, len(dataset)))
        results += coco_results(dataset, indices, predict([dataset.load_image(i) for i in indices]))
    return results


def coco_metrics(annotations: str | Path, results: list[dict], image_ids: list[int] | None = None) -> dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl (0..1, as pycocotools prints them) of `results`, over every image of
    `annotations` or only `image_ids` (the images that were predicted)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotations))
        if not results:
            return dict.fromkeys(METRICS, 0.0)
        evaluation = COCOeval(ground_truth, ground_truth.loadRes(results), "bbox")
        if image_ids is not None:
            evaluation.params.imgIds = list(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(evaluation.stats[i]) for i, name in enumerate(METRICS)}


def evaluate_detector(predict: Predictor, annotations: str | Path, images_dir: str | Path | None = None,
                      batch_size: int = 8) -> dict[str, float | int]:
    """COCO metrics of `predict` on the dataset, with the number of images."""
    dataset = CocoDataset.read(annotations, images_dir)
    metrics: dict[str, float | int] = dict(coco_metrics(annotations, predictions_as_coco(dataset, predict, batch_size)))
    metrics["images"] = len(dataset)
    return metrics
