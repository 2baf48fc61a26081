"""Small HuggingFace DETR-family detectors with random weights, built offline, and inputs for them."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (ConditionalDetrConfig, ConditionalDetrForObjectDetection, DeformableDetrConfig,
                          DeformableDetrForObjectDetection, DetrConfig, DetrForObjectDetection, ResNetConfig)

LABELS = {0: "cat", 1: "dog", 2: "bird", 3: "car", 4: "tree"}
# d_model 64 = 2 GroupNorm(32) groups of Deformable DETR's input projections; 4 heads of 16.
SMALL: dict[str, Any] = dict(d_model=64, encoder_attention_heads=4, decoder_attention_heads=4, encoder_layers=2,
                             decoder_layers=2, encoder_ffn_dim=128, decoder_ffn_dim=128, num_queries=10,
                             id2label=LABELS, use_timm_backbone=False)
MULTI_SCALE = ["stage2", "stage3", "stage4"]
ARCHITECTURES = {
    "detr": (DetrForObjectDetection, DetrConfig),
    "conditional_detr": (ConditionalDetrForObjectDetection, ConditionalDetrConfig),
    "deformable_detr": (DeformableDetrForObjectDetection, DeformableDetrConfig),
}


def resnet_config(name: str, out_features: list[str], **changes: Any) -> ResNetConfig:
    """HF ResNet shaped like torchvision's resnet18 or resnet50, so that its weights map one to one."""
    if name == "resnet18":
        shape = dict(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512])
    else:
        shape = dict(layer_type="bottleneck", depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048])
    return ResNetConfig(out_features=out_features, **{**shape, **changes})


# variant -> (architecture, backbone, output stages, config options)
VARIANTS: dict[str, tuple[str, str, list[str], dict[str, Any]]] = {
    "detr-r50": ("detr", "resnet50", ["stage4"], {}),
    "detr-learned-pos": ("detr", "resnet18", ["stage4"], dict(position_embedding_type="learned")),
    "conditional-detr": ("conditional_detr", "resnet18", ["stage4"], {}),
    "deformable-detr": ("deformable_detr", "resnet18", MULTI_SCALE, dict(tie_word_embeddings=False)),
    "deformable-detr-single-scale-learned-pos": ("deformable_detr", "resnet18", ["stage4"],
                                                 dict(num_feature_levels=1, position_embedding_type="learned")),
    "deformable-detr-refine": ("deformable_detr", "resnet18", MULTI_SCALE,
                               dict(with_box_refine=True, tie_word_embeddings=False)),
    "deformable-detr-refine-tied": ("deformable_detr", "resnet18", MULTI_SCALE, dict(with_box_refine=True)),
    "deformable-detr-two-stage": ("deformable_detr", "resnet18", MULTI_SCALE,
                                  dict(with_box_refine=True, two_stage=True, tie_word_embeddings=False)),
}


def build_hf(arch: str, backbone_config: Any, **options: Any) -> nn.Module:
    """A small HF detector of `arch` with randomised weights, in eval mode."""
    model_class, config_class = ARCHITECTURES[arch]
    extra = dict(two_stage_num_proposals=SMALL["num_queries"]) if arch == "deformable_detr" else {}
    model = model_class(config_class(backbone_config=backbone_config, **{**SMALL, **extra, **options})).eval()
    randomise_(model)
    return model


def hf_model(variant: str) -> nn.Module:
    """The HF detector of one of `VARIANTS`."""
    arch, backbone, stages, options = VARIANTS[variant]
    return build_hf(arch, resnet_config(backbone, stages), **options)


@torch.no_grad()
def randomise_(model: nn.Module, seed: int = 0) -> None:
    """Overwrite every float parameter and buffer with random values; tied tensors stay tied.

    HF initialises many to constants (zero biases and sampling-offset weights, unit norms, identity
    batch-norm statistics), which would hide a mapping that swaps or drops them. The scales keep
    activations O(1) and make the outputs differ between queries and positions.
    """
    generator = torch.Generator().manual_seed(seed)
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            continue
        noise = torch.randn(tensor.shape, generator=generator)
        if name.endswith("running_var"):
            tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
        elif name.endswith(("embeddings.weight", "level_embed")):
            tensor.copy_(noise)
        elif tensor.dim() == 4:  # convolutions: unit gain, so that the ResNet's residual sums stay O(1)
            tensor.copy_(noise / tensor[0].numel() ** 0.5)
        elif tensor.dim() == 2:  # linear layers: gain 2, so that the queries' states differ clearly
            tensor.copy_(noise * 2 / tensor[0].numel() ** 0.5)
        elif name.endswith("weight"):  # norm scales
            tensor.copy_(1 + 0.2 * noise)
        else:  # biases, running means
            tensor.copy_(0.2 * noise)


