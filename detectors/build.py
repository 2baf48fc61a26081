"""Build a detector module from a `DetectorConfig`."""
from __future__ import annotations

from torch import nn

from .backbone import build_backbone
from .conditional_detr import ConditionalDETR, ConditionalTransformer
from .config import DetectorConfig
from .deformable_detr import DeformableDETR
from .deformable_transformer import DeformableTransformer
from .detr import DETR
from .detr_transformer import Transformer
from .ms_deform_attn import MSDeformAttn


def build_model(config: DetectorConfig) -> nn.Module:
    """A randomly initialised detector in eval mode, with the reference repositories' module layout."""
    c = config
    if c.arch == "deformable_detr":
        return_stages = (2, 3, 4) if c.num_feature_levels > 1 else (4,)
        backbone = build_backbone(c.backbone, c.backbone_width, c.hidden_dim, c.position_embedding, c.dilation, c.deformable_stages,
                                  return_stages, sine_offset=-0.5)
        transformer = DeformableTransformer(c.hidden_dim, c.nheads, c.enc_layers, c.dec_layers, c.dim_feedforward,
                                            c.dropout, c.num_feature_levels, c.dec_n_points, c.enc_n_points,
                                            c.two_stage, c.num_queries)
        model: nn.Module = DeformableDETR(backbone, transformer, c.num_classes, c.num_queries, c.num_feature_levels,
                                          c.with_box_refine, c.two_stage)
    else:
        backbone = build_backbone(c.backbone, c.backbone_width, c.hidden_dim, c.position_embedding, c.dilation, c.deformable_stages,
                                  (4,), sine_offset=0.0)
        if c.arch == "detr":
            transformer = Transformer(c.hidden_dim, c.nheads, c.enc_layers, c.dec_layers, c.dim_feedforward,
                                      c.dropout, c.pre_norm)
            model = DETR(backbone, transformer, c.num_classes, c.num_queries)
        else:
            transformer = ConditionalTransformer(c.hidden_dim, c.nheads, c.enc_layers, c.dec_layers,
                                                 c.dim_feedforward, c.dropout)
            model = ConditionalDETR(backbone, transformer, c.num_classes, c.num_queries)
    return model.eval()


def set_msda_impl(model: nn.Module, impl: str) -> nn.Module:
    """Select the MSDA implementation ("reference" or "detrt") of every MSDeformAttn in `model`."""
    for module in model.modules():
        if isinstance(module, MSDeformAttn):
            module.impl = impl
    return model
