"""`ExportModule`: the detector as the exported graph sees it, images in, detections out."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from detrt.detectors import Detector

INPUT_NAME = "images"  # the graph's one input: (N, 3, H, W) float32
OUTPUT_NAMES = ("scores", "labels", "boxes")
RAW_OUTPUT_NAMES = ("pred_logits", "pred_boxes")


class ExportModule(nn.Module):
    """Wraps a `Detector` into the graph that gets exported.

    Input ``images`` (N, 3, H, W) float32, RGB at the export size: values 0..255 when
    `normalize_in_graph` (mean/std applied inside the graph), else already normalised.
    Outputs ``scores`` (N, K), ``labels`` (N, K) int64 and ``boxes`` (N, K, 4) xyxy in pixels of the
    H x W input, selected as the detector's post-processing does (DETR: one per query; the others:
    top-k over queries x classes). With `raw`, also ``pred_logits`` and ``pred_boxes`` (cxcywh, 0..1).
    """

    def __init__(self, detector: Detector, input_size: tuple[int, int], normalize_in_graph: bool, raw: bool) -> None:
        super().__init__()
        self.detector = detector
        self.model = detector.model
        self.normalize_in_graph = normalize_in_graph
        self.raw = raw
        mean = torch.tensor(detector.preprocess.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(detector.preprocess.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.register_buffer("input_size", torch.tensor([input_size], dtype=torch.int64), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        if self.normalize_in_graph:
            images = (images - self.mean) / self.std
        outputs = self.model(images)
        scores, labels, boxes = self.detector.postprocess(outputs, self.input_size)
        if self.raw:
            return scores, labels, boxes, outputs["pred_logits"], outputs["pred_boxes"]
        return scores, labels, boxes
