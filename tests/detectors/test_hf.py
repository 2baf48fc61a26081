"""`detrt.detectors.from_hf` against the installed HuggingFace transformers, offline, random weights."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import ConvNextConfig, YolosConfig, YolosForObjectDetection

from detrt.detectors import from_hf
from detrt.detectors.checkpoints.hf import UnsupportedHFModelError, hf_to_reference
from support.hf_models import (LABELS, MULTI_SCALE, VARIANTS, build_hf, example_batch, hf_model, max_differences,
                       resnet_config)

# Both sides run the same fp32 operations, only in a different order (HF's SDPA and separate
# q/k/v projections against nn.MultiheadAttention's packed ones): at most 2e-5 apart here.
# Perturbing any converted tensor that can reach the outputs moves them by more than 9e-4, so a
# missing, swapped or misplaced tensor cannot pass.
ATOL = 1e-4


def assert_matches(hf: nn.Module, model: nn.Module) -> None:
    logits, boxes = max_differences(hf, model)
    assert logits < ATOL and boxes < ATOL, f"max |difference|: logits {logits:.2e}, boxes {boxes:.2e}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_converted_model_matches_hf(variant: str) -> None:
    hf = hf_model(variant)
    assert_matches(hf, from_hf(hf).model)


def test_config_and_class_names() -> None:
    config, _, names = hf_to_reference(hf_model("deformable-detr-two-stage"))
    assert (config.arch, config.backbone, config.hidden_dim, config.nheads, config.enc_layers, config.dec_layers,
            config.dim_feedforward, config.num_queries, config.num_classes, config.num_feature_levels) == \
        ("deformable_detr", "resnet18", 64, 4, 2, 2, 128, 10, 5, 4)
    assert config.with_box_refine and config.two_stage
    assert names == list(LABELS.values())
    detr = from_hf(hf_model("detr-learned-pos"))  # DETR: num_classes labels + the no-object logit
    assert (detr.config.num_classes, detr.config.position_embedding, detr.model.class_embed.out_features) == \
        (5, "learned", 6)


def test_saved_directory(tmp_path: Path) -> None:
    hf = hf_model("deformable-detr-two-stage")
    hf.save_pretrained(tmp_path)
    detector = from_hf(tmp_path)
    assert_matches(hf, detector.model)
    assert detector.class_names == list(LABELS.values())


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm is not installed")
def test_timm_resnet_dc5_backbone() -> None:
    hf = build_hf("detr", None, use_timm_backbone=True, backbone="resnet50", dilation=True)
    detector = from_hf(hf)
    assert (detector.config.backbone, detector.config.dilation) == ("resnet50", True)
    assert_matches(hf, detector.model)


def test_hf_auxiliary_loss_changes_the_decoder() -> None:
    """Why auxiliary_loss=True is refused: HF then feeds LayerNorm-ed states from one decoder layer to the
    next (and normalises the last twice), which the reference repositories do not."""
    hf = hf_model("detr-learned-pos")
    images, _ = example_batch()
    with torch.no_grad():
        plain = hf(pixel_values=images).logits
        hf.config.auxiliary_loss = True
        auxiliary = hf(pixel_values=images).logits
    assert (plain - auxiliary).abs().max() > 1e-2


def test_unsupported_model_class(tmp_path: Path) -> None:
    yolos = YolosForObjectDetection(YolosConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                intermediate_size=64, image_size=[64, 96], num_detection_tokens=4))
    with pytest.raises(UnsupportedHFModelError, match="YolosForObjectDetection"):
        from_hf(yolos)
    yolos.save_pretrained(tmp_path)
    with pytest.raises(UnsupportedHFModelError, match="YolosForObjectDetection"):
        from_hf(tmp_path)


@pytest.mark.parametrize("arch, backbone_config, options, message", [
    ("detr", resnet_config("resnet18", ["stage4"]), dict(auxiliary_loss=True), "auxiliary_loss"),
    ("detr", resnet_config("resnet18", ["stage4"], hidden_sizes=[32, 64, 128, 256]), {}, "hidden_sizes"),
    ("detr", ConvNextConfig(out_features=["stage4"], hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1]), {},
     "backbone 'convnext'"),
    ("conditional_detr", resnet_config("resnet18", ["stage4"]), dict(decoder_attention_heads=2), "heads"),
    ("deformable_detr", resnet_config("resnet18", ["stage4"]), {}, r"stages \[4\] with 4 feature levels"),
    ("deformable_detr", resnet_config("resnet18", MULTI_SCALE), dict(activation_function="gelu"), "gelu"),
])
def test_unsupported_options(arch: str, backbone_config: Any, options: dict[str, Any], message: str) -> None:
    with pytest.raises(UnsupportedHFModelError, match=message):
        from_hf(build_hf(arch, backbone_config, **options))


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        from_hf(tmp_path / "absent")
