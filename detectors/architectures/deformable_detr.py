"""Deformable DETR (fundamentalvision/Deformable-DETR): multi-scale deformable attention, optional
iterative box refinement and two-stage proposals, sigmoid top-k."""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..checkpoints.hf import put, put_attention, put_ffn
from ..checkpoints.infer_config import rows
from ..errors import InputError
from ..models.backbone import build_backbone
from ..models.deformable_detr import DeformableDETR
from ..models.deformable_transformer import DeformableTransformer
from ..postprocess import postprocess_sigmoid_topk
from . import Architecture, StateDict, register


def build(c: Any) -> nn.Module:
    return_stages = (2, 3, 4) if c.num_feature_levels > 1 else (4,)
    backbone = build_backbone(c.backbone, c.backbone_width, c.hidden_dim, c.position_embedding, c.dilation,
                              c.deformable_stages, return_stages, sine_offset=-0.5)
    transformer = DeformableTransformer(c.hidden_dim, c.nheads, c.enc_layers, c.dec_layers, c.dim_feedforward,
                                        c.dropout, c.num_feature_levels, c.dec_n_points, c.enc_n_points,
                                        c.two_stage, c.num_queries)
    return DeformableDETR(backbone, transformer, c.num_classes, c.num_queries, c.num_feature_levels,
                          c.with_box_refine, c.two_stage)


def owns(state_dict: StateDict) -> bool:
    return "transformer.level_embed" in state_dict


def config_from_weights(state_dict: StateDict, nheads: int) -> dict[str, Any]:
    found: dict[str, Any] = {}
    level_embed = state_dict.get("transformer.level_embed")
    if level_embed is not None:
        found["num_feature_levels"], found["hidden_dim"] = (int(s) for s in level_embed.shape)
    queries = rows(state_dict, "query_embed.weight")
    if queries is not None:
        found["num_queries"] = queries
    classes = rows(state_dict, "class_embed.0.weight")
    if classes is not None:
        found["num_classes"] = classes
    found["with_box_refine"] = any(key.startswith("transformer.decoder.bbox_embed.") for key in state_dict)
    found["two_stage"] = "transformer.enc_output.weight" in state_dict
    levels = found.get("num_feature_levels")
    for field, key in (("enc_n_points", "transformer.encoder.layers.0.self_attn.attention_weights.weight"),
                       ("dec_n_points", "transformer.decoder.layers.0.cross_attn.attention_weights.weight")):
        weights = rows(state_dict, key)
        if weights is not None and levels:
            if weights % (nheads * levels):
                raise InputError(f"{key} has {weights} rows, not a multiple of nheads ({nheads}) x levels ({levels}): "
                                 "pass the right nheads=")
            found[field] = weights // (nheads * levels)
    return found


def check(c: Any) -> list[str]:
    problems = []
    if c.num_feature_levels == 2 or c.num_feature_levels < 1:
        problems.append(f"num_feature_levels must be 1 (C5 only) or at least 3 (C3-C5 plus extra levels), "
                        f"got {c.num_feature_levels}")
    if c.two_stage and not c.with_box_refine:
        problems.append("two_stage needs with_box_refine (as in the reference configurations)")
    if c.hidden_dim % 32:
        problems.append(f"hidden_dim {c.hidden_dim} must be a multiple of 32 (GroupNorm(32) in input_proj)")
    return problems


def postprocess(logits: Tensor, boxes: Tensor, image_sizes: Tensor, config: Any) -> tuple[Tensor, Tensor, Tensor]:
    return postprocess_sigmoid_topk(logits, boxes, image_sizes, config.num_select)


def hf_config(c: Any) -> dict[str, Any]:
    fields = dict(num_feature_levels=c.num_feature_levels, enc_n_points=c.encoder_n_points,
                  dec_n_points=c.decoder_n_points, with_box_refine=c.with_box_refine, two_stage=c.two_stage)
    if c.two_stage:  # HF decodes two_stage_num_proposals queries; the reference decodes num_queries
        fields["num_queries"] = c.two_stage_num_proposals
    return fields


