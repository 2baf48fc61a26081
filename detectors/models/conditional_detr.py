"""Conditional DETR: DETR whose cross-attention splits each head into a content and a spatial part.

The spatial query is a sine embedding of a reference point (predicted once from the query
embedding) scaled by a learned function of the decoder state; boxes are predicted relative to it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import Joiner
from .detr_transformer import TransformerEncoder, TransformerEncoderLayer
from .inputs import default_mask
from .layers import MLP, inverse_sigmoid
from .position_encoding import interleave_sin_cos, sine_frequencies


class ConditionalAttention(nn.Module):
    """Multi-head attention on already projected q, k, v (sequence-first), then `out_proj`.

    q and k have `embed_dim` channels, v has `vdim`; the softmax scale is (embed_dim / heads) ** -0.5.
    """

    def __init__(self, embed_dim: int, num_heads: int, vdim: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scaling = (embed_dim // num_heads) ** -0.5
        self.out_proj = nn.Linear(vdim, vdim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        lq, n, _ = query.shape
        lk, _, vdim = value.shape
        h = self.num_heads
        q = (query * self.scaling).reshape(lq, n * h, -1).transpose(0, 1)
        k = key.reshape(lk, n * h, -1).transpose(0, 1)
        v = value.reshape(lk, n * h, -1).transpose(0, 1)
        logits = torch.bmm(q, k.transpose(1, 2))
        if key_padding_mask is not None:
            logits = logits.view(n, h, lq, lk).masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
            logits = logits.view(n * h, lq, lk)
        out = torch.bmm(self.dropout(F.softmax(logits, dim=-1)), v)
        return self.out_proj(out.transpose(0, 1).reshape(lq, n, vdim))


class ConditionalDecoderLayer(nn.Module):
    """Self-attention with separate content/position projections, conditional cross-attention, FFN."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, is_first: bool) -> None:
        super().__init__()
        for name in ("sa_qcontent_proj", "sa_qpos_proj", "sa_kcontent_proj", "sa_kpos_proj", "sa_v_proj",
                     "ca_qcontent_proj", "ca_kcontent_proj", "ca_kpos_proj", "ca_v_proj", "ca_qpos_sine_proj"):
            setattr(self, name, nn.Linear(d_model, d_model))
        self.ca_qpos_proj = nn.Linear(d_model, d_model) if is_first else None
        self.self_attn = ConditionalAttention(d_model, nhead, d_model, dropout)
        self.cross_attn = ConditionalAttention(d_model * 2, nhead, d_model, dropout)
        self.nhead = nhead
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def _split_heads_and_concat(self, content: Tensor, spatial: Tensor) -> Tensor:
        """(L, N, C) content and spatial parts -> (L, N, 2C), concatenated per head."""
        length, n, c = content.shape
        head = c // self.nhead
        return torch.cat([content.view(length, n, self.nhead, head), spatial.view(length, n, self.nhead, head)],
                         dim=3).view(length, n, 2 * c)

    def forward(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Tensor, pos: Tensor,
                query_pos: Tensor, query_sine_embed: Tensor) -> Tensor:
        q = self.sa_qcontent_proj(tgt) + self.sa_qpos_proj(query_pos)
        k = self.sa_kcontent_proj(tgt) + self.sa_kpos_proj(query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, self.sa_v_proj(tgt))))

        q = self.ca_qcontent_proj(tgt)
        k = self.ca_kcontent_proj(memory)
        k_pos = self.ca_kpos_proj(pos)
        if self.ca_qpos_proj is not None:
            q = q + self.ca_qpos_proj(query_pos)
            k = k + k_pos
        q = self._split_heads_and_concat(q, self.ca_qpos_sine_proj(query_sine_embed))
        k = self._split_heads_and_concat(k, k_pos)
        tgt2 = self.cross_attn(q, k, self.ca_v_proj(memory), key_padding_mask=memory_key_padding_mask)
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        return self.norm3(tgt + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))


