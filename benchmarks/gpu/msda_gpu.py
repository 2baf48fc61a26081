"""GPU MSDA speed and accuracy: libdetrt_plugins' CUDA kernels against the PyTorch reference and the
original Deformable-DETR CUDA kernel, on the R50 problems of benchmarks/msda_cpu.py (encoder
Lq = 22,223 and decoder Lq = 300, module-like locations), fp32 and fp16, written as a markdown table.

The original kernel is JIT-compiled (torch.utils.cpp_extension) from a folder holding the sources of
transformers==4.46.3's kernels/deformable_detr (vision.cpp, cpu/, cuda/), as transformers builds it,
with one change so that current PyTorch compiles it: its AT_DISPATCH macros get `value.scalar_type()`
instead of `value.type()` (the implicit conversion is gone from PyTorch's headers).

Kernel times are the GPU time of one call: CUDA graphs of 20 calls each, replayed, medians over
replays, divided by 20 (no Python or launch gaps; detrt gets the level table on the host, where
libdetrt_plugins reads it). The PyTorch reference reads the level table back from the GPU on every call,
which a graph cannot hold: its times are CUDA-event medians of eager calls. "DRAM floor" is the bytes a kernel must move at least (value once, locations, weights, output)
over the bandwidth of a device-to-device copy measured here. Errors are against float64 on the same
(dtype-rounded) inputs: the kernel's own error, not the rounding of fp16 locations.

    python3 benchmarks/gpu/msda_gpu.py --original-kernel DIR --out table.md
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import traceback
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from msda_cpu import LEVELS, make_inputs  # noqa: E402  (the CPU benchmark's problems)

from detrt.detectors.models.msda_op import ms_deform_attn_reference  # noqa: E402
from detrt.plugins import kernels  # noqa: E402

ORIGINAL_SOURCES = ("vision.cpp", "cpu/ms_deform_attn_cpu.cpp", "cuda/ms_deform_attn_cuda.cu")
DISPATCH_OLD, DISPATCH_NEW = 'value.type(), "ms_deform_attn', 'value.scalar_type(), "ms_deform_attn'
TARGETS = "encoder fp32 >= 2x and fp16 >= 4x the original kernel, within 5x of the DRAM floor; decoder <= 10 us (H100)"


def load_original(folder: Path, work: Path | None = None) -> ModuleType:
    """The original kernel, built as transformers 4.46.3 builds it (load_cuda_kernels), in `work`
    (a fresh temporary folder by default; reusing one skips the rebuild)."""
    from torch.utils.cpp_extension import load

    missing = [name for name in ORIGINAL_SOURCES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: pass transformers' kernels/deformable_detr folder")
    work = work or Path(tempfile.mkdtemp(prefix="msda_original_"))
    sources, build = work / "src", work / "build"
    build.mkdir(parents=True, exist_ok=True)
    cuda_source = sources / "cuda" / "ms_deform_attn_cuda.cu"
    if not cuda_source.is_file():  # copied and patched once per work folder, so a rebuild finds it current
        shutil.copytree(folder, sources)
        text = cuda_source.read_text()
        if text.count(DISPATCH_OLD) != 2:
            raise ValueError(f"{cuda_source} is not transformers 4.46.3's: expected two `{DISPATCH_OLD}`")
        cuda_source.write_text(text.replace(DISPATCH_OLD, DISPATCH_NEW))
    return load("MultiScaleDeformableAttention", [str(sources / name) for name in ORIGINAL_SOURCES],
                with_cuda=True, extra_include_paths=[str(sources)], extra_cflags=["-DWITH_CUDA=1"],
                extra_cuda_cflags=["-DCUDA_HAS_FP16=1", "-D__CUDA_NO_HALF_OPERATORS__",
                                   "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__"],
                build_directory=str(build), verbose=False)


def median_us(function: Callable[[], object], repeats: int = 50, warmup: int = 10) -> float:
    """Median CUDA-event time of `function` in microseconds (Python and launch overhead included)."""
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1e3)
    return statistics.median(samples)


def graph_us(function: Callable[[], object], calls: int = 20, replays: int = 20) -> float:
    """GPU time of one call of `function` in microseconds: a CUDA graph of `calls` calls, replayed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            function()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            function()
    return median_us(graph.replay, repeats=replays, warmup=3) / calls


