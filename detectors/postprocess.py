"""Post-processing as tensor functions: raw logits and boxes -> scores, labels, pixel boxes."""
from __future__ import annotations

import torch
from torch import Tensor


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) centre/size boxes -> corner boxes."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def scale_boxes(boxes_xyxy: Tensor, image_sizes: Tensor) -> Tensor:
    """Normalised (N, K, 4) xyxy boxes -> pixels of images whose (h, w) are given as (N, 2)."""
    h, w = image_sizes.to(boxes_xyxy.dtype).unbind(-1)
    return boxes_xyxy * torch.stack([w, h, w, h], dim=-1)[:, None, :]


def postprocess_softmax(logits: Tensor, boxes: Tensor, image_sizes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """DETR: softmax over classes, the last one being "no object"; one detection per query.

    Returns scores (N, Q), labels (N, Q), boxes (N, Q, 4) xyxy in pixels.
    """
    scores, labels = logits.softmax(-1)[..., :-1].max(-1)
    return scores, labels, scale_boxes(box_cxcywh_to_xyxy(boxes), image_sizes)


def postprocess_sigmoid_topk(logits: Tensor, boxes: Tensor, image_sizes: Tensor,
                             num_select: int = 100) -> tuple[Tensor, Tensor, Tensor]:
    """Deformable / Conditional DETR: sigmoid, top-k over queries x classes.

    Returns scores (N, K), labels (N, K), boxes (N, K, 4) xyxy in pixels, K = min(num_select, Q*C).
    """
    n, _, num_classes = logits.shape
    probabilities = logits.sigmoid().view(n, -1)
    scores, index = torch.topk(probabilities, min(num_select, probabilities.shape[1]), dim=1)
    query = torch.div(index, num_classes, rounding_mode="floor")
    labels = index % num_classes
    chosen = torch.gather(boxes, 1, query.unsqueeze(-1).expand(-1, -1, 4))
    return scores, labels, scale_boxes(box_cxcywh_to_xyxy(chosen), image_sizes)
