"""Which layers INT8 hurts most, and the fewest to keep in float for an accuracy budget.

Ranking: each quantizable layer (Conv, MatMul, Gemm) is quantised alone with the calibrated ranges and
the graph's detections on a few images are compared with the FP32 graph's (`detection_error`).
Budget: the worst layers are kept out of INT8, as few as possible, until the AP drop against the FP32
graph is within `max_ap_drop` AP points: growing steps 1, 2, 4, ... until the budget holds, then a
bisection between the last failing and the first passing count (assumes more exclusions never hurt).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from detrt.detectors import InputError
from detrt.export import INPUT_NAME, create_session
from torchvision.ops import box_iou
from tqdm import tqdm

from .int8 import quantizable_nodes, quantize

CONFIDENT = 0.3  # reference detections whose boxes the error follows


def detection_error(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """Order-free distance between two runs' (scores, labels, boxes) outputs, 0 when equal.

    Per image: the mean absolute difference of the sorted top-k scores, plus the mean (1 - IoU) of each
    confident reference box with its best same-label candidate box (any score). Near ties that swap
    places in the top-k cost nothing; a moved, lost or relabelled detection does.
    """
    (ref_scores, ref_labels, ref_boxes), (scores, labels, boxes) = reference[:3], candidate[:3]
    errors = []
    for i in range(len(ref_scores)):
        score_error = float(np.abs(np.sort(ref_scores[i])[::-1] - np.sort(scores[i])[::-1]).mean())
        confident = ref_scores[i] >= CONFIDENT
        box_error = 0.0
        if confident.any():
            iou = box_iou(torch.from_numpy(ref_boxes[i][confident]).float(), torch.from_numpy(boxes[i]).float())
            iou[torch.from_numpy(ref_labels[i][confident])[:, None] != torch.from_numpy(labels[i])[None, :]] = 0.0
            box_error = float((1.0 - iou.max(dim=1).values).mean())
        errors.append(score_error + box_error)
    return float(np.mean(errors))


def run(model: onnx.ModelProto, images: np.ndarray, batch: int | None) -> list[np.ndarray]:
    """The graph's outputs on `images` (in calls of the graph's fixed batch, or all at once)."""
    session = create_session(model)
    step = batch or len(images)
    parts = [session.run(None, {INPUT_NAME: images[i:i + step]}) for i in range(0, len(images) - step + 1, step)]
    return [np.concatenate(outputs) for outputs in zip(*parts)]


@dataclass(frozen=True)
class LayerSensitivity:
    """The detection error of the graph with only `layer` in INT8."""

    layer: str
    op_type: str
    error: float


def rank_layers(model: onnx.ModelProto, ranges, images: np.ndarray, batch: int | None,  # noqa: ANN001
                candidates: list[str] | None = None) -> list[LayerSensitivity]:
    """Quantizable layers (or `candidates`), worst first."""
    reference = run(model, images, batch)
    op_types = {node.name: node.op_type for node in model.graph.node}
    names = candidates if candidates is not None else quantizable_nodes(model)
    unknown = [name for name in names if op_types.get(name) not in ("Conv", "MatMul", "Gemm")]
    if unknown:
        raise InputError(f"not quantizable layers of this graph: {unknown[:5]}")
    ranked = []
    for name in tqdm(names, desc="sensitivity (one layer in INT8 at a time)", unit="layer"):
        alone = quantize(model, ranges, only=[name])
        ranked.append(LayerSensitivity(name, op_types[name], detection_error(reference, run(alone, images, batch))))
    return sorted(ranked, key=lambda item: item.error, reverse=True)


@dataclass
class BudgetResult:
    """The exclusion found for an AP budget, and every count tried (AP in points, 0-100)."""

    reference_ap: float
    max_ap_drop: float
    excluded: list[str]
    ap: float
    met: bool
    tried: dict[int, float] = field(default_factory=dict)  # excluded count -> AP

    def to_dict(self) -> dict:
        """JSON-friendly summary."""
        return {"reference_ap": round(self.reference_ap, 2), "max_ap_drop": self.max_ap_drop, "ap": round(self.ap, 2),
                "ap_drop": round(self.reference_ap - self.ap, 2), "budget_met": self.met,
                "excluded_layers": self.excluded, "tried": {str(k): round(v, 2) for k, v in sorted(self.tried.items())}}


def fewest_exclusions(ranking: list[LayerSensitivity], ap_with: Callable[[list[str]], float], reference_ap: float,
                      max_ap_drop: float) -> BudgetResult:
    """The fewest worst-ranked layers to keep in float so that reference_ap - AP <= max_ap_drop.

    `ap_with(excluded)` is the AP (points) of the INT8 graph with those layers kept in float.
    """
    order = [item.layer for item in ranking]
    tried: dict[int, float] = {}

    def holds(count: int) -> bool:
        if count not in tried:
            tried[count] = ap_with(order[:count])
        return reference_ap - tried[count] <= max_ap_drop

    failing, passing, step = -1, None, 0
    while passing is None:
        count = min(step, len(order))
        if holds(count):
            passing = count
        elif count == len(order):
            break
        else:
            failing, step = count, max(1, step * 2)
    if passing is None:
        return BudgetResult(reference_ap, max_ap_drop, order, tried[len(order)], False, tried)
    while passing - failing > 1:
        middle = (passing + failing) // 2
        if holds(middle):
            passing = middle
        else:
            failing = middle
    return BudgetResult(reference_ap, max_ap_drop, order[:passing], tried[passing], True, tried)
