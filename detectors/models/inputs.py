"""Checks on the raw model inputs shared by every detector."""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError


def default_mask(images: Tensor, mask: Tensor | None) -> Tensor:
    """The padding mask (True on padding) for `images`; all False when `mask` is None."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise InputError(f"images must be (N, 3, H, W) normalised float tensors, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    if mask is None:
        return torch.zeros((n, h, w), dtype=torch.bool, device=images.device)
    if tuple(mask.shape) != (n, h, w) or mask.dtype != torch.bool:
        raise InputError(f"mask must be a bool tensor of shape {(n, h, w)} (True on padding), "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    return mask
