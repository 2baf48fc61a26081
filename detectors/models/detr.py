"""DETR: a ResNet, a transformer and set-prediction heads (softmax classes, sigmoid boxes)."""
from __future__ import annotations

from torch import Tensor, nn

from .backbone import Joiner
from .detr_transformer import Transformer
from .inputs import default_mask
from .layers import MLP


class DETR(nn.Module):
    """`model(images, mask)` -> {"pred_logits": (N, Q, num_classes + 1), "pred_boxes": (N, Q, 4) cxcywh}."""

    def __init__(self, backbone: Joiner, transformer: Transformer, num_classes: int, num_queries: int) -> None:
        super().__init__()
        hidden_dim = transformer.d_model
        self.transformer = transformer
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = nn.Conv2d(backbone.num_channels[-1], hidden_dim, kernel_size=1)
        self.backbone = backbone

    def forward(self, images: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        features, pos = self.backbone(images, default_mask(images, mask))
        src, src_mask = features[-1]
        hs = self.transformer(self.input_proj(src), src_mask, self.query_embed.weight, pos[-1])[-1]
        return {"pred_logits": self.class_embed(hs), "pred_boxes": self.bbox_embed(hs).sigmoid()}
