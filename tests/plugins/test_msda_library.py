"""libdetrt_plugins on the CPU against the PyTorch MSDA reference (msda-spec.md), its C ABI error
codes, the Python exceptions and the missing-library error.

Tolerances: fp32 outputs must match the reference computed in float64 from the same fp32 inputs
within rtol 1e-5 plus atol 1e-5 * max|reference|. The library rounds h = y*H - 0.5 and the
bilinear weights once each in fp32 (relative error ~6e-8, under 1e-5 px on these maps) and sums
at most L*P*4 = 160 fp32 terms, so its error is ~1e-7 of the output's scale; 1e-5 leaves room for
that and still fails on any wrong corner, weight or bound (errors of 1e-2 and more). The atol term
is scaled by the output because cancellation makes some outputs near zero, where a purely relative
bound means nothing. fp16 outputs are rounded to half (relative step 2^-11), hence 1e-3.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
import torch

from detrt.detectors.models.msda_op import attention_weights_from_logits, ms_deform_attn, sampling_locations
from detrt.plugins import LibraryNotFoundError, kernels, library
from support.msda_problems import (FP16_TOLERANCE, FP32_TOLERANCE, assert_matches, fused_inputs,
                                   level_tensors, make_problem, reference64)

# (levels, batch, queries, heads, D, points): L 1..5, 1x1 levels, D 16/32/64 and a generic D, batch > 1.
CASES = [
    ([(1, 1)], 1, 7, 1, 16, 1),
    ([(4, 8), (1, 1)], 2, 9, 2, 32, 2),
    ([(8, 4), (2, 2), (1, 1)], 1, 11, 3, 64, 3),
    ([(16, 8), (8, 4), (4, 2), (2, 1)], 2, 13, 8, 32, 4),
    ([(8, 16), (4, 8), (2, 4), (1, 2), (1, 1)], 2, 5, 2, 16, 8),
    ([(5, 7), (3, 3)], 3, 6, 2, 24, 5),
    ([(3, 1), (1, 6)], 1, 4, 1, 8, 6),
]


@pytest.mark.parametrize("levels, batch, queries, heads, dim, points", CASES)
def test_matches_reference(levels: list[tuple[int, int]], batch: int, queries: int, heads: int, dim: int,
                           points: int) -> None:
    value, shapes, starts, locations, weights = make_problem(levels, batch, queries, heads, dim, points)
    output = kernels.forward(value, shapes, starts, locations, weights)
    assert output.shape == (batch, queries, heads * dim) and output.dtype == torch.float32
    assert_matches(output, reference64(value, shapes, locations, weights), FP32_TOLERANCE)


@pytest.mark.parametrize("points", range(1, 9))
def test_every_point_count(points: int) -> None:
    value, shapes, starts, locations, weights = make_problem([(4, 4), (2, 2)], 2, 5, 2, 32, points, seed=points)
    assert_matches(kernels.forward(value, shapes, starts, locations, weights),
                   reference64(value, shapes, locations, weights), FP32_TOLERANCE)


def test_strict_bounds_and_corner_zeroing() -> None:
    """One 4x4 level, one point: h == -1 and h == H contribute nothing, just inside contributes the
    edge row times its bilinear weight, x == 0 reads half of column 0 (column -1 reads 0)."""
    value = torch.arange(16, dtype=torch.float32).view(1, 16, 1, 1).expand(1, 16, 1, 16).contiguous() + 1
    shapes, starts = level_tensors([(4, 4)])
    centre = 0.625  # w = 2: column 2 exactly
    ys = [-0.125, 1.125, -0.125 + 2 ** -12, 0.0]  # h = -1, 4, -1 + 2^-10, -0.5
    locations = torch.tensor([[centre, y] for y in ys]).view(1, 4, 1, 1, 1, 2)
    weights = torch.ones(1, 4, 1, 1, 1)
    output = kernels.forward(value, shapes, starts, locations, weights)[0, :, 0]
    expected = torch.tensor([0.0, 0.0, 2 ** -10 * 3, 0.5 * 3])  # row 0, column 2 holds 3
    torch.testing.assert_close(output, expected, rtol=0, atol=0)
    edge = torch.tensor([[0.0, 0.625]]).view(1, 1, 1, 1, 1, 2)  # w = -0.5, h = 2
    torch.testing.assert_close(kernels.forward(value, shapes, starts, edge, weights[:, :1])[0, 0, 0],
                               torch.tensor(0.5 * 9), rtol=0, atol=0)


def test_half_precision() -> None:
    value, shapes, starts, locations, weights = make_problem([(8, 8), (4, 4), (2, 2)], 2, 9, 4, 32, 4)
    value, locations, weights = value.half(), locations.half(), weights.half()
    output = kernels.forward(value, shapes, starts, locations, weights)
    assert output.dtype == torch.float16
    assert_matches(output, reference64(value, shapes, locations, weights), FP16_TOLERANCE)


def test_float16_value_with_float32_samples() -> None:
    """Mixed precision: a float16 value with float32 locations and weights reads the locations unrounded.
    On a 1,000-px level float16 locations are off by up to 0.25 px, which the all-float16 call shows as
    an error far beyond the fp16 output tolerance; the mixed call stays within it."""
    value, shapes, starts, locations, weights = make_problem([(2, 1000), (2, 500)], 1, 64, 2, 32, 4)
    value = value.half()
    output = kernels.forward(value, shapes, starts, locations, weights)
    assert output.dtype == torch.float16
    expected = reference64(value, shapes, locations, weights)
    assert_matches(output, expected, FP16_TOLERANCE)
    rounded = kernels.forward(value, shapes, starts, locations.half(), weights.half())
    assert (rounded.double() - expected).abs().max() > 10 * FP16_TOLERANCE * expected.abs().max()


def test_fused_float16_value_with_float32_samples() -> None:
    value, shapes, starts, reference, offsets, logits = fused_inputs([(8, 8), (4, 4)], 4)
    output = kernels.forward_fused(value.half(), shapes, starts, reference, offsets, logits)
    assert output.dtype == torch.float16
    locations = sampling_locations(reference, offsets, shapes)
    weights = attention_weights_from_logits(logits, *offsets.shape[3:5])
    assert_matches(output, reference64(value.half(), shapes, locations, weights), FP16_TOLERANCE)


# DETRT_MSDA_CPU_ISA caps the instruction-set variant of the CPU kernel (read on every call); a cap
# above what the CPU runs falls back to the widest it does, so every name is safe on any machine.
CPU_ISAS = ["avx512", "avx2", "baseline"]


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_every_cpu_variant_matches_reference(isa: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each vector width (16, 8, 4 lanes) on every case, fp32, fp16 and fused."""
    monkeypatch.setenv("DETRT_MSDA_CPU_ISA", isa)
    for levels, batch, queries, heads, dim, points in CASES:
        value, shapes, starts, locations, weights = make_problem(levels, batch, queries, heads, dim, points)
        assert_matches(kernels.forward(value, shapes, starts, locations, weights),
                       reference64(value, shapes, locations, weights), FP32_TOLERANCE)
        half = value.half(), locations.half(), weights.half()
        assert_matches(kernels.forward(half[0], shapes, starts, half[1], half[2]),
                       reference64(half[0], shapes, half[1], half[2]), FP16_TOLERANCE)
    value, shapes, starts, reference, offsets, logits = fused_inputs([(8, 8), (4, 6), (1, 1)], 4)
    locations = sampling_locations(reference, offsets, shapes)
    weights = attention_weights_from_logits(logits, 3, offsets.shape[4])
    assert_matches(kernels.forward_fused(value, shapes, starts, reference, offsets, logits),
                   reference64(value, shapes, locations, weights), FP32_TOLERANCE)


