"""Multi-scale deformable attention (MSDA) as one PyTorch custom op, `detrt::ms_deform_attn`.

The contract is `shared/docs/msda-spec.md`, generalised to a point count per level (`points_per_level`:
locations (N, Lq, M, T, 2), T = sum of the counts) and to RT-DETRv2's ``"discrete"`` sampling method
(`method`; ``"bilinear"`` by default). Implementations:
- ``"reference"``: the grid_sample / gather formulation (`msda_reference`; CPU and CUDA);
- ``"detrt"``: the kernels of ``libdetrt_plugins`` (see ``detrt.plugins``).
The choice is explicit; a missing library is an error, never a silent fallback. Export maps the op
to one ONNX node (impl "detrt") or to GridSample / gather ops (impl "reference"). Gradients (for
training) are those of the reference formulation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import InputError
from .msda_reference import (
    METHODS,
    attention_weights_from_logits,
    ms_deform_attn_reference,
    sampling_locations,
)

IMPLEMENTATIONS = ("reference", "detrt")
__all__ = ["IMPLEMENTATIONS", "METHODS", "attention_weights_from_logits", "check_msda_inputs", "ms_deform_attn",
           "ms_deform_attn_fused", "ms_deform_attn_reference", "sampling_locations"]


def _check_samples(name: str, samples: Tensor, n: int, m: int, levels: int,
                   points_per_level: Sequence[int] | None) -> None:
    """Check (N, Lq, M, L, P, 2) or, with `points_per_level`, (N, Lq, M, T, 2) locations."""
    points = [int(p) for p in points_per_level or []]
    if points and (len(points) != levels or min(points) < 1):
        raise InputError(f"points_per_level must be {levels} positive counts (one per level), got {points}")
    if samples.dim() == 6:
        if (samples.shape[0], samples.shape[2], samples.shape[3]) != (n, m, levels):
            raise InputError(f"{name} {tuple(samples.shape)} does not match N={n}, M={m}, L={levels}")
        if points and points != [samples.shape[4]] * levels:
            raise InputError(f"{name} {tuple(samples.shape)} has {samples.shape[4]} points on every level, but "
                             f"points_per_level is {points}: give (N, Lq, M, T, 2) locations")
        return
    if not points:
        raise InputError(f"{name} must be (N, Lq, M, L, P, 2), or (N, Lq, M, T, 2) with points_per_level; "
                         f"got shape {tuple(samples.shape)}")
    if samples.dim() != 5 or (samples.shape[0], samples.shape[2], samples.shape[3]) != (n, m, sum(points)):
        raise InputError(f"{name} must be (N, Lq, M, T, 2) with N={n}, M={m}, T = sum({points}) = {sum(points)}, "
                         f"got shape {tuple(samples.shape)}")


def check_msda_inputs(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                      sampling_locations: Tensor, attention_weights: Tensor,
                      points_per_level: Sequence[int] | None = None, method: str = "bilinear") -> None:
    """Raise InputError naming the problem when the inputs do not fit the MSDA contract."""
    if method not in METHODS:
        raise InputError(f"unknown MSDA sampling method {method!r}; choose one of {METHODS}")
    if value.dim() != 4:
        raise InputError(f"value must be (N, S, M, D), got shape {tuple(value.shape)}")
    n, s, m, _ = value.shape
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise InputError(f"spatial_shapes must be (L, 2), got shape {tuple(spatial_shapes.shape)}")
    levels = spatial_shapes.shape[0]
    if sampling_locations.shape[-1:] != (2,):
        raise InputError(f"sampling_locations must end in (x, y) pairs, got shape {tuple(sampling_locations.shape)}")
    _check_samples("sampling_locations", sampling_locations, n, m, levels, points_per_level)
    expected = tuple(sampling_locations.shape[:-1])
    if tuple(attention_weights.shape) != expected:
        raise InputError(f"attention_weights must be {expected}, got {tuple(attention_weights.shape)}")
    if tuple(level_start_index.shape) != (levels,):
        raise InputError(f"level_start_index must be ({levels},), got {tuple(level_start_index.shape)}")
    shapes = spatial_shapes.tolist()
    if any(h <= 0 or w <= 0 for h, w in shapes):
        raise InputError(f"spatial_shapes must be positive, got {shapes}")
    sizes = [h * w for h, w in shapes]
    if sum(sizes) != s:
        raise InputError(f"spatial_shapes {shapes} cover {sum(sizes)} positions but value has S={s}")
    starts = [sum(sizes[:i]) for i in range(levels)]
    if level_start_index.tolist() != starts:
        raise InputError(f"level_start_index {level_start_index.tolist()} is not the prefix sum {starts} of spatial_shapes")
    if value.dtype != sampling_locations.dtype or value.dtype != attention_weights.dtype:
        raise InputError(f"value, sampling_locations and attention_weights must share a dtype, got "
                         f"{value.dtype}, {sampling_locations.dtype}, {attention_weights.dtype}")


def _check_choices(impl: str, method: str) -> None:
    if impl not in IMPLEMENTATIONS:
        raise InputError(f"unknown MSDA implementation {impl!r}; choose one of {IMPLEMENTATIONS}")
    if method not in METHODS:
        raise InputError(f"unknown MSDA sampling method {method!r}; choose one of {METHODS}")


def _library():  # noqa: ANN202 (a module)
    from detrt.plugins import kernels  # imported on use: the library is optional

    return kernels


# The ops take the point counts as a list, empty for "P of the rank-6 samples on every level".
@torch.library.custom_op("detrt::ms_deform_attn", mutates_args=())
def _ms_deform_attn_op(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                       sampling_locations: Tensor, attention_weights: Tensor, impl: str,
                       points_per_level: list[int], method: str) -> Tensor:
    if impl == "reference":
        return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights,
                                        points_per_level, method)
    _check_choices(impl, method)
    return _library().forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                              points_per_level=points_per_level or None, method=method)


@_ms_deform_attn_op.register_fake
def _(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
      attention_weights: Tensor, impl: str, points_per_level: list[int], method: str) -> Tensor:
    n, _, m, d = value.shape
    return value.new_empty((n, sampling_locations.shape[1], m * d))


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001 (torch.library signature)
    value, spatial_shapes, _, sampling_locations, attention_weights, _, points_per_level, method = inputs
    ctx.save_for_backward(value, spatial_shapes, sampling_locations, attention_weights)
    ctx.points_per_level, ctx.method = points_per_level, method


def _backward(ctx, grad_output: Tensor):  # noqa: ANN001, ANN202
    value, spatial_shapes, sampling_locations, attention_weights = ctx.saved_tensors
    with torch.enable_grad():
        inputs = [t.detach().requires_grad_(True) for t in (value, sampling_locations, attention_weights)]
        output = ms_deform_attn_reference(inputs[0], spatial_shapes, inputs[1], inputs[2], ctx.points_per_level,
                                          ctx.method)
        # discrete sampling reads whole cells: its output does not depend on the locations (zero gradient)
        grads = torch.autograd.grad(output, inputs, grad_output, allow_unused=True, materialize_grads=True)
    return grads[0], None, None, grads[1], grads[2], None, None, None


_ms_deform_attn_op.register_autograd(_backward, setup_context=_setup_context)


def _fused_reference(value: Tensor, spatial_shapes: Tensor, reference_points: Tensor, sampling_offsets: Tensor,
                     attention_logits: Tensor, points_per_level: list[int], method: str) -> Tensor:
    locations = sampling_locations(reference_points, sampling_offsets, spatial_shapes, points_per_level)
    weights = attention_weights_from_logits(attention_logits, spatial_shapes.shape[0]).view(locations.shape[:-1])
    return ms_deform_attn_reference(value, spatial_shapes, locations, weights, points_per_level, method)


@torch.library.custom_op("detrt::ms_deform_attn_fused", mutates_args=())
def _ms_deform_attn_fused_op(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                             reference_points: Tensor, sampling_offsets: Tensor, attention_logits: Tensor,
                             impl: str, points_per_level: list[int], method: str) -> Tensor:
    if impl == "reference":
        return _fused_reference(value, spatial_shapes, reference_points, sampling_offsets, attention_logits,
                                points_per_level, method)
    _check_choices(impl, method)
    return _library().forward_fused(value, spatial_shapes, level_start_index, reference_points, sampling_offsets,
                                    attention_logits, points_per_level=points_per_level or None, method=method)


@_ms_deform_attn_fused_op.register_fake
def _(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, reference_points: Tensor,
      sampling_offsets: Tensor, attention_logits: Tensor, impl: str, points_per_level: list[int],
      method: str) -> Tensor:
    n, _, m, d = value.shape
    return value.new_empty((n, sampling_offsets.shape[1], m * d))


def ms_deform_attn_fused(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, reference_points: Tensor,
                         sampling_offsets: Tensor, attention_logits: Tensor, impl: str = "detrt",
                         points_per_level: Sequence[int] | None = None, method: str = "bilinear") -> Tensor:
    """MSDA from reference points, raw offsets and pre-softmax logits in one op (inference only):
    equals `ms_deform_attn` on `sampling_locations(...)` and `attention_weights_from_logits(...)`.
    Offsets are (N, Lq, M, L, P, 2), or (N, Lq, M, T, 2) with `points_per_level`; logits (N, Lq, M, T).
    With impl "detrt" the library computes locations and softmax in the kernel, and export emits one
    fused plugin node."""
    _check_choices(impl, method)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (value, reference_points, sampling_offsets,
                                                                  attention_logits)):
        raise RuntimeError("the fused MSDA op has no gradient; train with the unfused op (fused=False)")
    return _ms_deform_attn_fused_op(value, spatial_shapes, level_start_index, reference_points, sampling_offsets,
                                    attention_logits, impl, list(points_per_level or []), method)


def ms_deform_attn(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
                   attention_weights: Tensor, impl: str = "reference", validate: bool = True,
                   points_per_level: Sequence[int] | None = None, method: str = "bilinear") -> Tensor:
    """Multi-scale deformable attention: (N, S, M, D) values sampled at (N, Lq, M, L, P, 2), or at
    (N, Lq, M, T, 2) with `points_per_level` (P_l points on level l, T = sum), -> (N, Lq, M*D).
    `method` is "bilinear" or "discrete" (RT-DETRv2's nearest cell, clamped to the map).

    `validate` checks shapes and indices first (it reads `spatial_shapes` on the host); modules that
    built the inputs themselves pass False.
    """
    _check_choices(impl, method)
    if validate:
        check_msda_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                          points_per_level, method)
    points = list(points_per_level or [])
    if impl == "reference" and (torch.jit.is_tracing() or torch.is_grad_enabled() and any(
            t.requires_grad for t in (value, sampling_locations, attention_weights))):
        # training: let autograd record the reference directly instead of recomputing it in backward;
        # ONNX export: the reference traces as GridSample / gather ops (the portable graph), while
        # impl="detrt" traces as the op itself, which detrt.export maps to one plugin node
        return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights, points, method)
    return _ms_deform_attn_op(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, impl,
                              points, method)
