"""RT-DETR (Zhao et al., "DETRs Beat YOLOs on Real-time Object Detection", 2024), as transformers'
`RTDetrForObjectDetection`: the HF module runs as it is, its deformable sampling through detrt's
MSDA op (`models/hf_wrapped.py`), so it exports with our plugin node or as the portable graph.

Pre-processing is RT-DETR's image processor's: 640x640, pixels / 255, no mean or std. Post-processing
is its own: sigmoid over queries x classes, the top `num_queries`, boxes cxcywh -> xyxy. RT-DETRv2,
D-FINE and DEIMv2 share both (and `rt_detr_fields`) from here.
"""
from __future__ import annotations

from typing import Any

from ..models.hf_wrapped import replace_hf_sampling
from ..preprocess import PreprocessSpec
from . import hf_architecture, register

RT_DETR_PREPROCESS = PreprocessSpec(fixed_size=(640, 640), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
# Under /hf_model/ (`HFDetectorModel`), so that no other family's nodes match.
RT_DETR_SAMPLING_NODES = (
    "*/hf_model/*/encoder_attn/sampling_offsets/*",  # offsets projection (MatMul + bias)
    "*/hf_model/*/encoder_attn/Div*",                # offsets / P
    "*/hf_model/*/encoder_attn/Mul*",                # * (points scale) * reference box size * (offset scale)
    "*/hf_model/*/encoder_attn/Add*",                # + reference box centre = sampling locations
)


def rt_detr_fields(c: Any) -> dict[str, Any]:
    """`DetectorConfig` fields of an RT-DETR-like HF config."""
    return dict(num_classes=c.num_labels, num_queries=c.num_queries, hidden_dim=c.d_model,
                nheads=c.decoder_attention_heads, dec_layers=c.decoder_layers, dim_feedforward=c.decoder_ffn_dim)


ARCHITECTURE = register(hf_architecture(
    name="rt_detr", title="RT-DETR", hf_class="RTDetrForObjectDetection",
    defaults=dict(num_classes=80, num_queries=300, dim_feedforward=1024),
    prepare=replace_hf_sampling, fields=rt_detr_fields, preprocess=lambda c: RT_DETR_PREPROCESS, top_k="num_queries",
    fp16_sampling_nodes=RT_DETR_SAMPLING_NODES))