def test_int32_indices_and_non_contiguous_inputs() -> None:
    value, shapes, starts, locations, weights = make_problem([(4, 8), (2, 4)], 2, 6, 2, 16, 2)
    shapes32, starts32 = level_tensors([(4, 8), (2, 4)], torch.int32)
    strided = locations.transpose(0, 1).contiguous().transpose(0, 1)
    assert not strided.is_contiguous()
    assert_matches(kernels.forward(value, shapes32, starts32, strided, weights),
                   reference64(value, shapes, locations, weights), FP32_TOLERANCE)


def test_thread_counts_agree_bitwise() -> None:
    value, shapes, starts, locations, weights = make_problem([(16, 8), (8, 4)], 2, 300, 8, 32, 4)
    one = kernels.forward(value, shapes, starts, locations, weights, num_threads=1)
    assert torch.equal(one, kernels.forward(value, shapes, starts, locations, weights, num_threads=3))


def test_empty_query_set() -> None:
    value, shapes, starts, locations, weights = make_problem([(2, 2)], 2, 0, 2, 16, 2)
    assert kernels.forward(value, shapes, starts, locations, weights).shape == (2, 0, 32)


@pytest.mark.parametrize("reference_dim", [2, 4])
def test_fused_matches_module_then_reference(reference_dim: int) -> None:
    levels = [(8, 8), (4, 6), (1, 1)]
    value, shapes, starts, reference, offsets, logits = fused_inputs(levels, reference_dim)
    output = kernels.forward_fused(value, shapes, starts, reference, offsets, logits)
    locations = sampling_locations(reference, offsets, shapes)
    weights = attention_weights_from_logits(logits, len(levels), offsets.shape[4])
    assert_matches(output, reference64(value, shapes, locations, weights), FP32_TOLERANCE)


