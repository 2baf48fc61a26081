"""MSDA through libdetrt_plugins for CPU and CUDA torch tensors (fp32, fp16).

`forward` takes the five inputs of the op (plugins/msda_kernels/README.md); `forward_fused` takes
reference points, raw offsets and pre-softmax logits and computes the locations and the softmax in the
kernel. The float inputs share value's dtype, except that a float16 value may come with float32
locations, weights, reference points, offsets and logits (mixed precision: the output is float16).
Shapes that the library cannot see (tensor sizes) are checked here; the level table is checked
by the library, whose error codes become ValueError.
"""
from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from .library import Problem, check, load_library

DTYPES = {torch.float32: 0, torch.float16: 1}
FLOAT16_FLOAT32 = 2  # detrt_msda_dtype: float16 value and output, float32 sample tensors
INDEX_DTYPES = {torch.int32: 0, torch.int64: 1}


def forward(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
            attention_weights: Tensor, num_threads: int | None = None) -> Tensor:
    """value (N, S, M, D), locations (N, Lq, M, L, P, 2), weights (N, Lq, M, L, P) -> (N, Lq, M*D).

    `num_threads` (CPU only) defaults to torch.get_num_threads().
    """
    _check_rank("sampling_locations", sampling_locations, 6)
    n, lq, m, levels, points, _ = sampling_locations.shape
    _check_shape("sampling_locations", sampling_locations, (n, lq, m, levels, points, 2))
    _check_shape("attention_weights", attention_weights, (n, lq, m, levels, points))
    return _run("forward", value, spatial_shapes, level_start_index, sampling_locations, attention_weights, None,
                num_threads)


def forward_fused(value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, reference_points: Tensor,
                  sampling_offsets: Tensor, attention_logits: Tensor, num_threads: int | None = None) -> Tensor:
    """MSDA with the locations and softmax computed in the kernel -> (N, Lq, M*D).

    reference_points (N, Lq, L, 2 | 4): (x, y) gives loc = ref + offset / (W_l, H_l); (cx, cy, w, h)
    gives loc = ref_xy + offset / P * ref_wh * 0.5. sampling_offsets (N, Lq, M, L, P, 2);
    attention_logits (N, Lq, M, L*P), softmaxed over L*P per head.
    """
    _check_rank("sampling_offsets", sampling_offsets, 6)
    n, lq, m, levels, points, _ = sampling_offsets.shape
    _check_shape("sampling_offsets", sampling_offsets, (n, lq, m, levels, points, 2))
    _check_shape("attention_logits", attention_logits, (n, lq, m, levels * points))
    _check_rank("reference_points", reference_points, 4)
    if tuple(reference_points.shape[:3]) != (n, lq, levels) or reference_points.shape[3] not in (2, 4):
        raise ValueError(f"reference_points must be {(n, lq, levels)} + (2,) or (4,), "
                         f"got {tuple(reference_points.shape)}")
    return _run("fused_forward", value, spatial_shapes, level_start_index, sampling_offsets, attention_logits,
                reference_points, num_threads)


def _run(entry: str, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, samples: Tensor,
         weights: Tensor, reference: Tensor | None, num_threads: int | None) -> Tensor:
    """Checks what the library cannot see, then calls detrt_msda_<entry>_<cpu|cuda>."""
    n, lq, m, levels, points, _ = samples.shape
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
    problem = Problem(n, s, m, d, lq, levels, points, dtype, INDEX_DTYPES[shapes.dtype],
                      shapes.data_ptr(), starts.data_ptr())
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
