"""The MSDA custom op: the reference follows msda-spec.md sample by sample, and bad inputs are refused."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from detrt.detectors import ms_deform_attn


def spec_loop(value: np.ndarray, shapes: list[tuple[int, int]], locations: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """msda-spec.md, steps 1-6, written as plain loops in float64."""
    n, _, m, d = value.shape
    _, lq, _, levels, points, _ = locations.shape
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    out = np.zeros((n, lq, m * d))
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                for level, (height, width) in enumerate(shapes):
                    for p in range(points):
                        x, y = locations[b, q, head, level, p]
                        h, w = y * height - 0.5, x * width - 0.5
                        if not (-1 < h < height and -1 < w < width):
                            continue
                        h0, w0 = math.floor(h), math.floor(w)
                        lh, lw = h - h0, w - w0
                        sample = np.zeros(d)
                        for dh, dw, weight in ((0, 0, (1 - lh) * (1 - lw)), (0, 1, (1 - lh) * lw),
                                               (1, 0, lh * (1 - lw)), (1, 1, lh * lw)):
                            row, col = h0 + dh, w0 + dw
                            if 0 <= row < height and 0 <= col < width:
                                sample += weight * value[b, starts[level] + row * width + col, head]
                        out[b, q, head * d : (head + 1) * d] += weights[b, q, head, level, p] * sample
    return out


def test_reference_matches_the_spec_including_borders() -> None:
    generator = torch.Generator().manual_seed(0)
    shapes = [(5, 7), (3, 2), (1, 1)]
    n, m, d, points, lq = 2, 2, 4, 3, 6
    s = sum(h * w for h, w in shapes)
    value = torch.randn(n, s, m, d, dtype=torch.float64, generator=generator)
    locations = torch.rand(n, lq, m, len(shapes), points, 2, dtype=torch.float64, generator=generator) * 1.4 - 0.2
    # exact borders: x = 0 and 1, and the values where h or w lands exactly on -1 and on H / W
    locations[0, 0, 0, 0, 0] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    locations[0, 0, 0, 0, 1] = torch.tensor([-0.5 / 7, (5 + 0.5) / 5], dtype=torch.float64)
    locations[0, 1, 1, 1, 2] = torch.tensor([(2 + 0.5) / 2, -0.5 / 3], dtype=torch.float64)
    locations[1, 2, 0, 2, 0] = torch.tensor([0.5, 0.5], dtype=torch.float64)  # the centre of a 1x1 level
    weights = torch.rand(n, lq, m, len(shapes), points, dtype=torch.float64, generator=generator)
    spatial_shapes = torch.tensor(shapes)
    level_start_index = torch.tensor([0, 35, 41])
    got = ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights)
    expected = spec_loop(value.numpy(), shapes, locations.numpy(), weights.numpy())
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)  # float64: rounding only


def test_gradients_flow_to_value_locations_and_weights() -> None:
    shapes = torch.tensor([[4, 4], [2, 2]])
    value = torch.randn(1, 20, 2, 4, dtype=torch.float64, requires_grad=True)
    locations = torch.rand(1, 3, 2, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(1, 3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, l, w: ms_deform_attn(v, shapes, torch.tensor([0, 16]), l, w),
                                    (value, locations, weights))


@pytest.mark.parametrize("spatial_shapes, level_start_index, message", [
    ([[4, 4], [2, 3]], [0, 16], "cover 22 positions but value has S=20"),
    ([[4, 4], [-2, -2]], [0, 16], "must be positive"),
    ([[4, 4], [2, 2]], [0, 15], "is not the prefix sum"),
    ([[4, 4, 1]], [0], r"must be \(L, 2\)"),
])
def test_inconsistent_shapes_are_refused(spatial_shapes: list, level_start_index: list, message: str) -> None:
    levels = len(spatial_shapes)
    value = torch.randn(1, 20, 2, 4)
    locations = torch.rand(1, 3, 2, levels, 2, 2)
    weights = torch.rand(1, 3, 2, levels, 2)
    with pytest.raises(ValueError, match=message):
        ms_deform_attn(value, torch.tensor(spatial_shapes), torch.tensor(level_start_index), locations, weights)


def test_unknown_implementation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown MSDA implementation 'cuda'"):
        ms_deform_attn(torch.randn(1, 4, 1, 2), torch.tensor([[2, 2]]), torch.tensor([0]),
                       torch.rand(1, 1, 1, 1, 1, 2), torch.rand(1, 1, 1, 1, 1), impl="cuda")


@pytest.mark.parametrize("impl", ["reference", "detrt"])
@pytest.mark.parametrize("reference_dim", [2, 4])
def test_fused_module_equals_unfused(impl, reference_dim):
    """The fused op (locations and softmax inside) matches the module's own arithmetic within fp32 rounding."""
    from detrt.detectors.models.ms_deform_attn import MSDeformAttn

    torch.manual_seed(0)
    module = MSDeformAttn(d_model=32, n_levels=2, n_heads=2, n_points=3, impl=impl).eval()
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.3)
    shapes = torch.tensor([[6, 5], [3, 3]])
    starts = torch.tensor([0, 30])
    query, memory = torch.randn(2, 7, 32), torch.randn(2, 39, 32)
    references = torch.rand(2, 7, 2, reference_dim)
    with torch.no_grad():
        unfused = module(query, references, memory, shapes, starts)
        module.fused = True
        fused = module(query, references, memory, shapes, starts)
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)


