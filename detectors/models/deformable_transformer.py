"""The deformable transformer of Deformable DETR: MSDA encoder over all levels, MSDA decoder.

Supports iterative box refinement (the decoder gets per-layer box heads) and the two-stage
variant (encoder proposals become the decoder's queries and reference boxes).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import clones, inverse_sigmoid, with_pos_embed
from .ms_deform_attn import MSDeformAttn
from .position_encoding import interleave_sin_cos, sine_frequencies


class DeformableEncoderLayer(nn.Module):
    """MSDA self-attention over every level -> norm1 -> FFN -> norm2."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Tensor, reference_points: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, padding_mask: Tensor) -> Tensor:
        src2 = self.self_attn(with_pos_embed(src, pos), reference_points, src, spatial_shapes, level_start_index,
                              padding_mask)
        src = self.norm1(src + self.dropout1(src2))
        return self.norm2(src + self.dropout3(self.linear2(self.dropout2(F.relu(self.linear1(src))))))


def encoder_reference_points(spatial_shapes: list[tuple[int, int]], valid_ratios: Tensor) -> Tensor:
    """Pixel centres of every level, normalised by each image's valid area: (N, S, L, 2)."""
    device = valid_ratios.device
    points = []
    for level, (h, w) in enumerate(spatial_shapes):
        ref_y, ref_x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                                      torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                                      indexing="ij")
        ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * h)
        ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * w)
        points.append(torch.stack((ref_x, ref_y), -1))
    return torch.cat(points, 1)[:, :, None] * valid_ratios[:, None]


