"""The set-prediction losses of Deformable DETR: sigmoid focal classification, L1 and GIoU on boxes,
applied to the final and every auxiliary (and two-stage encoder) output."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.box_ops import generalized_box_iou
from .matcher import HungarianMatcher
from ..postprocess import box_cxcywh_to_xyxy


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, num_boxes: float, alpha: float = 0.25,
                       gamma: float = 2.0) -> Tensor:
    """Focal loss (RetinaNet) summed over classes and queries, normalised by the number of boxes."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum() / num_boxes


class SetCriterion:
    """Total loss = sum over outputs of (w_cls * focal + w_l1 * L1 + w_giou * (1 - GIoU))."""

    def __init__(self, num_classes: int, matcher: HungarianMatcher | None = None, weight_class: float = 2.0,
                 weight_bbox: float = 5.0, weight_giou: float = 2.0) -> None:
        self.num_classes = num_classes
        self.matcher = matcher or HungarianMatcher()
        self.weights = {"loss_ce": weight_class, "loss_bbox": weight_bbox, "loss_giou": weight_giou}

    def single(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]], num_boxes: float,
               binary: bool = False) -> dict[str, Tensor]:
        """Unweighted losses of one output; `binary` treats every target as class 0 (two-stage encoder)."""
        if binary:
            targets = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
        matches = self.matcher(outputs, targets)
        batch_index = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(matches)])
        query_index = torch.cat([src for src, _ in matches])
        logits = outputs["pred_logits"]
        target_classes = torch.zeros_like(logits)
        matched_labels = torch.cat([t["labels"][tgt] for t, (_, tgt) in zip(targets, matches)])
        target_classes[batch_index, query_index, matched_labels] = 1.0
        loss_ce = sigmoid_focal_loss(logits, target_classes, num_boxes)
        src_boxes = outputs["pred_boxes"][batch_index, query_index]
        tgt_boxes = torch.cat([t["boxes"][tgt] for t, (_, tgt) in zip(targets, matches)])
        loss_bbox = F.l1_loss(src_boxes, tgt_boxes, reduction="none").sum() / num_boxes
        giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(tgt_boxes)))
        loss_giou = (1 - giou).sum() / num_boxes
        return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def __call__(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Weighted total (`loss`) and the unweighted parts of the final output."""
        num_boxes = max(float(sum(len(t["labels"]) for t in targets)), 1.0)
        final = self.single(outputs, targets, num_boxes)
        parts = [final] + [self.single(aux, targets, num_boxes) for aux in outputs.get("aux_outputs", [])]
        if "enc_outputs" in outputs:
            parts.append(self.single(outputs["enc_outputs"], targets, num_boxes, binary=True))
        total = sum(self.weights[name] * part[name] for part in parts for name in self.weights)
        return {"loss": total, **{name: value.detach() for name, value in final.items()}}
