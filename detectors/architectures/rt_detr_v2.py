"""RT-DETRv2 (Lv et al., "RT-DETRv2: Improved Baseline with Bag-of-Freebies for Real-Time Detection
Transformer", 2024), as transformers' `RTDetrV2ForObjectDetection`: the HF module runs as it is, its
sampling function through detrt's MSDA op (`models/hf_wrapped.py`, `replace_hf_sampling_v2`).

detrt's op takes one point count for every level and bilinear sampling, RT-DETRv2's default. A model
with a point count per level or the "discrete" method runs transformers' own sampling and exports as
the portable graph only (the plugin export is refused, naming the reason).

Pre- and post-processing are RT-DETR's: 640x640, pixels / 255, no mean or std; sigmoid over queries x
classes, the top `num_queries`. RT-DETRv2 models load from HF directories only (`detrt export --hf DIR`).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..errors import InputError
from ..models.hf_wrapped import HFDetectorModel, replace_hf_sampling_v2
from ..postprocess import postprocess_sigmoid_topk
from ..preprocess import PreprocessSpec
from . import Architecture, StateDict, register


def build(config: Any) -> nn.Module:
    raise InputError("RT-DETRv2 models load from a HuggingFace directory (`detrt export --hf DIR`, "
                     "`detrt.detectors.from_hf`), not from a bare checkpoint")


def postprocess(logits: Tensor, boxes: Tensor, image_sizes: Tensor, config: Any) -> tuple[Tensor, Tensor, Tensor]:
    return postprocess_sigmoid_topk(logits, boxes, image_sizes, config.num_queries)


def hf_wrap(hf_model: nn.Module) -> tuple[nn.Module, dict[str, Any], PreprocessSpec]:
    """transformers' RT-DETRv2 with detrt's MSDA -> (model, `DetectorConfig` fields, pre-processing)."""
    replace_hf_sampling_v2(hf_model)
    c = hf_model.config
    fields = dict(num_classes=c.num_labels, num_queries=c.num_queries, hidden_dim=c.d_model,
                  nheads=c.decoder_attention_heads, dec_layers=c.decoder_layers, dim_feedforward=c.decoder_ffn_dim,
                  dec_n_points=c.decoder_n_points)
    return HFDetectorModel(hf_model), fields, PreprocessSpec(fixed_size=(640, 640), mean=(0.0, 0.0, 0.0),
                                                              std=(1.0, 1.0, 1.0))


def owns(state: StateDict) -> bool:
    return False  # never a bare state dict (see `build`)


ARCHITECTURE = register(Architecture(
    name="rt_detr_v2", title="RT-DETRv2",
    defaults=dict(num_classes=80, num_queries=300, dim_feedforward=1024),
    options=(), build=build, owns=owns, config_from_weights=lambda state, nheads: {}, postprocess=postprocess,
    has_msda=True, hf_class="RTDetrV2ForObjectDetection", hf_wrap=hf_wrap,
    fp16_sampling_nodes=(
        "*/encoder_attn/sampling_offsets/*",    # offsets projection (MatMul + bias)
        "*/encoder_attn/Mul*",                  # * n_points scale * reference box size * offset scale
        "*/encoder_attn/Add*",                  # + reference box centre = sampling locations
    )))
