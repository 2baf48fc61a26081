"""libdetrt_plugins with unequal point counts per level (`points_per_level`) and the discrete method, on
the CPU, against a float64 reference written here from the contract (issue 14): locations
(N, Lq, M, T, 2) split per level by the exclusive prefix sum of the counts; bilinear samples through
torch's grid_sample (zeros padding, align_corners=False); discrete samples gathered at
xi = clamp(int64(fl(fl(x * W) + 0.5)), 0, W - 1) (and yi alike) computed by torch in float32, one
rounding per operation, exactly as the kernels must.

Tolerances: fp32 rtol 1e-5 plus atol 1e-5 * max|reference| (the kernels round coordinates, bilinear
weights and at most T*4 products once each in fp32: ~1e-7 of the output's scale; a wrong level, point
count, corner or pixel errs by 1e-2 and more); fp16 output 1e-3 (rounded to half once, step 2^-11).
The discrete index is exact, so a kernel that rounds differently fails by the value's scale.
"""
from __future__ import annotations

import ctypes

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from detrt.plugins import kernels, library
from support.msda_problems import FP16_TOLERANCE, FP32_TOLERANCE, assert_matches, level_tensors, make_samples

# (levels, points_per_level, N, Lq, M, D): D-FINE's [3, 6, 3], [1, 4], one level, rounding-trap sizes.
CASES = [
    ([(8, 4), (4, 2), (2, 1)], [3, 6, 3], 2, 9, 2, 32),
    ([(5, 7), (3, 3)], [1, 4], 1, 6, 2, 24),
    ([(6, 5)], [5], 1, 8, 3, 16),
    ([(19, 23), (3, 5)], [3, 2], 1, 6, 2, 64),
]


def reference(value: Tensor, levels: list[tuple[int, int]], counts: list[int], locations: Tensor,
              weights: Tensor, method: str) -> Tensor:
    """float64 MSDA of value (N, S, M, D) at locations (N, Lq, M, T, 2) with weights (N, Lq, M, T)."""
    n, _, m, d = value.shape
    lq = locations.shape[1]
    value, weights = value.double(), weights.double()
    output = value.new_zeros(n, lq, m, d)
    start = first = 0
    for (height, width), points in zip(levels, counts):
        level_value = value[:, start:start + height * width]  # (N, H*W, M, D)
        xy = locations[:, :, :, first:first + points].float()  # (N, Lq, M, P, 2), as the kernel reads them
        attention = weights[:, :, :, first:first + points]
        if method == "bilinear":
            image = level_value.permute(0, 2, 3, 1).reshape(n * m, d, height, width)
            grid = (2 * xy.double() - 1).permute(0, 2, 1, 3, 4).reshape(n * m, lq, points, 2)
            sampled = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            sampled = sampled.view(n, m, d, lq, points).permute(0, 3, 1, 4, 2)  # (N, Lq, M, P, D)
        else:
            xi = (xy[..., 0] * width + 0.5).to(torch.int64).clamp(0, width - 1)
            yi = (xy[..., 1] * height + 0.5).to(torch.int64).clamp(0, height - 1)
            batch = torch.arange(n).view(n, 1, 1, 1)
            head = torch.arange(m).view(1, 1, m, 1)
            sampled = level_value[batch, yi * width + xi, head]  # (N, Lq, M, P, D)
        output += (attention.unsqueeze(-1) * sampled).sum(3)
        start += height * width
        first += points
    return output.reshape(n, lq, m * d)


