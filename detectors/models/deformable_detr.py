"""Deformable DETR: multi-level features, deformable transformer, sigmoid class and box heads.

Head layout as in the reference repository: `class_embed.{i}` / `bbox_embed.{i}` for each
decoder layer (plus the encoder head at index `dec_layers` for two-stage). Without box
refinement they are one shared module listed once per layer; with it they are independent and
`transformer.decoder.bbox_embed` aliases them.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .backbone import Joiner, resize_mask
from .deformable_transformer import DeformableTransformer
from .inputs import default_mask
from .layers import MLP, clones, inverse_sigmoid


def _input_projections(in_channels: list[int], num_feature_levels: int, hidden_dim: int) -> nn.ModuleList:
    """1x1 conv + GroupNorm per backbone level; extra levels are 3x3 stride-2 convs on the last one."""
    projections = [nn.Sequential(nn.Conv2d(c, hidden_dim, kernel_size=1), nn.GroupNorm(32, hidden_dim))
                   for c in in_channels]
    channels = in_channels[-1]
    for _ in range(num_feature_levels - len(in_channels)):
        projections.append(nn.Sequential(nn.Conv2d(channels, hidden_dim, kernel_size=3, stride=2, padding=1),
                                         nn.GroupNorm(32, hidden_dim)))
        channels = hidden_dim
    for projection in projections:
        nn.init.xavier_uniform_(projection[0].weight, gain=1)
        nn.init.constant_(projection[0].bias, 0)
    return nn.ModuleList(projections)


class DeformableDETR(nn.Module):
    """`model(images, mask)` -> {"pred_logits": (N, Q, num_classes), "pred_boxes": (N, Q, 4) cxcywh}."""

    def __init__(self, backbone: Joiner, transformer: DeformableTransformer, num_classes: int, num_queries: int,
                 num_feature_levels: int, with_box_refine: bool, two_stage: bool) -> None:
        super().__init__()
        hidden_dim = transformer.d_model
        self.num_queries = num_queries
        self.num_feature_levels = num_feature_levels
        self.with_box_refine = with_box_refine
        self.two_stage = two_stage
        self.transformer = transformer
        self.backbone = backbone
        if not two_stage:
            self.query_embed = nn.Embedding(num_queries, hidden_dim * 2)
        self.input_proj = _input_projections(backbone.num_channels, num_feature_levels, hidden_dim)

        class_embed = nn.Linear(hidden_dim, num_classes)
        nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))
        bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        nn.init.constant_(bbox_embed.layers[-1].weight, 0)
        nn.init.constant_(bbox_embed.layers[-1].bias, 0)
        num_pred = transformer.decoder.num_layers + (1 if two_stage else 0)
        if with_box_refine:
            self.class_embed = clones(class_embed, num_pred)
            self.bbox_embed = clones(bbox_embed, num_pred)
            nn.init.constant_(self.bbox_embed[0].layers[-1].bias[2:], -2.0)
            transformer.decoder.bbox_embed = self.bbox_embed
        else:
            nn.init.constant_(bbox_embed.layers[-1].bias[2:], -2.0)
            self.class_embed = nn.ModuleList([class_embed] * num_pred)
            self.bbox_embed = nn.ModuleList([bbox_embed] * num_pred)
        if two_stage:
            transformer.decoder.class_embed = self.class_embed
            for box_embed in self.bbox_embed:
                nn.init.constant_(box_embed.layers[-1].bias[2:], 0.0)

    def forward(self, images: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        mask = default_mask(images, mask)
        features, pos = self.backbone(images, mask)
        srcs = [self.input_proj[level](feature) for level, (feature, _) in enumerate(features)]
        masks = [feature_mask for _, feature_mask in features]
        for level in range(len(srcs), self.num_feature_levels):
            src = self.input_proj[level](features[-1][0] if level == len(features) else srcs[-1])
            level_mask = resize_mask(mask, src.shape[-2:])
            srcs.append(src)
            masks.append(level_mask)
            pos.append(self.backbone[1](level_mask).to(src.dtype))

        query_embed = None if self.two_stage else self.query_embed.weight
        states, init_reference, references, enc_class, enc_coord_unact = self.transformer(srcs, masks, pos, query_embed)
        last = states.shape[0] - 1
        outputs = self._layer_outputs(states, init_reference, references, last)
        if self.training:  # auxiliary outputs of every other decoder layer (and the encoder), for the losses
            outputs["aux_outputs"] = [self._layer_outputs(states, init_reference, references, layer)
                                      for layer in range(last)]
            if self.two_stage:
                outputs["enc_outputs"] = {"pred_logits": enc_class, "pred_boxes": enc_coord_unact.sigmoid()}
        return outputs

    def _layer_outputs(self, states: Tensor, init_reference: Tensor, references: Tensor, layer: int) -> dict[str, Tensor]:
        """Class logits and boxes predicted from decoder layer `layer`, relative to its input reference."""
        reference = inverse_sigmoid(init_reference if layer == 0 else references[layer - 1])
        delta = self.bbox_embed[layer](states[layer])
        if reference.shape[-1] == 4:
            boxes = delta + reference
        else:
            boxes = torch.cat([delta[..., :2] + reference, delta[..., 2:]], -1)
        return {"pred_logits": self.class_embed[layer](states[layer]), "pred_boxes": boxes.sigmoid()}
