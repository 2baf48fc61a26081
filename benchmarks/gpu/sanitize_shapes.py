"""Small MSDA problems on the GPU for compute-sanitizer (memcheck, racecheck): every kernel of
libdetrt_plugins (fp32 and fp16; plain and fused with 2- and 4-value reference points; D 16, 32, 64
and a generic D; a misaligned value tensor) once, on a problem with several blocks and samples
outside the maps. Exits non-zero if an output is not finite.

    compute-sanitizer --tool memcheck --error-exitcode 1 python3 benchmarks/gpu/sanitize_shapes.py
"""
from __future__ import annotations

import torch

from detrt.plugins import kernels

LEVELS = [(6, 5), (3, 3), (1, 2)]


def inputs(dim: int, dtype: torch.dtype, reference_dim: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(dim + reference_dim)
    batch, queries, heads, points = 2, 37, 3, 3
    shapes = torch.tensor(LEVELS)
    sizes = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    value = torch.randn(batch, int(sizes.sum()), heads, dim, generator=generator)
    locations = torch.rand(batch, queries, heads, len(LEVELS), points, 2, generator=generator) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, len(LEVELS), points, generator=generator)
    reference = torch.rand(batch, queries, len(LEVELS), reference_dim, generator=generator)
    logits = weights.flatten(-2)
    cuda = [t.to("cuda", dtype) for t in (value, locations, weights, reference, logits)]
    return (cuda[0], shapes, starts, *cuda[1:])


def main() -> None:
    outputs = []
    for dtype in (torch.float32, torch.float16):
        for dim in (16, 32, 64, 24):
            value, shapes, starts, locations, weights, reference, logits = inputs(dim, dtype, 2)
            outputs.append(kernels.forward(value, shapes, starts, locations, weights))
            outputs.append(kernels.forward_fused(value, shapes, starts, reference, locations, logits))
            four = inputs(dim, dtype, 4)
            outputs.append(kernels.forward_fused(four[0], shapes, starts, four[5], four[3], four[6]))
        misaligned = torch.empty(value.numel() + 1, dtype=dtype, device="cuda")[1:].view_as(value)
        misaligned.copy_(value)
        outputs.append(kernels.forward(misaligned, shapes, starts, locations, weights))
    torch.cuda.synchronize()
    bad = [i for i, output in enumerate(outputs) if not torch.isfinite(output).all()]
    if bad:
        raise SystemExit(f"non-finite outputs in calls {bad}")
    print(f"{len(outputs)} kernel calls done")


if __name__ == "__main__":
    main()
