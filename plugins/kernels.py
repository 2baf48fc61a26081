"""MSDA through libdetrt_plugins for CPU and CUDA torch tensors (fp32, fp16).

`forward` takes the five inputs of the op (plugins/msda_kernels/README.md); `forward_fused` takes
reference points, raw offsets and pre-softmax logits and computes the locations and the softmax in the
kernel. The float inputs share value's dtype, except that a float16 value may come with float32
locations, weights, reference points, offsets and logits (mixed precision: the output is float16).
Samples come as (N, Lq, M, L, P, ...) with one point count P for every level, or as (N, Lq, M, T, ...)
with `points_per_level` [P_0, ..., P_{L-1}] summing to T (sample t belongs to level l when
P_0 + ... + P_{l-1} <= t < P_0 + ... + P_l). `method` is "bilinear" (default) or "discrete" (the
nearest pixel, clamped to the map). Shapes that the library cannot see (tensor sizes) are checked here;
the level table is checked by the library, whose error codes become ValueError.
"""
from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .library import Problem, check, load_library

DTYPES = {torch.float32: 0, torch.float16: 1}
FLOAT16_FLOAT32 = 2  # detrt_msda_dtype: float16 value and output, float32 sample tensors
INDEX_DTYPES = {torch.int32: 0, torch.int64: 1}
METHODS = {"bilinear": 0, "discrete": 1}  # detrt_msda_method


@dataclass(frozen=True)
class Samples:
    """How one call lays out its samples: (N, Lq, M) heads of T samples on L levels; `counts` is the
    per-level point count list for the library, or None when one count `points` serves every level."""

    n: int
    lq: int
    m: int
    levels: int
    points: int
    total: int
    counts: tuple[int, ...] | None


def forward(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
            attention_weights: Tensor, num_threads: int | None = None, *,
            points_per_level: Sequence[int] | None = None, method: str = "bilinear") -> Tensor:
    """value (N, S, M, D), locations (N, Lq, M, L, P, 2), weights (N, Lq, M, L, P) -> (N, Lq, M*D); or,
    with `points_per_level`, locations (N, Lq, M, T, 2) and weights (N, Lq, M, T), T = sum(points_per_level).

    `method`: "bilinear" or "discrete". `num_threads` (CPU only) defaults to torch.get_num_threads().
    """
    layout = _samples("sampling_locations", sampling_locations, points_per_level, spatial_shapes)
    head = (layout.n, layout.lq, layout.m)
    weights_shape = head + ((layout.levels, layout.points) if sampling_locations.dim() == 6 else (layout.total,))
    _check_shape("attention_weights", attention_weights, weights_shape)
    return _run("forward", value, spatial_shapes, level_start_index, sampling_locations, attention_weights, None,
                layout, _method_code(method), num_threads)


def forward_fused(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, reference_points: Tensor,
                  sampling_offsets: Tensor, attention_logits: Tensor, num_threads: int | None = None, *,
                  points_per_level: Sequence[int] | None = None, method: str = "bilinear") -> Tensor:
    """MSDA with the locations and softmax computed in the kernel -> (N, Lq, M*D).

    reference_points (N, Lq, L, 2 | 4): (x, y) gives loc = ref + offset / (W_l, H_l); (cx, cy, w, h)
    gives loc = ref_xy + offset / P_l * ref_wh * 0.5 (P_l: the sample's level's point count).
    sampling_offsets (N, Lq, M, L, P, 2), or (N, Lq, M, T, 2) with `points_per_level`;
    attention_logits (N, Lq, M, T), softmaxed over the T samples of each head.
    """
    layout = _samples("sampling_offsets", sampling_offsets, points_per_level, spatial_shapes)
    _check_shape("attention_logits", attention_logits, (layout.n, layout.lq, layout.m, layout.total))
    _check_rank("reference_points", reference_points, 4)
    if (tuple(reference_points.shape[:3]) != (layout.n, layout.lq, layout.levels)
            or reference_points.shape[3] not in (2, 4)):
        raise ValueError(f"reference_points must be {(layout.n, layout.lq, layout.levels)} + (2,) or (4,), "
                         f"got {tuple(reference_points.shape)}")
    return _run("fused_forward", value, spatial_shapes, level_start_index, sampling_offsets, attention_logits,
                reference_points, layout, _method_code(method), num_threads)


def _method_code(method: str) -> int:
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method]


def _samples(name: str, samples: Tensor, points_per_level: Sequence[int] | None, spatial_shapes: Tensor) -> Samples:
    """The sample layout of `samples` (locations or offsets), checked against `points_per_level`."""
    counts = None if points_per_level is None else _point_counts(points_per_level, spatial_shapes)
    if samples.dim() == 6 and samples.shape[5] == 2:
        n, lq, m, levels, points, _ = samples.shape
        if counts is not None and counts != (points,) * levels:
            raise ValueError(f"points_per_level {list(counts)} does not match {name} {tuple(samples.shape)} "
                             f"({levels} levels of {points} points): give {name} as (N, Lq, M, T, 2) for "
                             "unequal counts")
        return Samples(n, lq, m, levels, points, levels * points, None)
    if samples.dim() == 5 and samples.shape[4] == 2:
        n, lq, m, total, _ = samples.shape
        if counts is None:
            raise ValueError(f"{name} {tuple(samples.shape)} is (N, Lq, M, T, 2): pass "
                             "points_per_level=[P_0, ..., P_{L-1}] (one point count per level, summing to T), "
                             "or give (N, Lq, M, L, P, 2)")
        if sum(counts) != total:
            raise ValueError(f"points_per_level {list(counts)} sums to {sum(counts)} but {name} has T={total} "
                             "samples per head: the counts must add up to T")
        return Samples(n, lq, m, len(counts), 0, total, counts)
    raise ValueError(f"{name} must be (N, Lq, M, L, P, 2), or (N, Lq, M, T, 2) with points_per_level, "
                     f"got shape {tuple(samples.shape)}")