def example_batch(seed: int = 1) -> tuple[Tensor, Tensor]:
    """Two 64x96 images with spatial structure; the second is a 24x56 image zero-padded, which
    leaves padding even at stride 32 (1x2 valid cells of 2x3).

    Returns (images, mask) with the mask True on padding, as our models take it.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(2, 3, 4, 6, generator=generator)
    images = F.interpolate(coarse, size=(64, 96), mode="bilinear", align_corners=False)
    images = images + 0.1 * torch.randn(images.shape, generator=generator)
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, 24:, :] = True
    mask[1, :, 56:] = True
    return images.masked_fill(mask[:, None], 0.0), mask


@torch.no_grad()
def max_differences(hf: nn.Module, model: nn.Module) -> tuple[float, float]:
    """Largest |difference| of (logits, boxes) between the HF model and ours on `example_batch`."""
    images, mask = example_batch()
    expected = hf(pixel_values=images, pixel_mask=(~mask).long())
    outputs = model(images, mask)
    return ((outputs["pred_logits"] - expected.logits).abs().max().item(),
            (outputs["pred_boxes"] - expected.pred_boxes).abs().max().item())


def redraw_weights_(model: nn.Module, seed: int, std: float) -> nn.Module:
    """Every weight matrix drawn again from N(0, std), seeded. transformers' own initialisation of a tiny
    RT-DETR, D-FINE or DEIMv2 gives many encoder positions the same score, and the top-k query selection
    then breaks the ties differently in PyTorch and ONNX Runtime (0.3 separates them for RT-DETR, 0.1
    for D-FINE and DEIMv2); too large a std makes LW-DETR's windowed ViT, D-FINE and DEIMv2 chaotic, so
    that fp32 rounding alone moves their outputs (0.1 keeps them within 3e-6)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model.eval()


def tiny_lw_detr(seed: int = 0) -> nn.Module:
    """A tiny LW-DETR: 4-layer windowed ViT (2 feature maps), projector to 2 levels, 2 decoder layers."""
    from transformers import LwDetrConfig, LwDetrForObjectDetection, LwDetrViTConfig

    backbone = LwDetrViTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, window_block_indices=[0, 2],
                               out_indices=[1, 3], num_windows=16, image_size=256)
    config = LwDetrConfig(backbone_config=backbone, d_model=32, projector_scale_factors=[0.5, 2.0], decoder_ffn_dim=32,
                          decoder_layers=2, decoder_self_attention_heads=2, decoder_cross_attention_heads=4,
                          num_queries=10, group_detr=2, num_labels=5, id2label={i: f"class{i}" for i in range(5)})
    torch.manual_seed(seed)
    return redraw_weights_(LwDetrForObjectDetection(config), seed, std=0.1)


def tiny_dab_detr(seed: int = 0) -> nn.Module:
    """A tiny DAB-DETR: a 4-stage basic ResNet, 2 encoder and 2 decoder layers, 10 queries, 5 classes."""
    from transformers import DabDetrConfig, DabDetrForObjectDetection

    backbone = ResNetConfig(layer_type="basic", depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], embedding_size=16,
                            out_features=["stage4"])
    config = DabDetrConfig(backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False,
                           hidden_size=32, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                           encoder_attention_heads=2, decoder_attention_heads=2, num_queries=10, num_labels=5,
                           id2label={i: f"class{i}" for i in range(5)})
    torch.manual_seed(seed)
    return DabDetrForObjectDetection(config).eval()


def tiny_rf_detr(seed: int = 0) -> nn.Module:
    """A tiny RF-DETR: 4-layer windowed DINOv2 (patch 14, 2x2 windows, 112-px position table), 1 level,
    2 decoder layers, 10 queries, 5 classes. Inputs must be multiples of 28 (patch x windows)."""
    from transformers import RfDetrConfig, RfDetrForObjectDetection
    from transformers.models.rf_detr.configuration_rf_detr import RfDetrDinov2Config

    backbone = RfDetrDinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=112,
                                  patch_size=14, num_windows=2, window_block_indexes=[0, 2],
                                  out_features=["stage2", "stage4"])
    config = RfDetrConfig(backbone_config=backbone, d_model=32, decoder_ffn_dim=64, decoder_layers=2,
                          decoder_self_attention_heads=2, decoder_cross_attention_heads=4, num_queries=10, group_detr=2,
                          num_labels=5, projector_scale_factors=[1.0], intermediate_size=64,
                          id2label={i: f"class{i}" for i in range(5)})
    torch.manual_seed(seed)
    return RfDetrForObjectDetection(config).eval()


