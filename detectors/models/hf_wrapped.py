"""HuggingFace detectors run as they are, their deformable sampling through detrt's MSDA op.

For families detrt does not re-implement (RT-DETR, ...), transformers' module is the model. Every
`MultiScaleDeformableAttention` inside it (transformers' sampling module: value, level table,
locations, weights in; sampled values out) is replaced by `HFSampling`, which calls `ms_deform_attn`,
so an export gets our plugin node or the portable graph like detrt's own models. The rest of the HF
forward, which computes the locations and weights, is unchanged.

RT-DETRv2, D-FINE and DEIMv2 sample with a function instead, `multi_scale_deformable_attention_v2`.
D-FINE and DEIMv2 keep it in an attribute of each attention module, which `replace_hf_sampling_v2`
replaces by an `HFSamplingV2`. RT-DETRv2 looks it up in its modeling module: each attention module gets
an `HFSamplingV2`, and a dispatcher takes the function's place there: while one of those attention
modules runs, the dispatcher calls its sampler; at any other time (other models, other code)
transformers' own function.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import InputError
from .ms_deform_attn import MsdaModule
from .msda_op import ms_deform_attn

HF_SAMPLING_CLASS = "MultiScaleDeformableAttention"
HF_SAMPLING_FUNCTION = "multi_scale_deformable_attention_v2"
_running: list["HFSamplingV2"] = []  # the samplers of the v2 attention modules running now, innermost last


def _level_table(shapes_list: list[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """spatial_shapes and level_start_index from the Python sizes, not transformers' tensors: a traced
    export then holds them as constants, which the plugin node needs."""
    shapes = torch.tensor(shapes_list, dtype=torch.long, device=device).view(-1, 2)
    starts = torch.tensor([0] + [h * w for h, w in shapes_list][:-1], dtype=torch.long, device=device).cumsum(0)
    return shapes, starts


class HFSampling(MsdaModule):
    """Drop-in for transformers' `MultiScaleDeformableAttention` (same forward arguments)."""

    def __init__(self, n_levels: int, n_points: int) -> None:
        super().__init__()
        self.n_levels, self.n_points = n_levels, n_points

    def forward(self, value: Tensor, value_spatial_shapes: Tensor, value_spatial_shapes_list: list[tuple[int, int]],
                level_start_index: Tensor, sampling_locations: Tensor, attention_weights: Tensor,
                im2col_step: int = 64) -> Tensor:
        shapes, starts = _level_table(value_spatial_shapes_list, value.device)
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


HF_METHODS = {"default": "bilinear", "discrete": "discrete"}  # transformers' decoder_method -> detrt's method


class HFSamplingV2(MsdaModule):
    """detrt's op for one RT-DETRv2-style attention module: value (N, S, M, D), locations (N, Lq, M, T, 2)
    and weights (N, Lq, M, T) -> (N, Lq, M*D), with the module's points per level (e.g. D-FINE's [3, 6, 3])
    and sampling method ("default" is bilinear, or "discrete"). A method detrt's op does not know
    (`plugin_problem`) runs transformers' own function."""

    def __init__(self, points_per_level: list[int], method: str, original: Callable[..., Tensor]) -> None:
        super().__init__()
        self.n_levels, self._points, self.hf_method = len(points_per_level), list(points_per_level), method
        self.original = original  # transformers' function, for a method detrt's op does not do
        self.method = HF_METHODS.get(method, method)
        self.plugin_problem = None
        if method not in HF_METHODS:
            self.plugin_problem = f"it samples with the {method!r} method, which detrt's MSDA op does not have"

    @property
    def points_per_level(self) -> list[int]:
        return self._points

    def forward(self, value: Tensor, shapes_list: list[tuple[int, int]], sampling_locations: Tensor,
                attention_weights: Tensor, num_points_list: list[int] | None = None, method: str | None = None) -> Tensor:
        if self.plugin_problem is not None:
            return self.original(value, shapes_list, sampling_locations, attention_weights, self._points,
                                 self.hf_method)
        shapes, starts = _level_table(shapes_list, value.device)
        points: list[int] | None = self._points
        if len(set(self._points)) == 1:  # one count for every level: the (N, Lq, M, L, P) layout, no list
            n, queries, heads = sampling_locations.shape[:3]
            shape = (n, queries, heads, self.n_levels, self._points[0])
            sampling_locations = sampling_locations.reshape(*shape, 2)
            attention_weights = attention_weights.reshape(shape)
            points = None
        return ms_deform_attn(value, shapes, starts, sampling_locations, attention_weights, impl=self.impl,
                              validate=False, points_per_level=points, method=self.method)


def _dispatcher(original: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def sample(value: Tensor, value_spatial_shapes: list[tuple[int, int]], sampling_locations: Tensor,
               attention_weights: Tensor, num_points_list: list[int], method: str = "default") -> Tensor:
        if _running:
            return _running[-1](value, value_spatial_shapes, sampling_locations, attention_weights)
        return original(value, value_spatial_shapes, sampling_locations, attention_weights, num_points_list, method)
    sample.detrt_original = original  # type: ignore[attr-defined]
    return sample


def _enter(module: nn.Module, args: tuple) -> None:
    _running.append(module.detrt_sampler)


def _leave(module: nn.Module, args: tuple, output: object) -> None:
    _running.pop()


def replace_hf_sampling_v2(model: nn.Module) -> int:
    """Give every attention module of `model` that samples through transformers' v2 function an
    `HFSamplingV2`: in place of its `ms_deformable_attn_core` attribute (D-FINE, DEIMv2), or through the
    dispatcher (RT-DETRv2, see the module docstring); returns how many."""
    count = 0
    for module in list(model.modules()):
        core = getattr(module, "ms_deformable_attn_core", None)
        if callable(core) and not isinstance(core, nn.Module):
            module.ms_deformable_attn_core = HFSamplingV2(module.num_points_list, module.decoder_method, core)
            count += 1
            continue
        modeling = sys.modules.get(type(module).__module__)
        if not hasattr(module, "n_points_list") or not hasattr(modeling, HF_SAMPLING_FUNCTION):
            continue
        function = getattr(modeling, HF_SAMPLING_FUNCTION)
        if not hasattr(function, "detrt_original"):
            setattr(modeling, HF_SAMPLING_FUNCTION, _dispatcher(function))
        original = getattr(modeling, HF_SAMPLING_FUNCTION).detrt_original
        module.detrt_sampler = HFSamplingV2(module.n_points_list, module.method, original)
        module.register_forward_pre_hook(_enter)
        module.register_forward_hook(_leave, always_call=True)
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