def sine_embed_of_points(points: Tensor, d_model: int) -> Tensor:
    """(..., 2) points in [0, 1] -> (..., d_model) sine embedding, y features first."""
    dim_t = sine_frequencies(d_model // 2, 10000.0, points.device)
    pos_x = interleave_sin_cos(points[..., 0, None] * (2 * math.pi) / dim_t)
    pos_y = interleave_sin_cos(points[..., 1, None] * (2 * math.pi) / dim_t)
    return torch.cat((pos_y, pos_x), dim=-1)


class ConditionalDecoder(nn.Module):
    """Decoder layers with a reference point per query and a learned scaling of its embedding."""

    def __init__(self, d_model: int, nhead: int, num_layers: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ConditionalDecoderLayer(d_model, nhead, dim_feedforward, dropout, i == 0)
                                    for i in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.query_scale = MLP(d_model, d_model, d_model, 2)
        self.ref_point_head = MLP(d_model, d_model, 2, 2)
        self.d_model = d_model

    def forward(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Tensor, pos: Tensor,
                query_pos: Tensor) -> tuple[Tensor, Tensor]:
        reference_points = self.ref_point_head(query_pos).sigmoid()  # (Q, N, 2)
        center_embed = sine_embed_of_points(reference_points, self.d_model)
        outputs = []
        for layer_id, layer in enumerate(self.layers):
            query_sine_embed = center_embed if layer_id == 0 else center_embed * self.query_scale(tgt)
            tgt = layer(tgt, memory, memory_key_padding_mask, pos, query_pos, query_sine_embed)
            outputs.append(self.norm(tgt))
        return torch.stack(outputs), reference_points.transpose(0, 1)


class ConditionalTransformer(nn.Module):
    """DETR's encoder + the conditional decoder: -> (layers, N, Q, C) states, (N, Q, 2) reference points."""

    def __init__(self, d_model: int, nhead: int, num_encoder_layers: int, num_decoder_layers: int,
                 dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.d_model = d_model
        self.encoder = TransformerEncoder(
            TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, pre_norm=False), num_encoder_layers, None)
        self.decoder = ConditionalDecoder(d_model, nhead, num_decoder_layers, dim_feedforward, dropout)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, mask: Tensor, query_embed: Tensor, pos_embed: Tensor) -> tuple[Tensor, Tensor]:
        n = src.shape[0]
        src = src.flatten(2).permute(2, 0, 1)
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)
        query_pos = query_embed.unsqueeze(1).repeat(1, n, 1)
        mask = mask.flatten(1)
        memory = self.encoder(src, mask, pos_embed)
        hs, reference = self.decoder(torch.zeros_like(query_pos), memory, mask, pos_embed, query_pos)
        return hs.transpose(1, 2), reference


class ConditionalDETR(nn.Module):
    """`model(images, mask)` -> {"pred_logits": (N, Q, num_classes), "pred_boxes": (N, Q, 4) cxcywh}."""

    def __init__(self, backbone: Joiner, transformer: ConditionalTransformer, num_classes: int, num_queries: int) -> None:
        super().__init__()
        hidden_dim = transformer.d_model
        self.transformer = transformer
        self.class_embed = nn.Linear(hidden_dim, num_classes)
        nn.init.constant_(self.class_embed.bias, -math.log((1 - 0.01) / 0.01))
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = nn.Conv2d(backbone.num_channels[-1], hidden_dim, kernel_size=1)
        self.backbone = backbone

    def forward(self, images: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        features, pos = self.backbone(images, default_mask(images, mask))
        src, src_mask = features[-1]
        hs, reference = self.transformer(self.input_proj(src), src_mask, self.query_embed.weight, pos[-1])
        last = hs[-1]
        box = self.bbox_embed(last)
        box = torch.cat([box[..., :2] + inverse_sigmoid(reference), box[..., 2:]], dim=-1)
        return {"pred_logits": self.class_embed(last), "pred_boxes": box.sigmoid()}
