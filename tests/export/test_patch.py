"""`detrt patch`: ONNX files exported by other code (plain torch.onnx of transformers' RT-DETR, D-FINE and
DEIMv2; detrt's own portable graph) become plugin graphs whose outputs match PyTorch's, and what is not MSDA
is left alone or refused with a reason.

Tolerance: ATOL 1e-4 on raw logits and boxes, the same fp32 network in two runtimes (measured at most 3e-6
apart here); the patched graph runs its plugin nodes on detrt's CPU kernels.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detrt.detectors import ms_deform_attn_reference
from detrt.export import DETRT_FUSED_PLUGIN, DETRT_PLUGIN, PatchError, create_session, patch_onnx
from detrt.runtime.cli import main
from support.hf_models import LogitsAndBoxes, tiny_d_fine, tiny_deimv2, tiny_rt_detr
from support.variants import exported_variant

SIZE = (192, 256)  # not square
ATOL = 1e-4


def export_plainly(model: nn.Module, path: Path, opset: int, dynamo: bool = False, dynamic_size: bool = False) -> Path:
    """torch.onnx.export of `model` as a user without detrt would write it (`dynamic_size`: batch, height and
    width symbolic, as optimum's exports have them)."""
    axes = {"images": {0: "batch", 2: "height", 3: "width"}} if dynamic_size else None
    torch.onnx.export(model.eval(), (torch.rand(1, 3, *SIZE),), str(path), opset_version=opset, dynamo=dynamo,
                      input_names=["images"], output_names=["logits", "boxes"], dynamic_axes=axes)
    return path


def ops(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


# (family, builder, points per level, opset, exporter): every family of the acceptance, the points-per-level
# form of D-FINE / DEIMv2 checkpoints ([3, 6, 3]), opsets 16, 17 and 20, and the dynamo exporter
CASES = {
    "rt_detr-opset17-dynamic-size": (lambda: tiny_rt_detr(), 17, False),
    "rt_detr-opset18-dynamo": (lambda: tiny_rt_detr(), 18, True),
    "d_fine-points-3-6-3-opset16": (lambda: tiny_d_fine(points=[3, 6, 3]), 16, False),
    "deimv2-points-3-6-3-opset20": (lambda: tiny_deimv2(points=[3, 6, 3]), 20, False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_patched_torch_onnx_export_matches_transformers(case, tmp_path, capsys):
    build, opset, dynamo = CASES[case]
    model = LogitsAndBoxes(build()).eval()
    dynamic_size = case.endswith("dynamic-size")
    source = export_plainly(model, tmp_path / "foreign.onnx", opset, dynamo, dynamic_size)
    assert ops(source)["GridSample"] == 6  # 2 decoder layers x 3 levels
    capsys.readouterr()  # the dynamo exporter prints its progress
    target = tmp_path / "patched.onnx"
    options = ["--fused"] if case.startswith("d_fine") else []  # one family through the fused node as well
    if dynamic_size:  # the plugin's level tables need the size: refused without it, fixed to it with --shape
        assert main(["patch", str(source), "-o", str(target)]) == 2 and not target.exists()
        assert "give the size the model runs at with --shape images=1x3x640x640" in capsys.readouterr().err
        options = ["--shape", f"images=1x3x{SIZE[0]}x{SIZE[1]}"]
    assert main(["patch", str(source), "-o", str(target), "--json", *options]) == 0
    report = json.loads(capsys.readouterr().out)
    dims = [d.dim_param or d.dim_value for d in onnx.load(str(target)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == (["batch", 3, *SIZE] if dynamic_size else [1, 3, *SIZE])
    assert report["fixed_inputs"] == ({"images": dims} if dynamic_size else {})
    counts = ops(target)
    node = DETRT_FUSED_PLUGIN if "--fused" in options else DETRT_PLUGIN
    assert counts["GridSample"] == 0 and counts[node.name] == 2, counts
    assert len(report["replaced"]) == 2 and report["unsupported"] == [] and report["not_fused"] == []
    assert report["replaced"][0]["levels"] == [[24, 32], [12, 16], [6, 8]]
    expected_points = [3, 6, 3] if "3-6-3" in case else [4, 4, 4]
    assert report["replaced"][0]["points_per_level"] == expected_points and report["replaced"][0]["heads"] == 2
    images = torch.rand(1, 3, *SIZE, generator=torch.Generator().manual_seed(7))  # not the check run's input
    with torch.no_grad():
        logits, boxes = model(images)
    got = create_session(target).run(["logits", "boxes"], {"images": images.numpy()})
    np.testing.assert_allclose(got[0], logits.numpy(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(got[1], boxes.numpy(), rtol=0, atol=ATOL)


def test_detrt_portable_export_patches_back_to_fused_plugin_nodes(tmp_path):
    """Deformable DETR, two-stage: encoder (2-d references, folded into constants by the exporter) and decoder
    (4-d boxes); exported with a dynamic batch and run patched at batch 2. test_export proves the portable
    graph against PyTorch, so the patched one is compared with it."""
    source = exported_variant("deformable_detr-two-stage", "portable", batch=None)
    target = tmp_path / "patched.onnx"
    report = patch_onnx(source, target, fused=True)
    assert ops(target)["GridSample"] == 0 and ops(target)[DETRT_FUSED_PLUGIN.name] == 4  # 2 encoder + 2 decoder
    assert report.not_fused == [] and report.max_difference < ATOL
    dims = onnx.load(str(source)).graph.input[0].type.tensor_type.shape.dim
    images = torch.rand(2, 3, dims[2].dim_value, dims[3].dim_value, generator=torch.Generator().manual_seed(3)) * 255
    names = ["pred_logits", "pred_boxes"]
    expected = create_session(source).run(names, {"images": images.numpy()})
    got = create_session(target).run(names, {"images": images.numpy()})
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL)


class WarpThenAttend(nn.Module):
    """A GridSample that is not MSDA (an affine warp of the image) beside one MSDA, both in plain ops."""

    shapes = [(8, 8), (4, 4)]

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.to_value = nn.Parameter(torch.randn(3, 2 * 4, generator=generator))
        self.to_offsets = nn.Parameter(torch.randn(3, 5 * 2 * 2 * 3 * 2, generator=generator) * 0.1)
        self.to_logits = nn.Parameter(torch.randn(3, 5 * 2 * 2 * 3, generator=generator))

    def forward(self, images: Tensor) -> Tensor:
        theta = torch.tensor([[[0.9, 0.1, 0.0], [-0.1, 0.9, 0.05]]])
        grid = F.affine_grid(theta, [1, 3, 32, 32], align_corners=False).expand(images.shape[0], 32, 32, 2)
        warped = F.grid_sample(images, grid, align_corners=False)
        levels = [F.avg_pool2d(warped, 32 // size).flatten(2).transpose(1, 2) for size, _ in self.shapes]
        value = (torch.cat(levels, 1) @ self.to_value).view(images.shape[0], -1, 2, 4)
        query = warped.mean((2, 3))
        n = images.shape[0]
        locations = torch.sigmoid((query @ self.to_offsets).view(n, 5, 2, 2, 3, 2))
        weights = (query @ self.to_logits).view(n, 5, 2, 6).softmax(-1).view(n, 5, 2, 2, 3)
        shapes = torch.tensor(self.shapes)
        return ms_deform_attn_reference(value, shapes, locations, weights)


def test_grid_sample_that_is_not_msda_is_left_alone(tmp_path):
    source = tmp_path / "warp.onnx"
    torch.onnx.export(WarpThenAttend().eval(), (torch.rand(1, 3, 32, 32),), str(source), opset_version=17,
                      dynamo=False, input_names=["images"], output_names=["out"])
    assert ops(source)["GridSample"] == 3
    report = patch_onnx(source, tmp_path / "patched.onnx")
    assert ops(tmp_path / "patched.onnx")["GridSample"] == 1 and len(report.replaced) == 1
    assert report.untouched == [next(n.name for n in onnx.load(str(source)).graph.node if n.op_type == "GridSample")]


def test_nothing_to_patch_is_an_error_and_writes_nothing(tmp_path, capsys):
    source = tmp_path / "plain.onnx"
    torch.onnx.export(nn.Conv2d(3, 4, 3).eval(), (torch.rand(1, 3, 16, 16),), str(source), opset_version=17,
                      dynamo=False)
    target = tmp_path / "patched.onnx"
    assert main(["patch", str(source), "-o", str(target)]) == 2
    assert "no MSDA subgraph (it has no GridSample node)" in capsys.readouterr().err
    assert not target.exists()


def test_grid_sample_with_other_settings_is_reported_unsupported(tmp_path):
    class AlignedCorners(WarpThenAttend):
        def forward(self, images: Tensor) -> Tensor:
            value = images.flatten(2).transpose(1, 2).reshape(images.shape[0], -1, 1, 3)
            grid = torch.rand(1, 4, 2, 2) * 2 - 1
            sampled = F.grid_sample(value.permute(0, 2, 3, 1).reshape(1, 3, 32, 32), grid, align_corners=True)
            return (sampled * torch.full((1, 1, 4, 2), 0.5)).sum(-1)

    source = tmp_path / "aligned.onnx"
    torch.onnx.export(AlignedCorners().eval(), (torch.rand(1, 3, 32, 32),), str(source), opset_version=17,
                      dynamo=False)
    with pytest.raises(PatchError, match="align_corners=1; MSDA is bilinear, zeros, align_corners=0"):
        patch_onnx(source, tmp_path / "patched.onnx")
    assert not (tmp_path / "patched.onnx").exists()
