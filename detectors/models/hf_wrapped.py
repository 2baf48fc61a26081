"""HuggingFace detectors run as they are, their deformable sampling through detrt's MSDA op.

For families detrt does not re-implement (RT-DETR, ...), transformers' module is the model. Every
`MultiScaleDeformableAttention` inside it (transformers' sampling module: value, level table,
locations, weights in; sampled values out) is replaced by `HFSampling`, which calls `ms_deform_attn`,
so an export gets our plugin node or the portable graph like detrt's own models. The rest of the HF
forward, which computes the locations and weights, is unchanged.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import InputError
from .ms_deform_attn import MsdaModule
from .msda_op import ms_deform_attn

HF_SAMPLING_CLASS = "MultiScaleDeformableAttention"


class HFSampling(MsdaModule):
    """Drop-in for transformers' `MultiScaleDeformableAttention` (same forward arguments)."""

    def __init__(self, n_levels: int, n_points: int) -> None:
        super().__init__()
        self.n_levels, self.n_points = n_levels, n_points

    def forward(self, value: Tensor, value_spatial_shapes: Tensor, value_spatial_shapes_list: list[tuple[int, int]],
                level_start_index: Tensor, sampling_locations: Tensor, attention_weights: Tensor,
                im2col_step: int = 64) -> Tensor:
        # The level table from the Python sizes, not transformers' tensors: a traced export then holds it
        # as constants, which the plugin node needs (transformers derives its tensors from feature shapes).
        shapes = torch.tensor(value_spatial_shapes_list, dtype=torch.long, device=value.device).view(-1, 2)
        starts = torch.tensor([0] + [h * w for h, w in value_spatial_shapes_list][:-1], dtype=torch.long,
                              device=value.device).cumsum(0)
        return ms_deform_attn(value, shapes, starts, sampling_locations, attention_weights, impl=self.impl,
                              validate=False)


def replace_hf_sampling(model: nn.Module) -> int:
    """Replace every transformers sampling module in `model` by `HFSampling` (its parent attention
    module gives the level and point counts); returns how many were replaced."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == HF_SAMPLING_CLASS:
                levels, points = getattr(parent, "n_levels", None), getattr(parent, "n_points", None)
                if not isinstance(levels, int) or not isinstance(points, int):
                    raise InputError(f"{type(parent).__name__} samples {points!r} points over {levels!r} levels; "
                                     "detrt's MSDA op takes one point count for every level")
                setattr(parent, name, HFSampling(levels, points))
                count += 1
    return count


class HFDetectorModel(nn.Module):
    """A transformers `*ForObjectDetection` as detrt calls models: (images, mask) -> raw outputs."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf_model = hf_model

    def forward(self, images: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        outputs = self.hf_model(pixel_values=images)
        return {"pred_logits": outputs.logits, "pred_boxes": outputs.pred_boxes}