def _point_counts(points_per_level: Sequence[int], spatial_shapes: Tensor) -> tuple[int, ...]:
    """points_per_level as a tuple of L positive ints (L = the rows of spatial_shapes)."""
    try:
        if isinstance(points_per_level, (str, bytes)):
            raise TypeError
        counts = tuple(int(p) for p in points_per_level)
    except (TypeError, ValueError):
        raise ValueError(f"points_per_level must be a list of ints, one per level, got {points_per_level!r}") from None
    if any(p < 1 for p in counts):
        raise ValueError(f"points_per_level {list(counts)} must hold positive point counts")
    levels = spatial_shapes.shape[0] if spatial_shapes.dim() == 2 else None
    if len(counts) != levels:
        raise ValueError(f"points_per_level has {len(counts)} entries but spatial_shapes "
                         f"{tuple(spatial_shapes.shape)} has {levels} levels: give one point count per level")
    return counts


def _run(entry: str, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, samples: Tensor,
         weights: Tensor, reference: Tensor | None, layout: Samples, method: int, num_threads: int | None) -> Tensor:
    """Checks what the library cannot see, then calls detrt_msda_<entry>_<cpu|cuda>."""
    n, lq, m, levels = layout.n, layout.lq, layout.m, layout.levels
    _check_rank("value", value, 4)
    _, s, _, d = value.shape
    if tuple(value.shape) != (n, s, m, d):
        raise ValueError(f"value {tuple(value.shape)} does not match N={n}, M={m} of {tuple(samples.shape)}")
    if value.dtype not in DTYPES:
        raise ValueError(f"value must be float32 or float16, got {value.dtype}")
    if value.device.type not in ("cpu", "cuda"):
        raise ValueError(f"tensors must be on CPU or CUDA, got {value.device}")
    floats = [samples, weights] + ([reference] if reference is not None else [])
    sample_dtypes = {value.dtype} | ({torch.float32} if value.dtype == torch.float16 else set())
    if (any(t.device != value.device for t in floats) or len({t.dtype for t in floats}) != 1
            or floats[0].dtype not in sample_dtypes):
        raise ValueError("the float inputs must be on value's device and share value's dtype (a float16 value may "
                         "take float32 locations, weights and references), got value "
                         f"{value.dtype} and {[(t.dtype, str(t.device)) for t in floats]}")
    dtype = FLOAT16_FLOAT32 if floats[0].dtype != value.dtype else DTYPES[value.dtype]
    shapes, starts = _host_indices(spatial_shapes, level_start_index, levels)
    counts = None if layout.counts is None else torch.tensor(layout.counts, dtype=torch.int32)
    problem = Problem(n, s, m, d, lq, levels, layout.total if counts is not None else layout.points, dtype,
                      INDEX_DTYPES[shapes.dtype], shapes.data_ptr(), starts.data_ptr(),
                      None if counts is None else counts.data_ptr(), method)
    value, samples, weights = value.contiguous(), samples.contiguous(), weights.contiguous()
    output = value.new_empty((n, lq, m * d))
    arguments = [value.data_ptr(), samples.data_ptr(), weights.data_ptr(), output.data_ptr()]
    if reference is not None:
        reference = reference.contiguous()
        arguments[1:1] = [reference.data_ptr(), reference.shape[3]]
    library = load_library()
    if value.device.type == "cuda":
        function = f"detrt_msda_{entry}_cuda"
        with torch.cuda.device(value.device):
            stream = torch.cuda.current_stream(value.device).cuda_stream
            status = getattr(library, function)(ctypes.byref(problem), *arguments, stream)
    else:
        function = f"detrt_msda_{entry}_cpu"
        threads = torch.get_num_threads() if num_threads is None else num_threads
        status = getattr(library, function)(ctypes.byref(problem), *arguments, threads)
    check(library, status, function)
    return output


def _host_indices(spatial_shapes: Tensor, level_start_index: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    """Both index tensors on the host, contiguous, one int dtype, sized for L levels (the library reads L)."""
    if tuple(spatial_shapes.shape) != (levels, 2):
        raise ValueError(f"spatial_shapes must be ({levels}, 2), got {tuple(spatial_shapes.shape)}")
    if tuple(level_start_index.shape) != (levels,):
        raise ValueError(f"level_start_index must be ({levels},), got {tuple(level_start_index.shape)}")
    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor, got {t.dtype}")
    dtype = spatial_shapes.dtype if spatial_shapes.dtype == level_start_index.dtype else torch.int64
    dtype = dtype if dtype in INDEX_DTYPES else torch.int64
    return (spatial_shapes.to("cpu", dtype).contiguous(), level_start_index.to("cpu", dtype).contiguous())


def _check_rank(name: str, tensor: Tensor, rank: int) -> None:
    if tensor.dim() != rank:
        raise ValueError(f"{name} must have {rank} dimensions, got shape {tuple(tensor.shape)}")


def _check_shape(name: str, tensor: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must be {shape}, got {tuple(tensor.shape)}")