def test_fused_half_precision() -> None:
    value, shapes, starts, reference, offsets, logits = fused_inputs([(8, 8), (4, 4)], 4)
    value, reference, offsets, logits = value.half(), reference.half(), offsets.half(), logits.half()
    output = kernels.forward_fused(value, shapes, starts, reference, offsets, logits)
    locations = sampling_locations(reference.float(), offsets.float(), shapes)
    weights = attention_weights_from_logits(logits.float(), *offsets.shape[3:5])
    assert_matches(output, reference64(value, shapes, locations, weights), FP16_TOLERANCE)


def test_custom_op_detrt_equals_reference() -> None:
    value, shapes, starts, locations, weights = make_problem([(16, 8), (8, 4), (4, 2), (2, 1)], 2, 12, 8, 32, 4)
    ours = ms_deform_attn(value, shapes, starts, locations, weights, impl="detrt")
    theirs = ms_deform_attn(value, shapes, starts, locations, weights, impl="reference")
    assert_matches(ours, theirs.double(), FP32_TOLERANCE)


# --- the C ABI's status codes, called through ctypes ---------------------------------------------

STATUS = {"success": 0, "null": 1, "dimension": 2, "shapes": 3, "mismatch": 4, "start": 5, "dtype": 6,
          "index_dtype": 7, "reference_dim": 8, "cuda_unavailable": 9}


def call_cpu(shapes: list[int], starts: list[int], total: int, *, levels: int | None = None, dtype: int = 0,
             index_dtype: int = 1, heads: int = 1, batch: int = 1, null_value: bool = False,
             reference_dim: int | None = None, entry: str = "cpu") -> int:
    """Runs one tiny problem (Lq 2, M heads, D 4, P 1) through the C ABI; returns the status."""
    lib = library.load_library()
    levels = len(starts) if levels is None else levels
    index = torch.tensor(shapes, dtype=torch.int64 if index_dtype == 1 else torch.int32)
    start = torch.tensor(starts, dtype=index.dtype)
    problem = library.Problem(batch, total, heads, 4, 2, levels, 1, dtype, index_dtype,
                              index.data_ptr(), start.data_ptr())
    value = torch.zeros(max(batch, 1) * max(total, 1) * max(heads, 1) * 4)
    samples = torch.full((max(batch, 1) * 2 * max(heads, 1) * max(levels, 1) * 4,), 0.5)
    output = torch.empty(max(batch, 1) * 2 * max(heads, 1) * 4)
    value_pointer = None if null_value else value.data_ptr()
    last = 1 if entry == "cpu" else None
    if reference_dim is None:
        function = getattr(lib, f"detrt_msda_forward_{entry}")
        return function(ctypes.byref(problem), value_pointer, samples.data_ptr(), samples.data_ptr(),
                        output.data_ptr(), last)
    function = getattr(lib, f"detrt_msda_fused_forward_{entry}")
    return function(ctypes.byref(problem), value_pointer, samples.data_ptr(), reference_dim, samples.data_ptr(),
                    samples.data_ptr(), output.data_ptr(), last)


