"""Hungarian matching of predictions to ground truth (scipy's linear_sum_assignment)."""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..models.box_ops import generalized_box_iou
from ..postprocess import box_cxcywh_to_xyxy


class HungarianMatcher:
    """One-to-one assignment minimising focal class cost + L1 box cost + GIoU cost (Deformable DETR)."""

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 alpha: float = 0.25, gamma: float = 2.0) -> None:
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.alpha, self.gamma = alpha, gamma

    @torch.no_grad()
    def __call__(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        """For each image, (prediction indices, target indices) of the matched pairs."""
        n, q = outputs["pred_logits"].shape[:2]
        prob = outputs["pred_logits"].flatten(0, 1).sigmoid()
        boxes = outputs["pred_boxes"].flatten(0, 1)
        labels = torch.cat([t["labels"] for t in targets])
        target_boxes = torch.cat([t["boxes"] for t in targets])
        if labels.numel() == 0:
            return [(torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64)) for _ in targets]
        negative = (1 - self.alpha) * prob**self.gamma * -(1 - prob + 1e-8).log()
        positive = self.alpha * (1 - prob) ** self.gamma * -(prob + 1e-8).log()
        cost = (self.cost_class * (positive[:, labels] - negative[:, labels])
                + self.cost_bbox * torch.cdist(boxes, target_boxes, p=1)
                - self.cost_giou * generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes)))
        cost = cost.view(n, q, -1).cpu()
        sizes = [len(t["boxes"]) for t in targets]
        matches = []
        for i, block in enumerate(cost.split(sizes, -1)):
            rows, cols = linear_sum_assignment(block[i].numpy())
            matches.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return matches
