"""Conditional DETR (Atten4Vis/ConditionalDETR): DETR with conditional cross-attention, sigmoid top-k."""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..models.backbone import build_backbone
from ..models.conditional_detr import ConditionalDETR, ConditionalTransformer
from ..checkpoints.hf import detr_decoder_state, put
from ..postprocess import postprocess_sigmoid_topk
from ..checkpoints.infer_config import query_and_width, rows
from . import Architecture, StateDict, register
from .detr import hf_config


def build(c: Any) -> nn.Module:
    backbone = build_backbone(c.backbone, c.backbone_width, c.hidden_dim, c.position_embedding, c.dilation,
                              c.deformable_stages, (4,), sine_offset=0.0)
    transformer = ConditionalTransformer(c.hidden_dim, c.nheads, c.enc_layers, c.dec_layers, c.dim_feedforward,
                                         c.dropout)
    return ConditionalDETR(backbone, transformer, c.num_classes, c.num_queries)


def owns(state_dict: StateDict) -> bool:
    return any(key.startswith("transformer.decoder.ref_point_head.") for key in state_dict)


def config_from_weights(state_dict: StateDict, nheads: int) -> dict[str, Any]:
    found = query_and_width(state_dict)
    classes = rows(state_dict, "class_embed.weight")
    if classes is not None:
        found["num_classes"] = classes
    return found


def postprocess(logits: Tensor, boxes: Tensor, image_sizes: Tensor, config: Any) -> tuple[Tensor, Tensor, Tensor]:
    return postprocess_sigmoid_topk(logits, boxes, image_sizes, config.num_select)


_PROJECTIONS = {  # HF (attention module, projection) -> reference decoder layer attribute
    ("self_attn", "q_content_proj"): "sa_qcontent_proj",
    ("self_attn", "q_pos_proj"): "sa_qpos_proj",
    ("self_attn", "k_content_proj"): "sa_kcontent_proj",
    ("self_attn", "k_pos_proj"): "sa_kpos_proj",
    ("self_attn", "v_proj"): "sa_v_proj",
    ("self_attn", "o_proj"): "self_attn.out_proj",
    ("encoder_attn", "q_content_proj"): "ca_qcontent_proj",
    ("encoder_attn", "q_pos_proj"): "ca_qpos_proj",  # first layer only; None in the others
    ("encoder_attn", "k_content_proj"): "ca_kcontent_proj",
    ("encoder_attn", "k_pos_proj"): "ca_kpos_proj",
    ("encoder_attn", "v_proj"): "ca_v_proj",
    ("encoder_attn", "q_pos_sine_proj"): "ca_qpos_sine_proj",
    ("encoder_attn", "o_proj"): "cross_attn.out_proj",
}


def _put_attentions(state: StateDict, prefix: str, layer: nn.Module) -> None:
    for (attention, projection), target in _PROJECTIONS.items():
        module = getattr(getattr(layer, attention), projection)
        if module is not None:
            put(state, f"{prefix}.{target}", module)


def hf_state(hf_model: nn.Module, config: Any) -> StateDict:
    state = detr_decoder_state(hf_model, _put_attentions)
    decoder = hf_model.model.decoder
    put(state, "transformer.decoder.query_scale", decoder.query_scale)
    put(state, "transformer.decoder.ref_point_head", decoder.ref_point_head)
    return state


ARCHITECTURE = register(Architecture(
    name="conditional_detr", title="Conditional DETR",
    defaults=dict(num_classes=91, num_queries=300, dim_feedforward=2048, num_feature_levels=1),
    options=(), build=build, owns=owns, config_from_weights=config_from_weights, postprocess=postprocess,
    hf_class="ConditionalDetrForObjectDetection", hf_config=hf_config, hf_state=hf_state))
