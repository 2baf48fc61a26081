"""DAB-DETR (Liu et al., "DAB-DETR: Dynamic Anchor Boxes are Better Queries for DETR", 2022), as
transformers' `DabDetrForObjectDetection`: the HF module runs as it is. It has no deformable attention,
so its export has no MSDA node.

Pre-processing: the DETR family's (shortest edge 800, longest 1333, ImageNet mean and std), so an
export needs --size HxW. Post-processing: DAB-DETR is trained with focal loss, so sigmoid over queries x
classes, the top 100 (`num_select`).
"""
from __future__ import annotations

from ..preprocess import PreprocessSpec
from . import hf_architecture, register

ARCHITECTURE = register(hf_architecture(
    name="dab_detr", title="DAB-DETR", hf_class="DabDetrForObjectDetection",
    defaults=dict(num_classes=91, num_queries=300),
    prepare=lambda hf_model: None, has_msda=False,
    fields=lambda c: dict(num_classes=c.num_labels, num_queries=c.num_queries, hidden_dim=c.hidden_size,
                          nheads=c.decoder_attention_heads, enc_layers=c.encoder_layers,
                          dec_layers=c.decoder_layers, dim_feedforward=c.decoder_ffn_dim),
    preprocess=lambda c: PreprocessSpec()))