def copy_bandwidth() -> float:
    """Bytes per second of a 1 GiB device-to-device copy (read + write)."""
    source = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    target = torch.empty_like(source)
    seconds = median_us(lambda: target.copy_(source), repeats=20, warmup=3) * 1e-6
    return 2 * source.numel() * 4 / seconds


def minimum_bytes(tensors: list[torch.Tensor], output: torch.Tensor) -> int:
    """What any kernel must move at least: every input read once and the output written once."""
    return sum(t.numel() * t.element_size() for t in tensors) + output.numel() * output.element_size()


def max_relative_error(output: torch.Tensor, expected: torch.Tensor) -> float:
    """max |output - expected| over max |expected| (the tests' scale)."""
    return ((output.double() - expected).abs().max() / expected.abs().max()).item()


def measure(original: ModuleType | None, bandwidth: float) -> list[str]:
    rows = []
    total = sum(h * w for h, w in LEVELS)
    for name, queries, encoder in (("encoder Lq=22,223", total, True), ("decoder Lq=300", 300, False)):
        value, shapes, starts, locations, weights = make_inputs(queries, encoder, uniform=False)
        cuda_shapes, cuda_starts = shapes.cuda(), starts.cuda()
        for dtype in (torch.float32, torch.float16):
            v, loc, w = (t.to("cuda", dtype) for t in (value, locations, weights))
            expected = ms_deform_attn_reference(v.cpu().double(), shapes, loc.cpu().double(), w.cpu().double())
            ours = lambda: kernels.forward(v, shapes, starts, loc, w)  # noqa: E731
            output = ours()
            error = max_relative_error(output.cpu(), expected)
            reference_us = median_us(lambda: ms_deform_attn_reference(v, cuda_shapes, loc, w), repeats=10)
            ours_us = graph_us(ours)
            if original is not None:
                original_us = graph_us(lambda: original.ms_deform_attn_forward(v, cuda_shapes, cuda_starts, loc, w, 64))
                speedup = f"{original_us / ours_us:.1f}x"
                original_cell = f"{original_us:.1f}"
            else:
                original_cell, speedup = "not built", "-"
            floor_us = minimum_bytes([v, loc, w], output) / bandwidth * 1e6
            rows.append(f"| {name} | {str(dtype).removeprefix('torch.')} | {reference_us:.1f} | {original_cell} | "
                        f"{ours_us:.1f} | {speedup} | {floor_us:.1f} | {ours_us / floor_us:.1f}x | {error:.1e} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original-kernel", type=Path, help="transformers 4.46.3 kernels/deformable_detr folder")
    parser.add_argument("--work", type=Path, help="folder for the original kernel's build (reused if given)")
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("msda_gpu.py needs a CUDA device (torch.cuda.is_available() is false)")
    original, note = None, "original kernel: not requested"
    if args.original_kernel:
        try:
            original, note = load_original(args.original_kernel, args.work), f"original kernel: JIT-built from {args.original_kernel}"
        except Exception as error:  # a build failure is reported in the table (full log on stderr), the rest runs
            traceback.print_exc()
            note = f"original kernel: build failed ({type(error).__name__}; the log has the compiler's output)"
    bandwidth = copy_bandwidth()
    lines = [f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}; "
             f"copy bandwidth {bandwidth / 1e9:.0f} GB/s; {note}; targets: {TARGETS}.", "",
             "| problem | dtype | reference (us) | original kernel (us) | detrt (us) | detrt vs original | "
             "DRAM floor (us) | detrt / floor | max rel. error vs float64 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|", *measure(original, bandwidth)]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
