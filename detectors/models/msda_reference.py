"""The reference (portable) formulation of multi-scale deformable attention, in plain PyTorch ops that
torch.onnx exports at opset 16+: GridSample per level for the bilinear method, a gather for the discrete
one. The same arithmetic as transformers' `multi_scale_deformable_attention_v2`, op for op.

Samples are laid out per head as T = sum(P_l) entries, level by level: locations (N, Lq, M, T, 2) and
weights (N, Lq, M, T) with a list of point counts, or (N, Lq, M, L, P, 2) and (N, Lq, M, L, P) when every
level has P points (the same memory).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

METHODS = ("bilinear", "discrete")


def level_points(samples: Tensor, levels: int, points_per_level: Sequence[int] | None) -> list[int]:
    """The point count of each level: `points_per_level` if given, else P of rank-6 `samples` for every level."""
    if points_per_level:
        return [int(p) for p in points_per_level]
    if samples.dim() != 6:
        raise InputError(f"samples of shape {tuple(samples.shape)} need points_per_level (one count per level); "
                         "pass it, or give them as (N, Lq, M, L, P, 2)")
    return [samples.shape[4]] * levels


def _bilinear(value_l: Tensor, locations_l: Tensor) -> Tensor:
    """(N*M, D, H, W) sampled at (N*M, Lq, P, 2) in [0, 1] -> (N*M, D, Lq, P), zero outside."""
    return F.grid_sample(value_l, 2 * locations_l - 1, mode="bilinear", padding_mode="zeros", align_corners=False)


def _discrete(value_l: Tensor, locations_l: Tensor) -> Tensor:
    """(N*M, D, H, W) read at the cell of each (N*M, Lq, P, 2) location: x * W + 0.5 (two fp32 roundings)
    truncated toward zero and clamped to the map, y likewise -> (N*M, D, Lq, P)."""
    _, d, height, width = value_l.shape
    x = (locations_l[..., 0] * width + 0.5).to(torch.int64).clamp(0, width - 1)
    y = (locations_l[..., 1] * height + 0.5).to(torch.int64).clamp(0, height - 1)
    index = (y * width + x).flatten(1)  # (N*M, Lq*P)
    # gathered as (N*M, Lq*P, D) rows and then transposed, as transformers does: the same memory layout
    # makes the weighted sum add in the same order, so the outputs agree bit for bit
    gathered = value_l.flatten(2).transpose(1, 2).gather(1, index[:, :, None].expand(-1, -1, d))
    return gathered.transpose(1, 2).unflatten(2, tuple(locations_l.shape[1:3]))


def ms_deform_attn_reference(value: Tensor, spatial_shapes: Tensor, sampling_locations: Tensor,
                             attention_weights: Tensor, points_per_level: Sequence[int] | None = None,
                             method: str = "bilinear") -> Tensor:
    """MSDA level by level (GridSample, or a gather for `method` "discrete"): returns (N, Lq, M*D)."""
    if method not in METHODS:
        raise InputError(f"unknown MSDA sampling method {method!r}; choose one of {METHODS}")
    n, _, m, d = value.shape
    lq = sampling_locations.shape[1]
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    points = level_points(sampling_locations, len(shapes), points_per_level)
    samples = sum(points)
    value_per_level = value.split([h * w for h, w in shapes], dim=1)
    locations = sampling_locations.reshape(n, lq, m, samples, 2).transpose(1, 2).flatten(0, 1)  # (N*M, Lq, T, 2)
    locations_per_level = locations.split(points, dim=2)
    sample = _bilinear if method == "bilinear" else _discrete
    sampled = []
    for level, (h, w) in enumerate(shapes):
        value_l = value_per_level[level].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        sampled.append(sample(value_l, locations_per_level[level]))
    weights = attention_weights.reshape(n, lq, m, samples).transpose(1, 2).reshape(n * m, 1, lq, samples)
    output = (torch.cat(sampled, dim=-1) * weights).sum(-1).view(n, m * d, lq)
    return output.transpose(1, 2).contiguous()


def sampling_locations(reference_points: Tensor, offsets: Tensor, spatial_shapes: Tensor,
                       points_per_level: Sequence[int] | None = None) -> Tensor:
    """Absolute locations from reference points (N, Lq, L, 2 or 4) and offsets (N, Lq, M, L, P, 2), or
    (N, Lq, M, T, 2) with `points_per_level`: ``ref + offset / (W_l, H_l)``, or
    ``ref_xy + offset / P_l * ref_wh * 0.5`` for boxes (P_l: the points of the sample's level)."""
    if reference_points.shape[-1] not in (2, 4):
        raise InputError(f"reference_points must end in 2 or 4 values, got shape {tuple(reference_points.shape)}")
    if offsets.dim() == 6 and not points_per_level:
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
            return reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        return (reference_points[:, :, None, :, None, :2]
                + offsets / offsets.shape[4] * reference_points[:, :, None, :, None, 2:] * 0.5)
    points = level_points(offsets, spatial_shapes.shape[0], points_per_level)
    level_of_sample = torch.repeat_interleave(torch.arange(len(points)), torch.tensor(points))
    counts = torch.tensor(points, dtype=offsets.dtype)[level_of_sample].to(offsets.device)
    level_of_sample = level_of_sample.to(offsets.device)
    references = reference_points[:, :, None, level_of_sample]  # (N, Lq, 1, T, 2 or 4)
    if reference_points.shape[-1] == 2:
        normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
        return references + offsets / normalizer[level_of_sample]
    return references[..., :2] + offsets / counts[:, None] * references[..., 2:] * 0.5


def attention_weights_from_logits(logits: Tensor, levels: int, points: int | None = None) -> Tensor:
    """(N, Lq, M, T) logits softmaxed over the T samples of each head: viewed as (N, Lq, M, L, P) when
    `points` (one count for every level) is given, else kept (N, Lq, M, T)."""
    weights = F.softmax(logits, -1)
    if points is None:
        return weights
    n, lq, m, _ = logits.shape
    return weights.view(n, lq, m, levels, points)
