"""The encoder-decoder transformer of DETR (post-norm by default, pre-norm as an option).

Tensors are sequence-first, (length, batch, channels), as in the reference implementation.
The encoder is shared with Conditional DETR.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import clones, with_pos_embed


class TransformerEncoderLayer(nn.Module):
    """Self-attention + FFN, each with a residual and LayerNorm (after, or before with pre_norm)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))

    def forward(self, src: Tensor, key_padding_mask: Tensor, pos: Tensor) -> Tensor:
        if self.pre_norm:
            src2 = self.norm1(src)
            q = k = with_pos_embed(src2, pos)
            src = src + self.dropout1(self.self_attn(q, k, value=src2, key_padding_mask=key_padding_mask)[0])
            return src + self.dropout2(self._ffn(self.norm2(src)))
        q = k = with_pos_embed(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, value=src, key_padding_mask=key_padding_mask)[0]))
        return self.norm2(src + self.dropout2(self._ffn(src)))


class TransformerEncoder(nn.Module):
    """A stack of encoder layers, with a final LayerNorm in the pre-norm variant."""

    def __init__(self, layer: nn.Module, num_layers: int, norm: nn.Module | None) -> None:
        super().__init__()
        self.layers = clones(layer, num_layers)
        self.norm = norm

    def forward(self, src: Tensor, key_padding_mask: Tensor, pos: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, key_padding_mask, pos)
        return src if self.norm is None else self.norm(src)


class TransformerDecoderLayer(nn.Module):
    """Self-attention over queries, cross-attention to the memory, FFN."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        if self.pre_norm:
            tgt2 = self.norm1(tgt)
            q = k = with_pos_embed(tgt2, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(q, k, value=tgt2)[0])
            tgt2 = self.norm2(tgt)
            tgt = tgt + self.dropout2(self.multihead_attn(with_pos_embed(tgt2, query_pos), with_pos_embed(memory, pos),
                                                          value=memory, key_padding_mask=memory_key_padding_mask)[0])
            return tgt + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(self.norm3(tgt))))))
        q = k = with_pos_embed(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, value=tgt)[0]))
        tgt = self.norm2(tgt + self.dropout2(self.multihead_attn(with_pos_embed(tgt, query_pos), with_pos_embed(memory, pos),
                                                                 value=memory, key_padding_mask=memory_key_padding_mask)[0]))
        return self.norm3(tgt + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))


class TransformerDecoder(nn.Module):
    """A stack of decoder layers followed by a LayerNorm; returns every layer's normalised output."""

    def __init__(self, layer: nn.Module, num_layers: int, d_model: int) -> None:
        super().__init__()
        self.layers = clones(layer, num_layers)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, memory: Tensor, memory_key_padding_mask: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        outputs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_key_padding_mask, pos, query_pos)
            outputs.append(self.norm(tgt))
        return torch.stack(outputs)


class Transformer(nn.Module):
    """DETR's transformer: (N, C, H, W) features + queries -> (layers, N, Q, C) decoder states."""

    def __init__(self, d_model: int, nhead: int, num_encoder_layers: int, num_decoder_layers: int,
                 dim_feedforward: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.d_model = d_model
        self.encoder = TransformerEncoder(
            TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, pre_norm), num_encoder_layers,
            nn.LayerNorm(d_model) if pre_norm else None)
        self.decoder = TransformerDecoder(
            TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, pre_norm), num_decoder_layers, d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: Tensor, mask: Tensor, query_embed: Tensor, pos_embed: Tensor) -> Tensor:
        n = src.shape[0]
        src = src.flatten(2).permute(2, 0, 1)
        pos_embed = pos_embed.flatten(2).permute(2, 0, 1)
        query_pos = query_embed.unsqueeze(1).repeat(1, n, 1)
        mask = mask.flatten(1)
        memory = self.encoder(src, mask, pos_embed)
        hs = self.decoder(torch.zeros_like(query_pos), memory, mask, pos_embed, query_pos)
        return hs.transpose(1, 2)