def hf_state(hf_model: nn.Module, config: Any) -> StateDict:
    state: StateDict = {}
    base = hf_model.model
    put(state, "input_proj", base.input_proj)
    state["transformer.level_embed"] = base.level_embed.detach()
    if config.two_stage:
        for name in ("enc_output", "enc_output_norm", "pos_trans", "pos_trans_norm"):
            put(state, f"transformer.{name}", getattr(base, name))
    else:
        put(state, "query_embed", base.query_position_embeddings)
        put(state, "transformer.reference_points", base.reference_points)
    for i, layer in enumerate(base.encoder.layers):
        prefix = f"transformer.encoder.layers.{i}"
        put(state, f"{prefix}.self_attn", layer.self_attn)
        put(state, f"{prefix}.norm1", layer.self_attn_layer_norm)
        put_ffn(state, prefix, layer)
        put(state, f"{prefix}.norm2", layer.final_layer_norm)
    for i, layer in enumerate(base.decoder.layers):
        prefix = f"transformer.decoder.layers.{i}"
        put_attention(state, f"{prefix}.self_attn", layer.self_attn)
        put(state, f"{prefix}.norm2", layer.self_attn_layer_norm)  # the reference's decoder norm order
        put(state, f"{prefix}.cross_attn", layer.encoder_attn)
        put(state, f"{prefix}.norm1", layer.encoder_attn_layer_norm)
        put_ffn(state, prefix, layer)
        put(state, f"{prefix}.norm3", layer.final_layer_norm)
    _put_heads(state, hf_model, config)
    return state


def _put_heads(state: StateDict, hf_model: nn.Module, config: Any) -> None:
    """class_embed.i / bbox_embed.i (+ the decoder's aliases) from the copies HF's forward uses.

    HF predicts the final boxes with `bbox_embed[L-1]` from references refined by the decoder's
    `bbox_embed[0..L-2]`, and the two-stage proposals with the decoder's heads at index L.
    """
    last = config.dec_layers - 1
    decoder = hf_model.model.decoder
    if not config.with_box_refine:  # one shared head in the reference; HF's output uses the last one
        class_heads = [hf_model.class_embed[last]] * config.dec_layers
        box_heads = [hf_model.bbox_embed[last]] * config.dec_layers
    else:
        class_heads = list(hf_model.class_embed[:last + 1])
        box_heads = list(decoder.bbox_embed[:last]) + [hf_model.bbox_embed[last]]
    if config.two_stage:
        class_heads.append(decoder.class_embed[last + 1])
        box_heads.append(decoder.bbox_embed[last + 1])
    for i, (class_head, box_head) in enumerate(zip(class_heads, box_heads)):
        put(state, f"class_embed.{i}", class_head)
        put(state, f"bbox_embed.{i}", box_head)
        if config.with_box_refine:
            put(state, f"transformer.decoder.bbox_embed.{i}", box_head)
        if config.two_stage:
            put(state, f"transformer.decoder.class_embed.{i}", class_head)


ARCHITECTURE = register(Architecture(
    name="deformable_detr", title="Deformable DETR",
    defaults=dict(num_classes=91, num_queries=300, dim_feedforward=1024, num_feature_levels=4),
    options=("num_feature_levels", "with_box_refine", "two_stage"),
    build=build, owns=owns, config_from_weights=config_from_weights, check=check, postprocess=postprocess,
    has_msda=True, hf_class="DeformableDetrForObjectDetection", hf_config=hf_config, hf_state=hf_state,
    fp16_sampling_nodes=(
        "*/sampling_offsets/*",                 # offsets projection (MatMul + bias)
        "*/encoder/layers.*/self_attn/Div",     # offsets / level (W, H)
        "*/encoder/layers.*/self_attn/Add",     # + reference points = sampling locations
        "*/decoder/layers.*/cross_attn/Div",
        "*/decoder/layers.*/cross_attn/Add",
        "*/reference_points/*",
    ),
    fp16_box_nodes=(
        "*bbox_embed*/layers.2/*",              # the box delta, added to inverse_sigmoid(reference)
        "/model/transformer/decoder/Add*",      # refinement: delta + inverse_sigmoid(reference)
        "/model/Add*",
    )))