def tiny_rt_detr_v2(seed: int = 0, method: str = "default") -> nn.Module:
    """A tiny RT-DETRv2, shaped as `tiny_rt_detr`, sampling with `method` ("default" or "discrete")."""
    from transformers import RTDetrResNetConfig, RTDetrV2Config, RTDetrV2ForObjectDetection

    backbone = RTDetrResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = RTDetrV2Config(backbone_config=backbone, d_model=32, encoder_hidden_dim=32,
                            encoder_in_channels=[32, 64, 128], encoder_ffn_dim=64, encoder_attention_heads=2,
                            decoder_attention_heads=2, decoder_ffn_dim=64, decoder_layers=2, num_queries=20,
                            num_labels=5, num_denoising=0, decoder_in_channels=[32, 32, 32],
                            use_pretrained_backbone=False, decoder_method=method,
                            id2label={i: f"class{i}" for i in range(5)})
    torch.manual_seed(seed)
    return redraw_weights_(RTDetrV2ForObjectDetection(config), seed, std=0.3)


def _tiny_hgnet() -> Any:
    from transformers import HGNetV2Config

    return HGNetV2Config(stem_channels=[3, 8, 8], stage_in_channels=[8, 16, 32, 64], stage_mid_channels=[8, 8, 16, 16],
                         stage_out_channels=[16, 32, 64, 128], stage_num_blocks=[1, 1, 1, 1],
                         stage_downsample=[False, True, True, True], stage_light_block=[False, False, True, True],
                         stage_kernel_size=[3, 3, 5, 5], stage_numb_of_layers=[2, 2, 2, 2],
                         out_features=["stage2", "stage3", "stage4"], hidden_sizes=[16, 32, 64, 128],
                         depths=[1, 1, 1, 1], embedding_size=8)


def _tiny_d_fine_like(config_class: Any, model_class: Any, seed: int, points: int | list[int]) -> nn.Module:
    config = config_class(backbone_config=_tiny_hgnet(), encoder_in_channels=[32, 64, 128], encoder_hidden_dim=32,
                          d_model=32, decoder_in_channels=[32, 32, 32], encoder_ffn_dim=64, decoder_ffn_dim=64,
                          encoder_attention_heads=2, decoder_attention_heads=2, decoder_layers=2, num_queries=20,
                          num_labels=5, num_denoising=0, decoder_n_points=points, use_pretrained_backbone=False,
                          id2label={i: f"class{i}" for i in range(5)})
    torch.manual_seed(seed)
    return redraw_weights_(model_class(config), seed, std=0.1)


def tiny_d_fine(seed: int = 0, points: int | list[int] = 4) -> nn.Module:
    """A tiny D-FINE: a small HGNetV2, 3 levels, 2 decoder layers, 20 queries, `points` per level."""
    from transformers import DFineConfig, DFineForObjectDetection

    return _tiny_d_fine_like(DFineConfig, DFineForObjectDetection, seed, points)


def tiny_deimv2(seed: int = 0, points: int | list[int] = 4) -> nn.Module:
    """A tiny DEIMv2, shaped as `tiny_d_fine`."""
    from transformers import Deimv2Config, Deimv2ForObjectDetection

    return _tiny_d_fine_like(Deimv2Config, Deimv2ForObjectDetection, seed, points)


def tiny_rt_detr(seed: int = 0) -> nn.Module:
    """A tiny RT-DETR: ResNet-ish backbone, 2 decoder layers, 20 queries, 5 classes (see `redraw_weights_`)."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig

    backbone = RTDetrResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = RTDetrConfig(backbone_config=backbone, d_model=32, encoder_hidden_dim=32, encoder_in_channels=[32, 64, 128],
                          encoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2, decoder_ffn_dim=64,
                          decoder_layers=2, num_queries=20, num_labels=5, num_denoising=0,
                          decoder_in_channels=[32, 32, 32], use_pretrained_backbone=False,
                          id2label={i: f"class{i}" for i in range(5)})
    torch.manual_seed(seed)
    return redraw_weights_(RTDetrForObjectDetection(config), seed, std=0.3)


class LogitsAndBoxes(nn.Module):
    """A transformers detector as (images -> logits, boxes), the module users export with plain torch.onnx."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        outputs = self.model(pixel_values=images)
        return outputs.logits, outputs.pred_boxes
