"""Every detector variant builds, has the documented raw interface, and is deterministic."""
from __future__ import annotations

import pytest
import torch

from detrt.detectors import DetectorConfig, build_model
from support.variants import VARIANTS, small_config, small_model


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_raw_forward_shapes_and_determinism(name: str) -> None:
    config = small_config(name)
    model = small_model(name)
    images = torch.randn(2, 3, 64, 96)
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 64:] = True
    with torch.no_grad():
        first = model(images, mask)
        second = model(images, mask)
    logits = config.num_classes + (1 if config.arch == "detr" else 0)
    assert first["pred_logits"].shape == (2, config.num_queries, logits)
    assert first["pred_boxes"].shape == (2, config.num_queries, 4)
    assert ((first["pred_boxes"] >= 0) & (first["pred_boxes"] <= 1)).all()
    assert torch.equal(first["pred_logits"], second["pred_logits"])
    assert torch.equal(first["pred_boxes"], second["pred_boxes"])


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_batch_elements_are_independent(name: str) -> None:
    """Each image of an unpadded batch gets what it gets alone (1e-4: fp32 with different batch
    shapes takes different kernel paths, so results agree to rounding, not bit for bit)."""
    model = small_model(name)
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        together = model(images)
        alone = [model(images[i : i + 1]) for i in range(3)]
    for i in range(3):
        torch.testing.assert_close(together["pred_logits"][i], alone[i]["pred_logits"][0], atol=1e-4, rtol=0)
        torch.testing.assert_close(together["pred_boxes"][i], alone[i]["pred_boxes"][0], atol=1e-4, rtol=0)


def test_mask_none_equals_all_valid_mask() -> None:
    model = small_model("deformable_detr")
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        implicit = model(images)
        explicit = model(images, torch.zeros(1, 64, 64, dtype=torch.bool))
    assert torch.equal(implicit["pred_logits"], explicit["pred_logits"])


def test_paper_sized_deformable_detr_parameter_count() -> None:
    """The reference repository lists Deformable DETR R50 (multi-scale) at 40M parameters."""
    model = build_model(DetectorConfig.for_arch("deformable_detr"))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - 40e6) < 0.5e6, count


def test_bad_configurations_and_inputs_are_explained() -> None:
    with pytest.raises(ValueError, match="two_stage needs with_box_refine"):
        DetectorConfig.for_arch("deformable_detr", two_stage=True)
    with pytest.raises(ValueError, match="unknown architecture"):
        DetectorConfig.for_arch("yolo")
    with pytest.raises(ValueError, match="DC5"):
        build_model(DetectorConfig.for_arch("detr", backbone="resnet18", dilation=True))
    model = small_model("detr")
    with pytest.raises(ValueError, match=r"images must be \(N, 3, H, W\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        model(torch.randn(1, 3, 64, 64), torch.zeros(1, 64, 64))


def test_deformable_backbone_convolution_uses_offsets_and_mask() -> None:
    from detrt.detectors.models.backbone import ModulatedDeformConv2d

    conv = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
    dcn = ModulatedDeformConv2d(conv)
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(dcn(x), 0.5 * conv(x))  # zero offsets, mask sigmoid(0) = 0.5
        dcn.conv_offset.bias[:18] = 1.0  # shift every kernel point by one pixel down and right
        dcn.conv_offset.bias[18:] = 20.0  # mask -> 1
        shifted = torch.nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        # away from the top/left border (where the shifted input reads padding and DCN reads row 0)
        torch.testing.assert_close(dcn(x)[..., 1:, 1:], conv(shifted)[..., 1:, 1:], atol=1e-5, rtol=1e-5)
