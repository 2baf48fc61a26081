"""Box arithmetic for training: IoU and generalised IoU of corner boxes."""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError


def box_area(boxes: Tensor) -> Tensor:
    """(K, 4) xyxy -> (K,) areas."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU (A, B) of xyxy boxes, and the unions."""
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union, union


def generalized_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise generalised IoU (A, B) of xyxy boxes (https://giou.stanford.edu)."""
    if not ((a[:, 2:] >= a[:, :2]).all() and (b[:, 2:] >= b[:, :2]).all()):
        raise InputError("boxes must be xyxy with x1 >= x0 and y1 >= y0")
    iou, union = box_iou(a, b)
    top_left = torch.min(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.max(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing
