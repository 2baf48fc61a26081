"""libdetrt_plugins' CUDA part: built with the default architectures when nvcc was found, and (on a
GPU, tests marked `gpu`) equal to the float64 PyTorch reference for fp32, fp16 and the fused form.

Tolerances as in test_msda_library.py: fp32 within 1e-5 of max|reference| (fp32 coordinates and
accumulation, one rounding each), fp16 within 1e-3 (the output is rounded to half, step 2^-11).
"""
from __future__ import annotations

import ctypes
import shutil

import pytest
import torch
from torch import Tensor

from detrt.detectors.models.msda_op import ms_deform_attn
from detrt.plugins import kernels, library
from detrt.detectors.models.msda_op import attention_weights_from_logits, sampling_locations
from support.msda_problems import FP16_TOLERANCE, FP32_TOLERANCE, assert_matches, fused_inputs, make_problem, reference64

DEFAULT_ARCHITECTURES = "75-real 80-real 86-real 87-real 89-real 90"
CUDA_ERROR = 10
TOLERANCE = {torch.float32: FP32_TOLERANCE, torch.float16: FP16_TOLERANCE}


def cuda_library() -> ctypes.CDLL:
    """The library, or a skip (with the build's reason) when it was built without CUDA."""
    lib = library.load_library()
    if not lib.detrt_msda_has_cuda():
        info = lib.detrt_msda_build_info().decode()
        if shutil.which("nvcc") and "DETRT_ENABLE_CUDA=OFF" not in info:
            pytest.fail(f"nvcc is on PATH but libdetrt_plugins has no CUDA kernels ({info}); reinstall it")
        pytest.skip(f"libdetrt_plugins was {info}")
    return lib


def test_cuda_entry_points_built_for_default_architectures() -> None:
    lib = cuda_library()
    assert all(hasattr(lib, name) for name in ("detrt_msda_forward_cuda", "detrt_msda_fused_forward_cuda"))
    info = lib.detrt_msda_build_info().decode()
    assert info.endswith(DEFAULT_ARCHITECTURES), f"{info} (a custom CMAKE_CUDA_ARCHITECTURES?)"


def test_cuda_entry_without_device_reports_cuda_error() -> None:
    """No device: a valid problem gets DETRT_MSDA_ERROR_CUDA from the launch, not a crash."""
    lib = cuda_library()
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present (the gpu tests cover launches)")
    shapes, starts = torch.tensor([[2, 3]]), torch.tensor([0])
    problem = library.Problem(1, 6, 1, 4, 2, 1, 1, 0, 1, shapes.data_ptr(), starts.data_ptr())
    fake = 256  # never dereferenced on the host; the launch fails before any kernel runs
    assert lib.detrt_msda_forward_cuda(ctypes.byref(problem), fake, fake, fake, fake, None) == CUDA_ERROR


def to_cuda(tensors: tuple[Tensor, ...], dtype: torch.dtype) -> list[Tensor]:
    """Float tensors to `dtype` on the GPU; index tensors stay int64 on the GPU."""
    return [t.cuda() if not t.is_floating_point() else t.to("cuda", dtype) for t in tensors]


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [False, True])
def test_cuda_float16_value_with_float32_samples(fused: bool) -> None:
    """Mixed precision on the GPU: float16 value and output, float32 locations/weights (or references,
    offsets, logits), equal to float64 on the same inputs within the fp16 tolerance."""
    if fused:
        value, shapes, starts, reference, offsets, logits = fused_inputs([(8, 8), (4, 4)], 4)
        output = kernels.forward_fused(value.cuda().half(), shapes, starts, reference.cuda(), offsets.cuda(),
                                       logits.cuda())
        locations = sampling_locations(reference, offsets, shapes)
        weights = attention_weights_from_logits(logits, *offsets.shape[3:5])
    else:
        value, shapes, starts, locations, weights = make_problem([(2, 1000), (2, 500)], 1, 64, 2, 32, 4)
        output = kernels.forward(value.cuda().half(), shapes, starts, locations.cuda(), weights.cuda())
    assert output.dtype == torch.float16 and output.is_cuda
    assert_matches(output.cpu(), reference64(value.half(), shapes, locations, weights), FP16_TOLERANCE)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("dim", [16, 32, 64, 24])
def test_cuda_matches_reference(dim: int, dtype: torch.dtype) -> None:
    levels = [(16, 8), (8, 4), (4, 2), (1, 1)]
    value, shapes, starts, locations, weights = to_cuda(make_problem(levels, 2, 37, 4, dim, 4), dtype)
    output = kernels.forward(value, shapes, starts, locations, weights)
    assert output.dtype == dtype and output.is_cuda
    expected = reference64(value.cpu(), shapes.cpu(), locations.cpu(), weights.cpu())
    assert_matches(output.cpu(), expected, TOLERANCE[dtype])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("reference_dim", [2, 4])
def test_cuda_fused_matches_module_then_reference(reference_dim: int, dtype: torch.dtype) -> None:
    value, shapes, starts, reference, offsets, logits = to_cuda(
        fused_inputs([(8, 8), (4, 6), (1, 1)], reference_dim), dtype)
    output = kernels.forward_fused(value, shapes, starts, reference, offsets, logits)
    locations = sampling_locations(reference.float().cpu(), offsets.float().cpu(), shapes.cpu())
    weights = attention_weights_from_logits(logits.float().cpu(), *offsets.shape[3:5])
    assert_matches(output.cpu(), reference64(value.cpu(), shapes.cpu(), locations, weights), TOLERANCE[dtype])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_unaligned_value_uses_the_scalar_kernel(dtype: torch.dtype) -> None:
    value, shapes, starts, locations, weights = to_cuda(make_problem([(8, 8), (2, 2)], 1, 9, 2, 32, 3), dtype)
    shifted = torch.empty(value.numel() + 1, dtype=dtype, device="cuda")[1:].view(value.shape)
    shifted.copy_(value)
    assert shifted.data_ptr() % 16 != 0
    output = kernels.forward(shifted, shapes, starts, locations, weights)
    expected = reference64(value.cpu(), shapes.cpu(), locations.cpu(), weights.cpu())
    assert_matches(output.cpu(), expected, TOLERANCE[dtype])


@pytest.mark.gpu
@pytest.mark.parametrize(("dtype", "dim", "levels", "points"), [(torch.float16, 16, 3, 5), (torch.float32, 32, 8, 191)])
def test_cuda_blocks_fit_shared_memory_beside_the_level_table(dtype: torch.dtype, dim: int, levels: int,
                                                              points: int) -> None:
    """fp16, D 16, L*P 15 would fill exactly 48 KiB of dynamic shared memory, and 8 x 191 is the most
    samples per head the export allows: the kernel's static level table must fit beside both."""
    inputs = to_cuda(make_problem([(2, 2)] * levels, 1, 7, 2, dim, points), dtype)
    output = kernels.forward(*inputs)
    value, shapes, _, locations, weights = (t.cpu() for t in inputs)
    assert_matches(output.cpu(), reference64(value, shapes, locations, weights), TOLERANCE[dtype])


@pytest.mark.gpu
def test_cuda_equals_cpu_library_on_the_encoder_problem() -> None:
    """The full encoder problem of msda-spec.md: same per-sample math on both devices."""
    levels = [(100, 167), (50, 84), (25, 42), (13, 21)]
    value, shapes, starts, locations, weights = make_problem(levels, 1, 22223, 8, 32, 4)
    cpu = kernels.forward(value, shapes, starts, locations, weights)
    gpu = kernels.forward(*to_cuda((value, shapes, starts, locations, weights), torch.float32))
    assert_matches(gpu.cpu(), cpu.double(), FP32_TOLERANCE)


@pytest.mark.gpu
def test_cuda_many_samples_per_head_and_side_stream() -> None:
    """L = 16, P = 16: 256 samples per head shrink the blocks; runs on a non-default stream."""
    levels = [(4, 4)] * 8 + [(2, 2)] * 7 + [(1, 1)]
    value, shapes, starts, locations, weights = make_problem(levels, 1, 5, 2, 32, 16)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        output = kernels.forward(*to_cuda((value, shapes, starts, locations, weights), torch.float32))
    stream.synchronize()
    assert_matches(output.cpu(), reference64(value, shapes, locations, weights), FP32_TOLERANCE)


@pytest.mark.gpu
def test_cuda_custom_op_detrt_equals_reference() -> None:
    inputs = to_cuda(make_problem([(16, 8), (8, 4), (4, 2), (2, 1)], 2, 12, 8, 32, 4), torch.float32)
    ours = ms_deform_attn(*inputs, impl="detrt")
    theirs = ms_deform_attn(*inputs, impl="reference")
    assert_matches(ours.cpu(), theirs.double().cpu(), FP32_TOLERANCE)
