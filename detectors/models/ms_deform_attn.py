"""MSDeformAttn: the attention module of Deformable DETR around the `ms_deform_attn` op."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import InputError
from .msda_op import (
    IMPLEMENTATIONS,
    attention_weights_from_logits,
    ms_deform_attn,
    ms_deform_attn_fused,
    sampling_locations,
)


class MsdaModule(nn.Module):
    """A module whose sampling runs through `ms_deform_attn`: `impl` picks the implementation
    ("reference" or "detrt"; the exporter sets it), `fused` the fused form where `supports_fused`."""

    supports_fused = False
    plugin_problem: str | None = None  # why this module cannot be a plugin node, if it cannot
    method = "bilinear"  # how it samples: "bilinear" or "discrete"
    n_levels: int
    n_points: int

    def __init__(self, impl: str = "reference") -> None:
        super().__init__()
        if impl not in IMPLEMENTATIONS:
            raise InputError(f"unknown MSDA implementation {impl!r}; choose one of {IMPLEMENTATIONS}")
        self.impl = impl
        self.fused = False

    @property
    def points_per_level(self) -> list[int]:
        """How many points each head samples on each level."""
        return [self.n_points] * self.n_levels


class MSDeformAttn(MsdaModule):
    """Each query samples `n_points` positions per head and level around its reference point.

    `impl` selects the op implementation ("reference" or "detrt"); see `detrt.detectors.models.msda_op`.
    `fused` (inference only) computes locations and softmax inside one op, `ms_deform_attn_fused`.
    """

    supports_fused = True

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 impl: str = "reference") -> None:
        super().__init__(impl)
        if d_model % n_heads:
            raise InputError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """The reference initialisation: offsets start on a ring of directions, one per head."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, query: Tensor, reference_points: Tensor, input_flatten: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, input_padding_mask: Tensor | None = None) -> Tensor:
        n, lq, _ = query.shape
        _, s, _ = input_flatten.shape
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, s, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(n, lq, self.n_heads, self.n_levels, self.n_points, 2)
        logits = self.attention_weights(query).view(n, lq, self.n_heads, self.n_levels * self.n_points)
        if self.fused:
            output = ms_deform_attn_fused(value, spatial_shapes, level_start_index, reference_points, offsets, logits,
                                          impl=self.impl)
        else:
            weights = attention_weights_from_logits(logits, self.n_levels, self.n_points)
            locations = sampling_locations(reference_points, offsets, spatial_shapes)
            output = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights, impl=self.impl,
                                    validate=False)
        return self.output_proj(output)
