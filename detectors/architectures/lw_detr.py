"""LW-DETR (Chen et al., "LW-DETR: A Transformer Replacement to YOLO for Real-Time Detection", 2024), as
transformers' `LwDetrForObjectDetection`: the HF module runs as it is (windowed ViT backbone, projector,
group-DETR decoder), its deformable sampling through detrt's MSDA op (`models/hf_wrapped.py`).

Pre-processing: 640x640, the size LW-DETR is trained at, with ImageNet mean and std (transformers
pre-processes LW-DETR with `DeformableDetrImageProcessor`'s normalisation). Post-processing as that
processor does it: sigmoid over queries x classes, the top 100. RF-DETR shares `lw_detr_fields`.
"""
from __future__ import annotations

from typing import Any

from ..models.hf_wrapped import replace_hf_sampling
from ..preprocess import PreprocessSpec
from . import hf_architecture, register

# Under /hf_model/ (`HFDetectorModel`): Deformable DETR's decoder names its nodes cross_attn too.
LW_DETR_SAMPLING_NODES = (
    "*/hf_model/*/cross_attn/sampling_offsets/*",  # offsets projection (MatMul + bias)
    "*/hf_model/*/cross_attn/Div*",                # offsets / P
    "*/hf_model/*/cross_attn/Mul*",                # * reference box size * 0.5
    "*/hf_model/*/cross_attn/Add*",                # + reference box centre = sampling locations
)


def lw_detr_fields(c: Any) -> dict[str, Any]:
    """`DetectorConfig` fields of an LW-DETR-like HF config."""
    return dict(num_classes=c.num_labels, num_queries=c.num_queries, hidden_dim=c.d_model,
                nheads=c.decoder_cross_attention_heads, dec_layers=c.decoder_layers,
                dim_feedforward=c.decoder_ffn_dim)


ARCHITECTURE = register(hf_architecture(
    name="lw_detr", title="LW-DETR", hf_class="LwDetrForObjectDetection",
    defaults=dict(num_classes=80, num_queries=300, dim_feedforward=2048),
    prepare=replace_hf_sampling, fields=lw_detr_fields, preprocess=lambda c: PreprocessSpec(fixed_size=(640, 640)),
    fp16_sampling_nodes=LW_DETR_SAMPLING_NODES))
