"""DETR (facebookresearch/detr): ResNet, post- or pre-norm transformer, softmax classes with "no object"."""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..models.backbone import build_backbone
from ..models.detr import DETR
from ..models.detr_transformer import Transformer
from ..checkpoints.hf import detr_decoder_state, put_attention, require_hf
from ..postprocess import postprocess_softmax
from ..checkpoints.infer_config import query_and_width, rows
from . import Architecture, StateDict, register


def build(c: Any) -> nn.Module:
    backbone = build_backbone(c.backbone, c.backbone_width, c.hidden_dim, c.position_embedding, c.dilation,
                              c.deformable_stages, (4,), sine_offset=0.0)
    transformer = Transformer(c.hidden_dim, c.nheads, c.enc_layers, c.dec_layers, c.dim_feedforward, c.dropout,
                              c.pre_norm)
    return DETR(backbone, transformer, c.num_classes, c.num_queries)


def owns(state_dict: StateDict) -> bool:
    return (any(key.startswith("transformer.decoder.layers.0.multihead_attn.") for key in state_dict)
            and not any(key.startswith("transformer.decoder.ref_point_head.") for key in state_dict))


def config_from_weights(state_dict: StateDict, nheads: int) -> dict[str, Any]:
    found = query_and_width(state_dict)
    classes = rows(state_dict, "class_embed.weight")
    if classes is not None:
        found["num_classes"] = classes - 1  # the "no object" logit
    found["pre_norm"] = "transformer.encoder.norm.weight" in state_dict
    return found


def postprocess(logits: Tensor, boxes: Tensor, image_sizes: Tensor, config: Any) -> tuple[Tensor, Tensor, Tensor]:
    return postprocess_softmax(logits, boxes, image_sizes)


def hf_config(c: Any) -> dict[str, Any]:
    require_hf(not c.auxiliary_loss, "auxiliary_loss=True, with which HF computes the decoder differently from the "
                                     "reference repositories; set model.config.auxiliary_loss = False if the model "
                                     "was trained without it")
    return {}


def _put_attentions(state: StateDict, prefix: str, layer: nn.Module) -> None:
    put_attention(state, f"{prefix}.self_attn", layer.self_attn)
    put_attention(state, f"{prefix}.multihead_attn", layer.encoder_attn)


def hf_state(hf_model: nn.Module, config: Any) -> StateDict:
    return detr_decoder_state(hf_model, _put_attentions)


ARCHITECTURE = register(Architecture(
    name="detr", title="DETR",
    defaults=dict(num_classes=91, num_queries=100, dim_feedforward=2048, num_feature_levels=1),
    options=("pre_norm",), build=build, owns=owns, config_from_weights=config_from_weights, postprocess=postprocess,
    hf_class="DetrForObjectDetection", hf_config=hf_config, hf_state=hf_state))