@pytest.mark.parametrize("arguments, status", [
    (dict(shapes=[2, 3, 1, 1], starts=[0, 6], total=7), "success"),
    (dict(shapes=[2, 3, 1, 1], starts=[0, 6], total=7, index_dtype=0), "success"),
    (dict(shapes=[2, 3, 1, 1], starts=[0, 6], total=7, reference_dim=2), "success"),
    (dict(shapes=[2, 3, 1, 1], starts=[0, 6], total=7, reference_dim=4), "success"),
    (dict(shapes=[2, 3], starts=[0], total=6, batch=0), "success"),
    (dict(shapes=[2, 3, 1, 1], starts=[0, 6], total=7, null_value=True), "null"),
    (dict(shapes=[2, 3, 1, 1], starts=[0, 6], total=8), "mismatch"),
    (dict(shapes=[2, 3, 1, 1], starts=[0, 6], total=6), "mismatch"),
    (dict(shapes=[2, 3, 1, 1], starts=[0, 5], total=7), "start"),
    (dict(shapes=[2, 3, 1, 1], starts=[1, 7], total=7), "start"),
    (dict(shapes=[2, 0, 1, 1], starts=[0, 0], total=1), "shapes"),
    (dict(shapes=[-2, -3, 1, 1], starts=[0, 6], total=7), "shapes"),
    (dict(shapes=[2, 3], starts=[0], total=6, levels=0), "dimension"),
    (dict(shapes=[2, 3] * 17, starts=[6 * i for i in range(17)], total=102), "dimension"),
    (dict(shapes=[2, 3], starts=[0], total=6, heads=0), "dimension"),
    (dict(shapes=[2, 3], starts=[0], total=6, batch=-1), "dimension"),
    (dict(shapes=[2, 3], starts=[0], total=6, dtype=7), "dtype"),
    (dict(shapes=[2, 3], starts=[0], total=6, index_dtype=2), "index_dtype"),
    (dict(shapes=[2, 3], starts=[0], total=6, reference_dim=3), "reference_dim"),
    (dict(shapes=[2, 3], starts=[0], total=6, reference_dim=0), "reference_dim"),
])
def test_c_abi_status_codes(arguments: dict, status: str) -> None:
    assert call_cpu(**arguments) == STATUS[status]


@pytest.mark.parametrize("arguments, status", [
    (dict(shapes=[2, 3, 1, 1], starts=[0, 5], total=7), "start"),
    (dict(shapes=[2, 3, 1, 1], starts=[0, 6], total=9), "mismatch"),
    (dict(shapes=[2, 3], starts=[0], total=6, reference_dim=5), "reference_dim"),
])
def test_cuda_entries_validate_on_the_host(arguments: dict, status: str) -> None:
    """The CUDA entries check the (host) level table before touching a device, with or without CUDA."""
    assert call_cpu(**arguments, entry="cuda") == STATUS[status]


def test_null_problem_and_index_pointers() -> None:
    lib = library.load_library()
    assert lib.detrt_msda_forward_cpu(None, None, None, None, None, 1) == STATUS["null"]
    problem = library.Problem(1, 6, 1, 4, 2, 1, 1, 0, 1, None, None)
    assert lib.detrt_msda_forward_cpu(ctypes.byref(problem), None, None, None, None, 1) == STATUS["null"]


