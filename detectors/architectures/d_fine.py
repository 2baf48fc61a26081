"""D-FINE (Peng et al., "D-FINE: Redefine Regression Task in DETRs as Fine-grained Distribution
Refinement", 2024), as transformers'
`DFineForObjectDetection`: the HF module runs as it is, its sampling function through detrt's MSDA op
(`models/hf_wrapped.py`, `replace_hf_sampling_v2`).

detrt's op takes one point count for every level. D-FINE's point counts may differ per level (D-FINE's
reference configurations use [3, 6, 3]): such a model runs transformers' own sampling and exports as the
portable graph only (the plugin export is refused, naming the reason). Pre- and post-processing are
those of transformers' `RTDetrImageProcessor`, which D-FINE uses (`rt_detr.py`).
"""
from __future__ import annotations

from ..models.hf_wrapped import replace_hf_sampling_v2
from . import hf_architecture, register
from .rt_detr import RT_DETR_PREPROCESS, RT_DETR_SAMPLING_NODES, rt_detr_fields

ARCHITECTURE = register(hf_architecture(
    name="d_fine", title="D-FINE", hf_class="DFineForObjectDetection",
    defaults=dict(num_classes=80, num_queries=300, dim_feedforward=1024),
    prepare=replace_hf_sampling_v2, fields=rt_detr_fields, preprocess=lambda c: RT_DETR_PREPROCESS,
    top_k="num_queries", fp16_sampling_nodes=RT_DETR_SAMPLING_NODES))
