"""RT-DETRv2 (Lv et al., "RT-DETRv2: Improved Baseline with Bag-of-Freebies for Real-Time Detection
Transformer", 2024), as transformers' `RTDetrV2ForObjectDetection`: the HF module runs as it is, its
sampling function through detrt's MSDA op (`models/hf_wrapped.py`, `replace_hf_sampling_v2`).

detrt's op takes one point count for every level and bilinear sampling, RT-DETRv2's default. A model
with a point count per level or the "discrete" method runs transformers' own sampling and exports as
the portable graph only (the plugin export is refused, naming the reason). Pre- and post-processing
are RT-DETR's (`rt_detr.py`).
"""
from __future__ import annotations

from ..models.hf_wrapped import replace_hf_sampling_v2
from . import hf_architecture, register
from .rt_detr import RT_DETR_PREPROCESS, RT_DETR_SAMPLING_NODES, rt_detr_fields

ARCHITECTURE = register(hf_architecture(
    name="rt_detr_v2", title="RT-DETRv2", hf_class="RTDetrV2ForObjectDetection",
    defaults=dict(num_classes=80, num_queries=300, dim_feedforward=1024),
    prepare=replace_hf_sampling_v2, fields=rt_detr_fields, preprocess=lambda c: RT_DETR_PREPROCESS,
    top_k="num_queries", fp16_sampling_nodes=RT_DETR_SAMPLING_NODES))
