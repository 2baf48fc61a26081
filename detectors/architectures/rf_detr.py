"""RF-DETR (Robinson et al., Roboflow, 2025), as transformers' `RfDetrForObjectDetection`: the HF module
runs as it is (windowed DINOv2 backbone, projector, LW-DETR-style decoder), its deformable sampling
through detrt's MSDA op (`models/hf_wrapped.py`).

The backbone resizes its position embeddings to the input with antialiased bicubic interpolation,
which the ONNX exporter cannot express. That table depends only on the input size, so `FixedSizePositions`
keeps the one computed for the export size (the export runs the model once at that size before
tracing) and the graph holds it as a constant; a traced size never seen eagerly is refused.

Pre-processing: `RfDetrImageProcessor`'s defaults (shortest edge 800, longest 1333, ImageNet mean
and std), padded to a multiple of the backbone's window grid; exports need --size HxW (a multiple of
patch size x windows). Post-processing as that processor does it: sigmoid over queries x classes, the
top `num_queries`. RF-DETR models load from HF directories only (`detrt export --hf DIR`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..models.hf_wrapped import replace_hf_sampling
from ..preprocess import PreprocessSpec
from . import hf_architecture, register
from .lw_detr import LW_DETR_SAMPLING_NODES, lw_detr_fields


class FixedSizePositions:
    """Stands in for a backbone embedding's `interpolate_pos_encoding(embeddings, height, width)`:
    computed by the original in eager runs and kept per size; while tracing, the kept table."""

    def __init__(self, original: Callable[[Tensor, int, int], Tensor]) -> None:
        self.original = original
        self.tables: dict[tuple[int, int, torch.dtype, str], Tensor] = {}

    def __call__(self, embeddings: Tensor, height: int, width: int) -> Tensor:
        key = (int(height), int(width), embeddings.dtype, str(embeddings.device))
        if torch.jit.is_tracing():
            if key not in self.tables:
                raise InputError(f"RF-DETR's position table for {height}x{width} inputs was never computed: run the "
                                 "model once at that size before tracing (detrt export does)")
            return self.tables[key]
        table = self.original(embeddings, height, width).detach()
        self.tables[key] = table
        return table


def prepare(hf_model: nn.Module) -> None:
    """detrt's MSDA, and position tables kept per size (`FixedSizePositions`)."""
    replace_hf_sampling(hf_model)
    for module in [m for m in hf_model.modules() if hasattr(m, "interpolate_pos_encoding")]:
        module.interpolate_pos_encoding = FixedSizePositions(module.interpolate_pos_encoding)


def preprocess(c: Any) -> PreprocessSpec:
    return PreprocessSpec(pad_to=c.backbone_config.patch_size * c.backbone_config.num_windows)


ARCHITECTURE = register(hf_architecture(
    name="rf_detr", title="RF-DETR", hf_class="RfDetrForObjectDetection",
    defaults=dict(num_classes=80, num_queries=300, dim_feedforward=2048),
    prepare=prepare, fields=lw_detr_fields, preprocess=preprocess, top_k="num_queries",
    fp16_sampling_nodes=LW_DETR_SAMPLING_NODES))