def problem(levels: list[tuple[int, int]], counts: list[int], n: int, lq: int, m: int, d: int, method: str,
            seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes, starts = level_tensors(levels)
    value = torch.randn(n, sum(h * w for h, w in levels), m, d, generator=generator)
    locations, weights = make_samples(levels, counts, (n, lq, m), method, generator)
    return value, shapes, starts, locations, weights


@pytest.mark.parametrize("method", ["bilinear", "discrete"])
@pytest.mark.parametrize("isa", ["avx512", "avx2", "baseline"])
def test_unequal_points_match_reference(method: str, isa: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every case, fp32, fp16 and fp16 value with fp32 samples, on each CPU vector width."""
    monkeypatch.setenv("DETRT_MSDA_CPU_ISA", isa)
    for seed, (levels, counts, n, lq, m, d) in enumerate(CASES):
        value, shapes, starts, locations, weights = problem(levels, counts, n, lq, m, d, method, seed)
        output = kernels.forward(value, shapes, starts, locations, weights, points_per_level=counts, method=method)
        assert output.shape == (n, lq, m * d)
        assert_matches(output, reference(value, levels, counts, locations, weights, method), FP32_TOLERANCE)
        half = kernels.forward(value.half(), shapes, starts, locations.half(), weights.half(),
                               points_per_level=counts, method=method)
        assert half.dtype == torch.float16
        assert_matches(half, reference(value.half(), levels, counts, locations.half(), weights.half(), method),
                       FP16_TOLERANCE)
        mixed = kernels.forward(value.half(), shapes, starts, locations, weights, points_per_level=counts,
                                method=method)
        assert_matches(mixed, reference(value.half(), levels, counts, locations, weights, method), FP16_TOLERANCE)


def test_discrete_pixels_by_hand() -> None:
    """One 3x5 level holding 1..15, one point per query, weight 1: each output is the pixel number read."""
    value = torch.arange(1, 16, dtype=torch.float32).view(1, 15, 1, 1).expand(1, 15, 1, 8).contiguous()
    shapes, starts = level_tensors([(3, 5)])
    nan, inf = float("nan"), float("inf")
    xs = [0.1, 0.3, 0.5, -0.1, 1.5, 0.9, nan, inf, -inf, 1e30, 0.0, 1.0]  # x*5 + 0.5 = 1, 2, 3 exactly
    ys = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, nan, 2.0]     # y*3 + 0.5 = 2: row 2
    columns = [1, 2, 3, 0, 4, 4, 0, 0, 0, 0, 0, 4]
    rows = [2] * 10 + [0, 2]
    locations = torch.tensor([xs, ys]).T.reshape(1, len(xs), 1, 1, 2)
    weights = torch.ones(1, len(xs), 1, 1)
    output = kernels.forward(value, shapes, starts, locations, weights, points_per_level=[1], method="discrete")
    expected = torch.tensor([r * 5 + c + 1 for r, c in zip(rows, columns)], dtype=torch.float32)
    torch.testing.assert_close(output[0, :, 0], expected, rtol=0, atol=0)
    trap = torch.tensor([0.0263157878, 0.5]).view(1, 1, 1, 1, 2)  # on 19 pixels: FMA gives 0, two roundings 1
    tall = torch.arange(19, dtype=torch.float32).view(1, 19, 1, 1)
    got = kernels.forward(tall, *level_tensors([(1, 19)]), trap, torch.ones(1, 1, 1, 1), points_per_level=[1],
                          method="discrete")
    assert got.item() == 1.0


def test_uniform_counts_in_either_layout_agree_bitwise() -> None:
    """(N, Lq, M, L, P, 2) and (N, Lq, M, T, 2) with points_per_level [P] * L are the same memory."""
    levels, counts = [(4, 6), (2, 3)], [3, 3]
    value, shapes, starts, locations, weights = problem(levels, counts, 2, 5, 2, 16, "bilinear")
    six = kernels.forward(value, shapes, starts, locations.view(2, 5, 2, 2, 3, 2), weights.view(2, 5, 2, 2, 3))
    five = kernels.forward(value, shapes, starts, locations, weights, points_per_level=counts)
    assert torch.equal(six, five)
    assert torch.equal(six, kernels.forward(value, shapes, starts, locations.view(2, 5, 2, 2, 3, 2),
                                            weights.view(2, 5, 2, 2, 3), points_per_level=counts))


@pytest.mark.parametrize("reference_dim", [2, 4])
@pytest.mark.parametrize("method", ["bilinear", "discrete"])
def test_fused_unequal_points_match_reference(reference_dim: int, method: str) -> None:
    """Locations ref + offset / (W_l, H_l) or ref_xy + offset / P_l * ref_wh * 0.5 (P_l of the sample's
    level) and the softmax over all T logits, fp32 and fp16 value with fp32 inputs."""
    levels, counts = [(8, 4), (4, 6), (1, 1)], [3, 6, 3]
    generator = torch.Generator().manual_seed(reference_dim)
    shapes, starts = level_tensors(levels)
    value = torch.randn(2, sum(h * w for h, w in levels), 4, 32, generator=generator)
    ref = torch.rand(2, 10, len(levels), reference_dim, generator=generator)
    offsets = 3 * torch.randn(2, 10, 4, sum(counts), 2, generator=generator)
    logits = 2 * torch.randn(2, 10, 4, sum(counts), generator=generator)
    parts, first = [], 0
    for level, ((height, width), points) in enumerate(zip(levels, counts)):
        offset, point = offsets[:, :, :, first:first + points], ref[:, :, None, level, None]
        if reference_dim == 2:
            parts.append(point + offset / torch.tensor([width, height], dtype=torch.float32))
        else:
            parts.append(point[..., :2] + offset / points * point[..., 2:] * 0.5)
        first += points
    locations, weights = torch.cat(parts, 3), logits.double().softmax(-1)
    expected = reference(value, levels, counts, locations, weights, method)
    output = kernels.forward_fused(value, shapes, starts, ref, offsets, logits, points_per_level=counts, method=method)
    assert_matches(output, expected, FP32_TOLERANCE)
    mixed = kernels.forward_fused(value.half(), shapes, starts, ref, offsets, logits, points_per_level=counts,
                                  method=method)
    assert_matches(mixed, reference(value.half(), levels, counts, locations, weights, method), FP16_TOLERANCE)


# --- bad input: one clear error naming the fix --------------------------------------------------------

def test_bad_points_per_level_and_method_raise_value_error() -> None:
    levels, counts = [(4, 4), (2, 2)], [2, 3]
    value, shapes, starts, locations, weights = problem(levels, counts, 1, 3, 2, 16, "bilinear")
    with pytest.raises(ValueError, match=r"pass points_per_level=\[P_0, \.\.\., P_\{L-1\}\]"):
        kernels.forward(value, shapes, starts, locations, weights)
    with pytest.raises(ValueError, match="sums to 6 but sampling_locations has T=5"):
        kernels.forward(value, shapes, starts, locations, weights, points_per_level=[3, 3])
    with pytest.raises(ValueError, match="has 3 entries but spatial_shapes .* has 2 levels"):
        kernels.forward(value, shapes, starts, locations, weights, points_per_level=[1, 2, 2])
    with pytest.raises(ValueError, match="positive point counts"):
        kernels.forward(value, shapes, starts, locations, weights, points_per_level=[0, 5])
    with pytest.raises(ValueError, match="list of ints"):
        kernels.forward(value, shapes, starts, locations, weights, points_per_level="23")
    with pytest.raises(ValueError, match=r"method must be one of \['bilinear', 'discrete'\], got 'nearest'"):
        kernels.forward(value, shapes, starts, locations, weights, points_per_level=counts, method="nearest")
    with pytest.raises(ValueError, match="attention_weights"):
        kernels.forward(value, shapes, starts, locations, weights[..., :4], points_per_level=counts)
    with pytest.raises(ValueError, match=r"does not match sampling_locations .* give sampling_locations as"):
        kernels.forward(value, shapes, starts, locations[:, :, :, :4].reshape(1, 3, 2, 2, 2, 2),
                        weights[..., :4].reshape(1, 3, 2, 2, 2), points_per_level=[1, 3])
    with pytest.raises(ValueError, match="attention_logits"):
        kernels.forward_fused(value, shapes, starts, torch.rand(1, 3, 2, 4), locations, weights[..., :4],
                              points_per_level=counts)


STATUS_INVALID_LEVEL_POINTS, STATUS_INVALID_METHOD = 13, 14


@pytest.mark.parametrize("counts, num_points, method, status", [
    ([2, 3], 0, 0, 0),
    ([2, 3], 5, 1, 0),
    ([2, 3], 4, 0, STATUS_INVALID_LEVEL_POINTS),  # num_points neither 0 nor T
    ([2, 0], 0, 0, STATUS_INVALID_LEVEL_POINTS),
    ([-1, 6], 5, 0, STATUS_INVALID_LEVEL_POINTS),
    ([2, 3], 0, 2, STATUS_INVALID_METHOD),
    ([2, 3], 0, -1, STATUS_INVALID_METHOD),
])
def test_c_abi_level_points_and_method(counts: list[int], num_points: int, method: int, status: int) -> None:
    lib = library.load_library()
    shapes, starts = level_tensors([(2, 3), (1, 1)])
    points = torch.tensor(counts, dtype=torch.int32)
    description = library.Problem(1, 7, 1, 4, 2, 2, num_points, 0, 1, shapes.data_ptr(), starts.data_ptr(),
                               points.data_ptr(), method)
    value, samples, output = torch.zeros(7 * 4), torch.full((2 * 5 * 2,), 0.5), torch.empty(2 * 4)
    assert lib.detrt_msda_forward_cpu(ctypes.byref(description), value.data_ptr(), samples.data_ptr(),
                                      samples.data_ptr(), output.data_ptr(), 1) == status
    if status:  # the CUDA entries validate on the host first, with or without CUDA
        assert lib.detrt_msda_forward_cuda(ctypes.byref(description), value.data_ptr(), samples.data_ptr(),
                                           samples.data_ptr(), output.data_ptr(), None) == status
