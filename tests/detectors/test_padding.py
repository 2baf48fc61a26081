"""Padding: the transformers ignore padded positions, and a Detector's results do not depend on the batch.

Why not compare whole models on a padded image: the backbone's convolutions carry image values into
the padded area and back (and Deformable DETR's input GroupNorm takes statistics over it), so in the
reference architectures a padded image gives slightly different features than the same image alone.
What must hold is that everything after the features uses the mask correctly; that is tested here.
"""
from __future__ import annotations

import pytest
import torch

from detrt.detectors import Detector, PreprocessSpec
from support.variants import small_config, small_model

TOL = 1e-4  # fp32; attention over 8 vs 16 keys sums in a different order


def _pad(tensor: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, H, W) with random garbage in the padded area."""
    out = torch.randn(*tensor.shape[:2], height, width) * 10
    out[..., : tensor.shape[-2], : tensor.shape[-1]] = tensor
    return out


def _padded_mask(h: int, w: int, height: int, width: int) -> torch.Tensor:
    mask = torch.ones(1, height, width, dtype=torch.bool)
    mask[:, :h, :w] = False
    return mask


@pytest.mark.parametrize("name", ["detr", "detr-prenorm-learned", "conditional_detr"])
def test_single_level_transformer_ignores_padding(name: str) -> None:
    model = small_model(name)
    pos_embed = model.backbone[1]
    src = torch.randn(1, 64, 3, 4)
    alone_mask = torch.zeros(1, 3, 4, dtype=torch.bool)
    padded_mask = _padded_mask(3, 4, 5, 7)
    with torch.no_grad():
        alone = model.transformer(src, alone_mask, model.query_embed.weight, pos_embed(alone_mask))
        padded = model.transformer(_pad(src, 5, 7), padded_mask, model.query_embed.weight, pos_embed(padded_mask))
    for a, p in zip(alone if isinstance(alone, tuple) else (alone,), padded if isinstance(padded, tuple) else (padded,)):
        torch.testing.assert_close(p, a, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["deformable_detr", "deformable_detr-single-scale", "deformable_detr-refine"])
def test_deformable_transformer_ignores_padding(name: str) -> None:
    model = small_model(name)
    levels = model.num_feature_levels
    sizes = [(6, 8), (3, 4), (2, 2), (1, 1)][:levels] if levels > 1 else [(3, 5)]
    padded_sizes = [(8, 11), (4, 6), (2, 3), (1, 2)][:levels] if levels > 1 else [(5, 6)]
    srcs = [torch.randn(1, 64, h, w) for h, w in sizes]
    alone_masks = [torch.zeros(1, h, w, dtype=torch.bool) for h, w in sizes]
    padded_masks = [_padded_mask(h, w, ph, pw) for (h, w), (ph, pw) in zip(sizes, padded_sizes)]
    padded_srcs = [_pad(s, ph, pw) for s, (ph, pw) in zip(srcs, padded_sizes)]
    pos = model.backbone[1]
    query = model.query_embed.weight
    with torch.no_grad():
        states_a, init_a, refs_a, _, _ = model.transformer(srcs, alone_masks, [pos(m) for m in alone_masks], query)
        states_p, init_p, refs_p, _, _ = model.transformer(padded_srcs, padded_masks, [pos(m) for m in padded_masks], query)
    torch.testing.assert_close(states_p, states_a, atol=TOL, rtol=0)
    # reference points are normalised to the valid area in both cases
    torch.testing.assert_close(refs_p, refs_a, atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["detr", "conditional_detr", "deformable_detr-two-stage"])
def test_detector_results_do_not_depend_on_the_rest_of_the_batch(name: str) -> None:
    spec = PreprocessSpec(shortest_edge=64, longest_edge=128)
    detector = Detector(small_model(name), small_config(name), spec)
    generator = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8, generator=generator)
    others = [torch.randint(0, 256, size, dtype=torch.uint8, generator=generator) for size in ((3, 100, 70), (3, 64, 64))]
    twin = torch.randint(0, 256, (3, 60, 90), dtype=torch.uint8, generator=generator)
    alone = detector(image)[0]
    in_batch = detector([others[0], image, twin, others[1]])
    assert len(in_batch) == 4
    torch.testing.assert_close(in_batch[1].scores, alone.scores, atol=TOL, rtol=0)
    torch.testing.assert_close(in_batch[1].boxes, alone.boxes, atol=TOL * 100, rtol=0)  # pixels: 1e-4 of ~100 px
    assert torch.equal(in_batch[1].labels, alone.labels)
    # boxes are in the original image's pixels
    assert in_batch[0].boxes[:, 2].max() <= 70 * 1.5 and alone.boxes[:, 3].max() <= 60 * 1.5
