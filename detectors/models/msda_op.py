"""Multi-scale deformable attention (MSDA) as one PyTorch custom op, `detrt::ms_deform_attn`.

The contract is `shared/docs/msda-spec.md`. Implementations:
- ``"reference"``: the grid_sample formulation of the Deformable DETR authors (CPU and CUDA);
- ``"detrt"``: the kernels of ``libdetrt_plugins`` (see ``detrt.plugins``).
The choice is explicit; a missing library is an error, never a silent fallback. Export maps the op
to one ONNX node (impl "detrt") or to GridSample ops (impl "reference"). Gradients (for training) are those of the reference formulation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

IMPLEMENTATIONS = ("reference", "detrt")


def check_msda_inputs(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                      sampling_locations: Tensor, attention_weights: Tensor) -> None:
    """Raise ValueError naming the problem when the five inputs do not fit the MSDA contract."""
    if value.dim() != 4:
        raise InputError(f"value must be (N, S, M, D), got shape {tuple(value.shape)}")
    n, s, m, _ = value.shape
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise InputError(f"spatial_shapes must be (L, 2), got shape {tuple(spatial_shapes.shape)}")
    levels = spatial_shapes.shape[0]
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise InputError(f"sampling_locations must be (N, Lq, M, L, P, 2), got shape {tuple(sampling_locations.shape)}")
    _, lq, _, _, points, _ = sampling_locations.shape
    if tuple(sampling_locations.shape[:4]) != (n, lq, m, levels):
        raise InputError(f"sampling_locations {tuple(sampling_locations.shape)} does not match N={n}, M={m}, L={levels}")
    if tuple(attention_weights.shape) != (n, lq, m, levels, points):
        raise InputError(f"attention_weights must be {(n, lq, m, levels, points)}, got {tuple(attention_weights.shape)}")
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


def ms_deform_attn_reference(value: Tensor, spatial_shapes: Tensor, sampling_locations: Tensor,
                             attention_weights: Tensor) -> Tensor:
    """MSDA through `F.grid_sample`, level by level: returns (N, Lq, M*D)."""
    n, _, m, d = value.shape
    _, lq, _, levels, points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    value_per_level = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        value_l = value_per_level[level].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (N*M, Lq, P, 2)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, levels * points)
    output = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(n, m * d, lq)
    return output.transpose(1, 2).contiguous()


def sampling_locations(reference_points: Tensor, offsets: Tensor, spatial_shapes: Tensor) -> Tensor:
    """Absolute locations (N, Lq, M, L, P, 2) from reference points (N, Lq, L, 2 or 4) and offsets
    (N, Lq, M, L, P, 2): ``ref + offset / (W, H)``, or ``ref_xy + offset / P * ref_wh * 0.5`` for boxes."""
    if reference_points.shape[-1] == 2:
        normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
        return reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
    if reference_points.shape[-1] == 4:
        return (reference_points[:, :, None, :, None, :2]
                + offsets / offsets.shape[4] * reference_points[:, :, None, :, None, 2:] * 0.5)
    raise InputError(f"reference_points must end in 2 or 4 values, got shape {tuple(reference_points.shape)}")


def attention_weights_from_logits(logits: Tensor, levels: int, points: int) -> Tensor:
    """(N, Lq, M, L*P) logits -> (N, Lq, M, L, P) weights, softmaxed over the L*P samples of each head."""
    n, lq, m, _ = logits.shape
    return F.softmax(logits, -1).view(n, lq, m, levels, points)


def _forward(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
             attention_weights: Tensor, impl: str) -> Tensor:
    if impl == "reference":
        return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights)
    if impl == "detrt":
        from detrt.plugins import (
            kernels as library,  # imported on use: the library is optional
        )

        return library.forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    raise InputError(f"unknown MSDA implementation {impl!r}; choose one of {IMPLEMENTATIONS}")


@torch.library.custom_op("detrt::ms_deform_attn", mutates_args=())
def _ms_deform_attn_op(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                       sampling_locations: Tensor, attention_weights: Tensor, impl: str) -> Tensor:
    return _forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, impl)


@_ms_deform_attn_op.register_fake
def _(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
      attention_weights: Tensor, impl: str) -> Tensor:
    n, _, m, d = value.shape
    return value.new_empty((n, sampling_locations.shape[1], m * d))


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001 (torch.library signature)
    value, spatial_shapes, _, sampling_locations, attention_weights, _ = inputs
    ctx.save_for_backward(value, spatial_shapes, sampling_locations, attention_weights)


def _backward(ctx, grad_output: Tensor):  # noqa: ANN001, ANN202
    value, spatial_shapes, sampling_locations, attention_weights = ctx.saved_tensors
    with torch.enable_grad():
        inputs = [t.detach().requires_grad_(True) for t in (value, sampling_locations, attention_weights)]
        output = ms_deform_attn_reference(inputs[0], spatial_shapes, inputs[1], inputs[2])
        grads = torch.autograd.grad(output, inputs, grad_output)
    return grads[0], None, None, grads[1], grads[2], None


_ms_deform_attn_op.register_autograd(_backward, setup_context=_setup_context)


def _fused_reference(value: Tensor, spatial_shapes: Tensor, reference_points: Tensor, sampling_offsets: Tensor,
                     attention_logits: Tensor) -> Tensor:
    _, _, _, levels, points, _ = sampling_offsets.shape
    locations = sampling_locations(reference_points, sampling_offsets, spatial_shapes)
    weights = attention_weights_from_logits(attention_logits, levels, points)
    return ms_deform_attn_reference(value, spatial_shapes, locations, weights)


@torch.library.custom_op("detrt::ms_deform_attn_fused", mutates_args=())
def _ms_deform_attn_fused_op(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
                             reference_points: Tensor, sampling_offsets: Tensor, attention_logits: Tensor,
                             impl: str) -> Tensor:
    if impl == "reference":
        return _fused_reference(value, spatial_shapes, reference_points, sampling_offsets, attention_logits)
    if impl == "detrt":
        from detrt.plugins import (
            kernels as library,  # imported on use: the library is optional
        )

        return library.forward_fused(value, spatial_shapes, level_start_index, reference_points, sampling_offsets,
                                     attention_logits)
    raise InputError(f"unknown MSDA implementation {impl!r}; choose one of {IMPLEMENTATIONS}")


@_ms_deform_attn_fused_op.register_fake
def _(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, reference_points: Tensor,
      sampling_offsets: Tensor, attention_logits: Tensor, impl: str) -> Tensor:
    n, _, m, d = value.shape
    return value.new_empty((n, sampling_offsets.shape[1], m * d))


def ms_deform_attn_fused(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, reference_points: Tensor,
                         sampling_offsets: Tensor, attention_logits: Tensor, impl: str = "detrt") -> Tensor:
    """MSDA from reference points, raw offsets and pre-softmax logits in one op (inference only):
    equals `ms_deform_attn` on `sampling_locations(...)` and `attention_weights_from_logits(...)`.
    With impl "detrt" the library computes locations and softmax in the kernel, and export emits one
    fused plugin node."""
    if impl not in IMPLEMENTATIONS:
        raise InputError(f"unknown MSDA implementation {impl!r}; choose one of {IMPLEMENTATIONS}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in (value, reference_points, sampling_offsets,
                                                                  attention_logits)):
        raise RuntimeError("the fused MSDA op has no gradient; train with the unfused op (fused=False)")
    return _ms_deform_attn_fused_op(value, spatial_shapes, level_start_index, reference_points, sampling_offsets,
                                    attention_logits, impl)


def ms_deform_attn(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
                   attention_weights: Tensor, impl: str = "reference", validate: bool = True) -> Tensor:
    """Multi-scale deformable attention: (N, S, M, D) values sampled at (N, Lq, M, L, P, 2) -> (N, Lq, M*D).

    `validate` checks shapes and indices first (it reads `spatial_shapes` on the host); modules that
    built the inputs themselves pass False.
    """
    if impl not in IMPLEMENTATIONS:
        raise InputError(f"unknown MSDA implementation {impl!r}; choose one of {IMPLEMENTATIONS}")
    if validate:
        check_msda_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    if impl == "reference" and (torch.jit.is_tracing() or torch.is_grad_enabled() and any(
            t.requires_grad for t in (value, sampling_locations, attention_weights))):
        # training: let autograd record the reference directly instead of recomputing it in backward;
        # ONNX export: the reference traces as GridSample ops (the portable graph), while impl="detrt"
        # traces as the op itself, which detrt.export maps to one plugin node
        return ms_deform_attn_reference(value, spatial_shapes, sampling_locations, attention_weights)
    return _ms_deform_attn_op(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, impl)
