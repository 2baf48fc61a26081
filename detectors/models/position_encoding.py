"""Positional encodings of the feature maps: sine (DETR and Deformable DETR flavours) and learned."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import InputError


def sine_frequencies(num_feats: int, temperature: float, device: torch.device) -> Tensor:
    """temperature ** (2 * (i // 2) / num_feats) for i in range(num_feats)."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)


def interleave_sin_cos(pos: Tensor) -> Tensor:
    """(..., F) angles -> (..., F) with sin on even and cos on odd features, interleaved."""
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionEmbeddingSine(nn.Module):
    """The sine embedding of "Attention is all you need", over the unpadded area of each image.

    `offset` is 0 for DETR / Conditional DETR and -0.5 for Deformable DETR (pixel centres).
    Returns (N, 2*num_pos_feats, H, W), y features first.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, offset: float = 0.0) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.offset = offset
        self.scale = 2 * math.pi

    def forward(self, mask: Tensor) -> Tensor:
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        eps = 1e-6
        y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + eps) * self.scale
        x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = sine_frequencies(self.num_pos_feats, self.temperature, mask.device)
        pos_x = interleave_sin_cos(x_embed[:, :, :, None] / dim_t)
        pos_y = interleave_sin_cos(y_embed[:, :, :, None] / dim_t)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class PositionEmbeddingLearned(nn.Module):
    """Learned absolute row/column embeddings (up to 50 x 50 positions), x features first."""

    def __init__(self, num_pos_feats: int = 128) -> None:
        super().__init__()
        self.row_embed = nn.Embedding(50, num_pos_feats)
        self.col_embed = nn.Embedding(50, num_pos_feats)

    def forward(self, mask: Tensor) -> Tensor:
        n, h, w = mask.shape
        if h > 50 or w > 50:
            raise InputError(f"learned position embedding covers at most 50x50 positions, got {h}x{w}")
        x_emb = self.col_embed(torch.arange(w, device=mask.device))
        y_emb = self.row_embed(torch.arange(h, device=mask.device))
        pos = torch.cat([x_emb.unsqueeze(0).expand(h, w, -1), y_emb.unsqueeze(1).expand(h, w, -1)], dim=-1)
        return pos.permute(2, 0, 1).unsqueeze(0).expand(n, -1, -1, -1)


def build_position_encoding(kind: str, hidden_dim: int, offset: float) -> nn.Module:
    """'sine' or 'learned', with hidden_dim // 2 features per axis."""
    if kind == "sine":
        return PositionEmbeddingSine(hidden_dim // 2, offset=offset)
    if kind == "learned":
        return PositionEmbeddingLearned(hidden_dim // 2)
    raise InputError(f"unknown position embedding {kind!r}; choose 'sine' or 'learned'")
