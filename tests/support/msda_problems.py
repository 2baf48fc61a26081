"""MSDA problems for the kernel tests: level tables, locations with border values, the float64 reference
and the tolerance check (why these tolerances: tests/plugins/test_msda_library.py)."""
from __future__ import annotations

import torch
from torch import Tensor

from detrt.detectors.models.msda_op import ms_deform_attn_reference

FP32_TOLERANCE = 1e-5
FP16_TOLERANCE = 1e-3


def level_tensors(levels: list[tuple[int, int]], dtype: torch.dtype = torch.int64) -> tuple[Tensor, Tensor]:
    shapes = torch.tensor(levels, dtype=dtype)
    sizes = shapes[:, 0] * shapes[:, 1]
    return shapes, torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


def border_coordinates(size: int) -> Tensor:
    """Normalised coordinates that land exactly on the edges for a map of `size` pixels: 0 and 1,
    h == -1 and h == size (the strict bounds), h == 0 and h == size - 1 (last in-bounds rows),
    pixel centres, and values just inside -1 and size."""
    special = [0.0, 1.0, -0.5 / size, (size + 0.5) / size, 0.5 / size, (size - 0.5) / size,
               (-0.5 + 2 ** -10) / size, (size + 0.5 - 2 ** -10) / size, 1.5 / size]
    return torch.tensor(special, dtype=torch.float32)


def make_locations(levels: list[tuple[int, int]], shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """(N, Lq, M, L, P, 2) locations in [-0.25, 1.25]; about half of the coordinates are border values."""
    locations = torch.rand(shape, generator=generator) * 1.5 - 0.25
    for level, (height, width) in enumerate(levels):
        for axis, size in ((0, width), (1, height)):
            target = locations[:, :, :, level, :, axis]
            special = border_coordinates(size)
            picks = special[torch.randint(len(special), target.shape, generator=generator)]
            mask = torch.rand(target.shape, generator=generator) < 0.5
            target[mask] = picks[mask]
    return locations


def discrete_coordinates(size: int) -> Tensor:
    """Coordinates for the discrete method on `size` pixels: (j + 0.5) / size, where x*size + 0.5 lands on
    an integer, the edges and beyond, far outside, +-inf and NaN (which read index 0), and for 19 and 23
    pixels a float on which a fused multiply-add would truncate to the pixel below."""
    traps = {19: 0.0263157878, 23: 0.021739129}  # fl(fl(x*size) + 0.5) = 1 but fl(x*size + 0.5) < 1
    special = [0.0, 1.0, 0.5 / size, -0.5 / size, (size - 0.5) / size, (size + 0.5) / size, (size // 2 + 0.5) / size,
               traps.get(size, 1.5 / size), -1e-7, 1 - 1e-7, -3.0, 4.0, 1e30, -1e30, float("inf"), float("-inf"),
               float("nan")]
    return torch.tensor(special, dtype=torch.float32)


def make_samples(levels: list[tuple[int, int]], counts: list[int], head: tuple[int, int, int], method: str,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(N, Lq, M, T, 2) locations for level l's P_l samples (half of the coordinates special values for
    `method`) and (N, Lq, M, T) weights that sum to 1 per head."""
    specials = discrete_coordinates if method == "discrete" else border_coordinates
    parts = []
    for (height, width), points in zip(levels, counts):
        part = torch.rand(head + (points, 2), generator=generator) * 1.5 - 0.25
        for axis, size in ((0, width), (1, height)):
            special = specials(size)
            picks = special[torch.randint(len(special), part[..., axis].shape, generator=generator)]
            mask = torch.rand(part[..., axis].shape, generator=generator) < 0.5
            part[..., axis][mask] = picks[mask]
        parts.append(part)
    weights = torch.randn(head + (sum(counts),), generator=generator).softmax(-1)
    return torch.cat(parts, 3), weights


def make_problem(levels: list[tuple[int, int]], batch: int, queries: int, heads: int, dim: int, points: int,
                 seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """value, spatial_shapes, level_start_index, sampling_locations, attention_weights (fp32)."""
    generator = torch.Generator().manual_seed(seed)
    shapes, starts = level_tensors(levels)
    total = sum(h * w for h, w in levels)
    value = torch.randn(batch, total, heads, dim, generator=generator)
    locations = make_locations(levels, (batch, queries, heads, len(levels), points, 2), generator)
    logits = torch.randn(batch, queries, heads, len(levels) * points, generator=generator)
    weights = logits.softmax(-1).view(batch, queries, heads, len(levels), points)
    return value, shapes, starts, locations, weights


def reference64(value: Tensor, shapes: Tensor, locations: Tensor, weights: Tensor) -> Tensor:
    return ms_deform_attn_reference(value.double(), shapes, locations.double(), weights.double())


def assert_matches(output: Tensor, expected: Tensor, tolerance: float) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(output.double(), expected, rtol=tolerance, atol=tolerance * max(scale, 1e-30))


def fused_inputs(levels: list[tuple[int, int]], reference_dim: int, seed: int = 0) -> tuple[Tensor, ...]:
    """value, shapes, starts, reference_points (N, Lq, L, 2|4), offsets (pixels-ish), logits."""
    generator = torch.Generator().manual_seed(seed)
    batch, queries, heads, dim, points = 2, 10, 4, 32, 3
    shapes, starts = level_tensors(levels)
    value = torch.randn(batch, sum(h * w for h, w in levels), heads, dim, generator=generator)
    reference = torch.rand(batch, queries, len(levels), reference_dim, generator=generator)
    offsets = 3 * torch.randn(batch, queries, heads, len(levels), points, 2, generator=generator)
    logits = 2 * torch.randn(batch, queries, heads, len(levels) * points, generator=generator)
    return value, shapes, starts, reference, offsets, logits