SHAPES_3 = [(5, 7), (3, 2), (1, 1)]


def v2_inputs(points: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """value, locations (N, Lq, M, T, 2) reaching past the borders, with a NaN and exact half-cells, weights."""
    generator = torch.Generator().manual_seed(seed)
    n, m, d, lq, total = 2, 2, 4, 6, sum(points)
    value = torch.randn(n, sum(h * w for h, w in SHAPES_3), m, d, generator=generator)
    locations = torch.rand(n, lq, m, total, 2, generator=generator) * 1.4 - 0.2
    locations[0, 0, 0, 0] = torch.tensor([float("nan"), 0.5])
    locations[0, 1, 1, 1] = torch.tensor([1.5 / 7, 2.5 / 5])  # x * W + 0.5 lands on a whole number
    return value, locations, torch.rand(n, lq, m, total, generator=generator)


@pytest.mark.parametrize("method", ["bilinear", "discrete"])
@pytest.mark.parametrize("points", [[3, 6, 2], [4, 4, 4]])
def test_reference_is_transformers_v2_function_bit_for_bit(points: list[int], method: str) -> None:
    """Our reference (the portable graph's ops) against transformers' `multi_scale_deformable_attention_v2`
    (RT-DETRv2, D-FINE, DEIMv2): the same fp32 ops in the same order and memory layout, so no tolerance."""
    from transformers.models.rt_detr_v2.modeling_rt_detr_v2 import multi_scale_deformable_attention_v2

    value, locations, weights = v2_inputs(points)
    expected = multi_scale_deformable_attention_v2(value, SHAPES_3, locations, weights, points,
                                                   "default" if method == "bilinear" else "discrete")
    got = ms_deform_attn(value, torch.tensor(SHAPES_3), torch.tensor([0, 35, 41]), locations, weights,
                         points_per_level=points, method=method)
    np.testing.assert_array_equal(got.numpy(), expected.numpy())  # NaN where transformers has NaN (bilinear)
    assert method == "bilinear" or not got.isnan().any()  # discrete: a NaN coordinate reads index 0


def test_discrete_reads_the_clamped_cell_of_the_contract() -> None:
    """One sample per level: x = 0.5/W - tiny stays in cell 0, 1.2 clamps to the last cell, NaN reads 0."""
    value = torch.arange(8.0).view(1, 8, 1, 1)  # levels 2x3 (values 0..5) and 1x2 (6, 7)
    shapes, starts = torch.tensor([[2, 3], [1, 2]]), torch.tensor([0, 6])
    locations = torch.tensor([[0.49 / 3, 0.99], [1.2, float("nan")]]).view(1, 1, 1, 2, 2)
    output = ms_deform_attn(value, shapes, starts, locations, torch.ones(1, 1, 1, 2), points_per_level=[1, 1],
                            method="discrete")
    assert output.item() == (1 * 3 + 0) + (6 + 1)  # level 0: row 1, column 0; level 1: row 0, column 1


def test_uniform_points_list_equals_the_rank6_layout() -> None:
    """(N, Lq, M, T, 2) with [P] * L is the memory of (N, Lq, M, L, P, 2): plain and fused, both methods,
    with 2-d and 4-d reference points (offset / P_l per sample)."""
    from detrt.detectors.models.msda_op import ms_deform_attn_fused

    generator = torch.Generator().manual_seed(2)
    shapes, starts = torch.tensor([[6, 5], [3, 3]]), torch.tensor([0, 30])
    value = torch.randn(2, 39, 2, 4, generator=generator)
    offsets = torch.randn(2, 7, 2, 2, 3, 2, generator=generator)
    logits = torch.randn(2, 7, 2, 6, generator=generator)
    for method in ("bilinear", "discrete"):
        for references in (torch.rand(2, 7, 2, 2, generator=generator), torch.rand(2, 7, 2, 4, generator=generator)):
            rank6 = ms_deform_attn_fused(value, shapes, starts, references, offsets, logits, impl="reference",
                                         method=method)
            listed = ms_deform_attn_fused(value, shapes, starts, references, offsets.flatten(3, 4), logits,
                                          impl="reference", points_per_level=[3, 3], method=method)
            torch.testing.assert_close(listed, rank6, rtol=0, atol=0)


@pytest.mark.parametrize("points, locations_shape, message", [
    ([3, 6], (1, 3, 2, 9, 2), r"points_per_level must be 3 positive counts"),
    ([3, 0, 6], (1, 3, 2, 9, 2), r"points_per_level must be 3 positive counts"),
    ([3, 3, 4], (1, 3, 2, 9, 2), r"T = sum\(\[3, 3, 4\]\) = 10"),
    (None, (1, 3, 2, 9, 2), r"\(N, Lq, M, T, 2\) with points_per_level"),
    ([2, 3, 4], (1, 3, 2, 3, 3, 2), r"3 points on every level, but points_per_level is \[2, 3, 4\]"),
])
def test_points_per_level_that_do_not_fit_are_refused(points, locations_shape, message) -> None:
    value = torch.randn(1, 42, 2, 4)
    locations = torch.rand(locations_shape)
    with pytest.raises(ValueError, match=message):
        ms_deform_attn(value, torch.tensor(SHAPES_3), torch.tensor([0, 35, 41]), locations,
                       torch.rand(locations_shape[:-1]), points_per_level=points)
    with pytest.raises(ValueError, match="unknown MSDA sampling method 'nearest'"):
        ms_deform_attn(value, torch.tensor(SHAPES_3), torch.tensor([0, 35, 41]), locations,
                       torch.rand(locations_shape[:-1]), points_per_level=points, method="nearest")


def test_gradients_with_points_per_level_and_discrete() -> None:
    """Training through the op: bilinear gradients are the reference's (gradcheck); discrete sampling
    gives the locations no gradient (it reads whole cells) and the values and weights theirs."""
    shapes, starts = torch.tensor([[4, 4], [2, 2]]), torch.tensor([0, 16])
    value = torch.randn(1, 20, 2, 4, dtype=torch.float64, requires_grad=True)
    locations = torch.rand(1, 3, 2, 5, 2, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(1, 3, 2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, l, w: ms_deform_attn(v, shapes, starts, l, w, points_per_level=[2, 3]), (value, locations, weights))
    ms_deform_attn(value, shapes, starts, locations, weights, points_per_level=[2, 3], method="discrete").sum().backward()
    assert locations.grad is None and value.grad.any() and weights.grad.any()