class DeformableEncoder(nn.Module):
    """A stack of deformable encoder layers."""

    def __init__(self, layer: DeformableEncoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = clones(layer, num_layers)

    def forward(self, src: Tensor, spatial_shapes: Tensor, shapes: list[tuple[int, int]], level_start_index: Tensor,
                valid_ratios: Tensor, pos: Tensor, padding_mask: Tensor) -> Tensor:
        reference_points = encoder_reference_points(shapes, valid_ratios)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return src


class DeformableDecoderLayer(nn.Module):
    """Self-attention (q = k = tgt + query_pos) -> norm2 -> MSDA cross-attention -> norm1 -> FFN -> norm3."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, query_pos: Tensor, reference_points: Tensor, src: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, padding_mask: Tensor) -> Tensor:
        q = k = with_pos_embed(tgt, query_pos)
        tgt2 = self.self_attn(q.transpose(0, 1), k.transpose(0, 1), tgt.transpose(0, 1))[0].transpose(0, 1)
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.cross_attn(with_pos_embed(tgt, query_pos), reference_points, src, spatial_shapes,
                               level_start_index, padding_mask)
        tgt = self.norm1(tgt + self.dropout1(tgt2))
        return self.norm3(tgt + self.dropout4(self.linear2(self.dropout3(F.relu(self.linear1(tgt))))))


class DeformableDecoder(nn.Module):
    """Decoder layers; with `bbox_embed` set (box refinement) each layer refines the reference boxes.

    Returns the states of every layer (layers, N, Q, C) and the reference points each layer
    produced (layers, N, Q, 2 or 4).
    """

    def __init__(self, layer: DeformableDecoderLayer, num_layers: int) -> None:
        super().__init__()
        self.layers = clones(layer, num_layers)
        self.num_layers = num_layers
        self.bbox_embed: nn.ModuleList | None = None  # set by DeformableDETR for box refinement
        self.class_embed: nn.ModuleList | None = None  # set by DeformableDETR for the two-stage variant

    def forward(self, tgt: Tensor, reference_points: Tensor, src: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, valid_ratios: Tensor, query_pos: Tensor,
                padding_mask: Tensor) -> tuple[Tensor, Tensor]:
        states, references = [], []
        for layer_id, layer in enumerate(self.layers):
            if reference_points.shape[-1] == 4:
                reference_input = reference_points[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            else:
                reference_input = reference_points[:, :, None] * valid_ratios[:, None]
            tgt = layer(tgt, query_pos, reference_input, src, spatial_shapes, level_start_index, padding_mask)
            if self.bbox_embed is not None:
                delta = self.bbox_embed[layer_id](tgt)
                if reference_points.shape[-1] == 4:
                    refined = delta + inverse_sigmoid(reference_points)
                else:
                    refined = torch.cat([delta[..., :2] + inverse_sigmoid(reference_points), delta[..., 2:]], -1)
                reference_points = refined.sigmoid().detach()
            states.append(tgt)
            references.append(reference_points)
        return torch.stack(states), torch.stack(references)


def valid_ratio(mask: Tensor) -> Tensor:
    """(N, H, W) padding mask -> (N, 2) fraction of valid width and height."""
    _, h, w = mask.shape
    valid_h = torch.sum(~mask[:, :, 0], 1)
    valid_w = torch.sum(~mask[:, 0, :], 1)
    return torch.stack([valid_w.float() / w, valid_h.float() / h], -1)


def proposal_pos_embed(proposals: Tensor, num_pos_feats: int = 128) -> Tensor:
    """(N, K, 4) unactivated boxes -> (N, K, 4 * num_pos_feats) sine embedding of their sigmoid."""
    dim_t = sine_frequencies(num_pos_feats, 10000.0, proposals.device)
    pos = proposals.sigmoid()[:, :, :, None] * (2 * math.pi) / dim_t
    return interleave_sin_cos(pos).flatten(2)


class DeformableTransformer(nn.Module):
    """Flattens the levels, runs encoder and decoder: see `forward`."""

    def __init__(self, d_model: int, nhead: int, num_encoder_layers: int, num_decoder_layers: int,
                 dim_feedforward: int, dropout: float, num_feature_levels: int, dec_n_points: int,
                 enc_n_points: int, two_stage: bool, two_stage_num_proposals: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.two_stage = two_stage
        self.two_stage_num_proposals = two_stage_num_proposals
        self.encoder = DeformableEncoder(
            DeformableEncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points),
            num_encoder_layers)
        self.decoder = DeformableDecoder(
            DeformableDecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead, dec_n_points),
            num_decoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        if two_stage:
            self.enc_output = nn.Linear(d_model, d_model)
            self.enc_output_norm = nn.LayerNorm(d_model)
            self.pos_trans = nn.Linear(d_model * 2, d_model * 2)
            self.pos_trans_norm = nn.LayerNorm(d_model * 2)
        else:
            self.reference_points = nn.Linear(d_model, 2)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module._reset_parameters()
        if not self.two_stage:
            nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
            nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    def encoder_proposals(self, memory: Tensor, padding_mask: Tensor,
                          shapes: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """Two-stage: one proposal box per encoder position, and the memory projected for the heads."""
        n = memory.shape[0]
        proposals, start = [], 0
        for level, (h, w) in enumerate(shapes):
            mask_l = padding_mask[:, start:start + h * w].view(n, h, w)
            valid_h = torch.sum(~mask_l[:, :, 0], 1)
            valid_w = torch.sum(~mask_l[:, 0, :], 1)
            grid_y, grid_x = torch.meshgrid(torch.linspace(0, h - 1, h, dtype=torch.float32, device=memory.device),
                                            torch.linspace(0, w - 1, w, dtype=torch.float32, device=memory.device),
                                            indexing="ij")
            grid = torch.cat([grid_x.unsqueeze(-1), grid_y.unsqueeze(-1)], -1)
            scale = torch.cat([valid_w.unsqueeze(-1), valid_h.unsqueeze(-1)], 1).view(n, 1, 1, 2)
            grid = (grid.unsqueeze(0).expand(n, -1, -1, -1) + 0.5) / scale
            wh = torch.ones_like(grid) * 0.05 * (2.0 ** level)
            proposals.append(torch.cat((grid, wh), -1).view(n, -1, 4))
            start += h * w
        proposals_xy = torch.cat(proposals, 1)
        valid = ((proposals_xy > 0.01) & (proposals_xy < 0.99)).all(-1, keepdim=True)
        proposals_unact = torch.log(proposals_xy / (1 - proposals_xy))
        proposals_unact = proposals_unact.masked_fill(padding_mask.unsqueeze(-1), float("inf"))
        proposals_unact = proposals_unact.masked_fill(~valid, float("inf"))
        output_memory = memory.masked_fill(padding_mask.unsqueeze(-1), 0.0).masked_fill(~valid, 0.0)
        return self.enc_output_norm(self.enc_output(output_memory)), proposals_unact

    def forward(self, srcs: list[Tensor], masks: list[Tensor], pos_embeds: list[Tensor],
                query_embed: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """-> decoder states (layers, N, Q, C), initial reference points, per-layer reference points,
        and for two-stage the encoder's class logits and unactivated boxes (else None, None)."""
        shapes = [(int(src.shape[2]), int(src.shape[3])) for src in srcs]
        src_flatten = torch.cat([src.flatten(2).transpose(1, 2) for src in srcs], 1)
        mask_flatten = torch.cat([mask.flatten(1) for mask in masks], 1)
        pos_flatten = torch.cat([pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1)
                                 for level, pos in enumerate(pos_embeds)], 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=src_flatten.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([valid_ratio(mask) for mask in masks], 1)

        memory = self.encoder(src_flatten, spatial_shapes, shapes, level_start_index, valid_ratios, pos_flatten,
                              mask_flatten)

        n, _, c = memory.shape
        enc_class = enc_coord_unact = None
        if self.two_stage:
            output_memory, proposals = self.encoder_proposals(memory, mask_flatten, shapes)
            enc_class = self.decoder.class_embed[self.decoder.num_layers](output_memory)
            enc_coord_unact = self.decoder.bbox_embed[self.decoder.num_layers](output_memory) + proposals
            topk = torch.topk(enc_class[..., 0], self.two_stage_num_proposals, dim=1)[1]
            topk_coords_unact = torch.gather(enc_coord_unact, 1, topk.unsqueeze(-1).repeat(1, 1, 4)).detach()
            reference_points = topk_coords_unact.sigmoid()
            pos_trans = self.pos_trans_norm(self.pos_trans(proposal_pos_embed(topk_coords_unact, c // 2)))
            query_pos, tgt = torch.split(pos_trans, c, dim=2)
        else:
            query_pos, tgt = torch.split(query_embed, c, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(n, -1, -1)
            tgt = tgt.unsqueeze(0).expand(n, -1, -1)
            reference_points = self.reference_points(query_pos).sigmoid()

        states, references = self.decoder(tgt, reference_points, memory, spatial_shapes, level_start_index,
                                          valid_ratios, query_pos, mask_flatten)
        return states, reference_points, references, enc_class, enc_coord_unact
