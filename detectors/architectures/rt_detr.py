"""RT-DETR (Zhao et al., "DETRs Beat YOLOs on Real-time Object Detection", 2024), as transformers'
`RTDetrForObjectDetection`: the HF module runs as it is, its deformable sampling through detrt's
MSDA op (`models/hf_wrapped.py`), so it exports with our plugin node or as the portable graph.

Pre-processing is RT-DETR's image processor's: 640x640, pixels / 255, no mean or std. Post-processing
is its own: sigmoid over queries x classes, the top `num_queries` (k) of them, boxes cxcywh -> xyxy.
RT-DETR models load from HF directories only (`detrt export --hf DIR`); detrt has no RT-DETR
implementation of its own to load a bare state dict into.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..errors import InputError
from ..models.hf_wrapped import HFDetectorModel, replace_hf_sampling
from ..postprocess import postprocess_sigmoid_topk
from ..preprocess import PreprocessSpec
from . import Architecture, StateDict, register

IMAGE_SIZE = (640, 640)  # RTDetrImageProcessor's default size


def build(config: Any) -> nn.Module:
    raise InputError("RT-DETR models load from a HuggingFace directory (`detrt export --hf DIR`, "
                     "`detrt.detectors.from_hf`), not from a bare checkpoint")


def postprocess(logits: Tensor, boxes: Tensor, image_sizes: Tensor, config: Any) -> tuple[Tensor, Tensor, Tensor]:
    return postprocess_sigmoid_topk(logits, boxes, image_sizes, config.num_queries)


def hf_wrap(hf_model: nn.Module) -> tuple[nn.Module, dict[str, Any], PreprocessSpec]:
    """transformers' RT-DETR with detrt's MSDA -> (model, `DetectorConfig` fields, pre-processing)."""
    replace_hf_sampling(hf_model)
    c = hf_model.config
    fields = dict(num_classes=c.num_labels, num_queries=c.num_queries, hidden_dim=c.d_model,
                  nheads=c.decoder_attention_heads, dec_layers=c.decoder_layers, dim_feedforward=c.decoder_ffn_dim,
                  dec_n_points=c.decoder_n_points)
    return HFDetectorModel(hf_model), fields, PreprocessSpec(fixed_size=IMAGE_SIZE, mean=(0.0, 0.0, 0.0),
                                                              std=(1.0, 1.0, 1.0))


def owns(state: StateDict) -> bool:
    return False  # never a bare state dict (see `build`)


ARCHITECTURE = register(Architecture(
    name="rt_detr", title="RT-DETR",
    defaults=dict(num_classes=80, num_queries=300, dim_feedforward=1024),
    options=(), build=build, owns=owns, config_from_weights=lambda state, nheads: {}, postprocess=postprocess,
    has_msda=True, hf_class="RTDetrForObjectDetection", hf_wrap=hf_wrap,
    fp16_sampling_nodes=(
        "*/encoder_attn/sampling_offsets/*",    # offsets projection (MatMul + bias)
        "*/encoder_attn/Div*",                  # offsets / P
        "*/encoder_attn/Mul*",                  # * reference box size * 0.5
        "*/encoder_attn/Add*",                  # + reference box centre = sampling locations
    )))