def test_error_strings_and_version() -> None:
    lib = library.load_library()
    messages = [lib.detrt_msda_error_string(code).decode() for code in range(15)]
    assert len(set(messages)) == 15 and all(messages)
    assert lib.detrt_msda_error_string(99).decode() == "unknown status"
    assert lib.detrt_msda_version() == library.ABI_VERSION == 300


# --- Python exceptions ----------------------------------------------------------------------------

def test_invalid_level_table_raises_value_error() -> None:
    value, shapes, starts, locations, weights = make_problem([(4, 4), (2, 2)], 1, 3, 2, 16, 2)
    with pytest.raises(ValueError, match="prefix sum"):
        kernels.forward(value, shapes, starts + 1, locations, weights)
    with pytest.raises(ValueError, match="do not cover S"):
        kernels.forward(value, shapes * 2, starts, locations, weights)
    with pytest.raises(ValueError, match="positive"):
        kernels.forward(value, torch.tensor([[0, 4], [2, 2]]), starts, locations, weights)


def test_inconsistent_tensors_raise_value_error() -> None:
    value, shapes, starts, locations, weights = make_problem([(4, 4), (2, 2)], 1, 3, 2, 16, 2)
    with pytest.raises(ValueError, match="attention_weights"):
        kernels.forward(value, shapes, starts, locations, weights[..., :1])
    with pytest.raises(ValueError, match="spatial_shapes"):
        kernels.forward(value, shapes[:1], starts, locations, weights)
    with pytest.raises(ValueError, match="dtype"):
        kernels.forward(value, shapes, starts, locations.half(), weights)
    with pytest.raises(ValueError, match="share value's dtype"):  # samples of two types
        kernels.forward(value.half(), shapes, starts, locations, weights.half())
    with pytest.raises(ValueError, match="float32 or float16"):
        kernels.forward(value.double(), shapes, starts, locations.double(), weights.double())
    with pytest.raises(ValueError, match="value"):
        kernels.forward(value[:, :, :1], shapes, starts, locations, weights)
    _, _, _, reference, offsets, logits = fused_inputs([(4, 4), (2, 2)], 2)
    with pytest.raises(ValueError, match="reference_points"):
        kernels.forward_fused(value, shapes, starts, reference[..., :1], offsets[:, :, :2], logits[:, :, :2])


# --- a missing library ----------------------------------------------------------------------------

def test_missing_library_named_by_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    absent = tmp_path / "libdetrt_plugins.so"
    monkeypatch.setenv(library.ENV_VAR, str(absent))
    value, shapes, starts, locations, weights = make_problem([(2, 2)], 1, 2, 1, 16, 1)
    with pytest.raises(LibraryNotFoundError, match=str(absent)):
        kernels.forward(value, shapes, starts, locations, weights)
    with pytest.raises(LibraryNotFoundError):  # through the custom op too: never a silent fallback
        ms_deform_attn(value, shapes, starts, locations, weights, impl="detrt")
    assert issubclass(LibraryNotFoundError, ImportError)


def test_foreign_library_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = Path(torch.__file__).parent / "lib" / "libc10.so"
    monkeypatch.setenv(library.ENV_VAR, str(foreign))
    with pytest.raises(LibraryNotFoundError, match="is not libdetrt_plugins"):
        library.load_library()


def test_missing_library_lists_every_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tried = [tmp_path / "a" / "libdetrt_plugins.so", tmp_path / "b" / "libdetrt_plugins.so"]
    monkeypatch.delenv(library.ENV_VAR, raising=False)
    monkeypatch.setattr(library, "candidate_paths", lambda: tried)
    library._load.cache_clear()
    try:
        with pytest.raises(LibraryNotFoundError) as error:
            library.load_library()
    finally:
        library._load.cache_clear()
    message = str(error.value)
    assert all(str(path) in message for path in tried) and library.BUILD_COMMAND in message
