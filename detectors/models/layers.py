"""Small building blocks shared by the detectors."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """A stack of Linear layers with ReLU between them (the box head of DETR)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        hidden = [hidden_dim] * (num_layers - 1)
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + hidden, hidden + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """log(x / (1 - x)) with x clamped to [eps, 1 - eps], as in the reference repositories."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def clones(module: nn.Module, count: int) -> nn.ModuleList:
    """`count` independent deep copies of `module`."""
    return nn.ModuleList(copy.deepcopy(module) for _ in range(count))


def with_pos_embed(tensor: Tensor, pos: Tensor | None) -> Tensor:
    """tensor + pos, or tensor when there is no positional embedding."""
    return tensor if pos is None else tensor + pos
