"""The shipped trained model: small, loads with its own pre-processing, and finds shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detrt.detectors import zoo
from detrt.detectors.models.box_ops import box_iou
from detrt.detectors.data.shapes_dataset import CLASSES, render

HELD_OUT_SEED = 123456  # never used for training (the training set is seed 1, validation seed 1000)


def test_weights_are_small_and_match_the_entry() -> None:
    entry = zoo.entry("shapes-deformable-detr")
    assert entry.weights.stat().st_size <= 8 * 1024 * 1024
    detector = zoo.load_zoo("shapes-deformable-detr")
    assert detector.config == entry.config
    assert detector.preprocess == entry.preprocess and detector.class_names == list(CLASSES)


def test_shipped_model_detects_generated_shapes() -> None:
    detector = zoo.load_zoo("shapes-deformable-detr")
    found = total = 0
    for index in range(12):
        image, objects = render(HELD_OUT_SEED, index)
        detections = detector(np.asarray(image))[0].above(0.3)
        truth = torch.tensor([o.box for o in objects])
        if len(detections) == 0:
            total += len(objects)
            continue
        iou = box_iou(truth, detections.boxes)[0]
        for i, obj in enumerate(objects):
            match = (iou[i] >= 0.5) & (detections.labels == obj.label)
            found += int(match.any())
        total += len(objects)
    # measured: 48 of 57 (84%) on these 12 images
    assert found >= 0.75 * total, f"{found} of {total} shapes found"


def test_unknown_zoo_name_lists_the_names() -> None:
    with pytest.raises(ValueError, match=r"unknown zoo model 'yolo'; available: \['shapes-deformable-detr'\]"):
        zoo.entry("yolo")
