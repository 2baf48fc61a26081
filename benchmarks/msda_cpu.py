"""CPU MSDA speed: the PyTorch grid_sample reference against libdetrt_plugins, side by side.

Problems from msda-spec.md (Deformable DETR R50, 800x1333, batch 1): the encoder (Lq = S = 22,223)
and the decoder (Lq = 300), M 8, D 32, L 4, P 4, fp32. Locations are made the way the module makes
them: reference points (level pixel centres for the encoder, uniform for the decoder) plus the
module's initial offset pattern (head direction times point index, in pixels) with N(0, 2 px) noise;
`--uniform` draws them uniformly in [0, 1] instead (no locality: the slowest case for caches).

    python3 benchmarks/msda_cpu.py --threads 2 --repeats 7 [--uniform] [--isa avx2]
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from typing import Callable

import torch

from detrt.detectors.models.msda_op import ms_deform_attn_reference
from detrt.plugins import kernels

LEVELS = [(100, 167), (50, 84), (25, 42), (13, 21)]
HEADS, DIM, POINTS = 8, 32, 4


def level_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    shapes = torch.tensor(LEVELS, dtype=torch.int64)
    sizes = shapes[:, 0] * shapes[:, 1]
    return shapes, torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


def encoder_reference_points() -> torch.Tensor:
    """(S, 2) normalised pixel centres of every level, in level order."""
    points = []
    for h, w in LEVELS:
        y, x = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
        points.append(torch.stack([x.flatten(), y.flatten()], -1))
    return torch.cat(points)


def pixel_offsets(queries: int, generator: torch.Generator) -> torch.Tensor:
    """(1, Lq, M, L, P, 2) offsets in pixels: MSDeformAttn's initial pattern plus N(0, 2) noise."""
    thetas = torch.arange(HEADS, dtype=torch.float32) * (2 * math.pi / HEADS)
    grid = torch.stack([thetas.cos(), thetas.sin()], -1)
    grid = grid / grid.abs().max(-1, keepdim=True).values
    pattern = grid[:, None, None, :] * torch.arange(1, POINTS + 1, dtype=torch.float32)[None, None, :, None]
    pattern = pattern.expand(HEADS, len(LEVELS), POINTS, 2)
    return pattern + 2 * torch.randn(1, queries, HEADS, len(LEVELS), POINTS, 2, generator=generator)


def make_inputs(queries: int, encoder: bool, uniform: bool, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    shapes, starts = level_tensors()
    total = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn(1, total, HEADS, DIM, generator=generator)
    if uniform:
        locations = torch.rand(1, queries, HEADS, len(LEVELS), POINTS, 2, generator=generator)
    else:
        reference = encoder_reference_points() if encoder else torch.rand(queries, 2, generator=generator)
        normaliser = shapes.flip(-1).to(torch.float32)[None, None, :, None, :]  # (W_l, H_l)
        locations = reference[None, :, None, None, None, :] + pixel_offsets(queries, generator) / normaliser
    logits = torch.randn(1, queries, HEADS, len(LEVELS) * POINTS, generator=generator)
    weights = logits.softmax(-1).view(1, queries, HEADS, len(LEVELS), POINTS)
    return value, shapes, starts, locations.contiguous(), weights


def median_seconds(functions: list[Callable[[], object]], repeats: int, warmup: int) -> list[float]:
    """Median wall time of each function; the functions take turns, so they see the same machine state."""
    times: list[list[float]] = [[] for _ in functions]
    for round_ in range(warmup + repeats):
        for function, samples in zip(functions, times):
            start = time.perf_counter()
            function()
            if round_ >= warmup:
                samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--uniform", action="store_true", help="uniform random locations (no locality)")
    parser.add_argument("--isa", choices=["avx512", "avx2", "baseline"],
                        help="cap the library's x86 vector variant (sets DETRT_MSDA_CPU_ISA) to time a narrower one")
    args = parser.parse_args()
    if args.isa:
        os.environ["DETRT_MSDA_CPU_ISA"] = args.isa
    torch.set_num_threads(args.threads)
    total = sum(h * w for h, w in LEVELS)
    locations = "uniform" if args.uniform else "module-like"
    isa = os.environ.get("DETRT_MSDA_CPU_ISA", "widest the CPU runs")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"median of {args.repeats} (taking turns) after {args.warmup} warm-up, {locations} locations, "
          f"library variant: {isa}")
    print("| problem | reference (ms) | detrt (ms) | speed-up | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    for name, queries, encoder in (("encoder Lq=22,223", total, True), ("decoder Lq=300", 300, False)):
        value, shapes, starts, locations, weights = make_inputs(queries, encoder, args.uniform)
        reference, ours = median_seconds(
            [lambda: ms_deform_attn_reference(value, shapes, locations, weights),
             lambda: kernels.forward(value, shapes, starts, locations, weights, args.threads)],
            args.repeats, args.warmup)
        difference = (kernels.forward(value, shapes, starts, locations, weights, args.threads)
                      - ms_deform_attn_reference(value, shapes, locations, weights)).abs().max().item()
        print(f"| {name} | {reference * 1e3:.1f} | {ours * 1e3:.2f} | {reference / ours:.1f}x | {difference:.1e} |")


if __name__ == "__main__":
    main()
