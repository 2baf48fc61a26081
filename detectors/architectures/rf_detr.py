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
from ..models.hf_wrapped import HFDetectorModel, replace_hf_sampling
from ..postprocess import postprocess_sigmoid_topk
from ..preprocess import PreprocessSpec
from . import Architecture, StateDict, register


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


def build(config: Any) -> nn.Module:
    raise InputError("RF-DETR models load from a HuggingFace directory (`detrt export --hf DIR`, "
                     "`detrt.detectors.from_hf`), not from a bare checkpoint")


def postprocess(logits: Tensor, boxes: Tensor, image_sizes: Tensor, config: Any) -> tuple[Tensor, Tensor, Tensor]:
    return postprocess_sigmoid_topk(logits, boxes, image_sizes, config.num_queries)


def hf_wrap(hf_model: nn.Module) -> tuple[nn.Module, dict[str, Any], PreprocessSpec]:
    """transformers' RF-DETR with detrt's MSDA and fixed-size position tables -> (model, fields, pre-processing)."""
    replace_hf_sampling(hf_model)
    embeddings = [m for m in hf_model.modules() if hasattr(m, "interpolate_pos_encoding")]
    for module in embeddings:
        module.interpolate_pos_encoding = FixedSizePositions(module.interpolate_pos_encoding)
    c = hf_model.config
    fields = dict(num_classes=c.num_labels, num_queries=c.num_queries, hidden_dim=c.d_model,
                  nheads=c.decoder_cross_attention_heads, dec_layers=c.decoder_layers,
                  dim_feedforward=c.decoder_ffn_dim, dec_n_points=c.decoder_n_points)
    grid = c.backbone_config.patch_size * c.backbone_config.num_windows
    return HFDetectorModel(hf_model), fields, PreprocessSpec(pad_to=grid)


def owns(state: StateDict) -> bool:
    return False  # never a bare state dict (see `build`)


ARCHITECTURE = register(Architecture(
    name="rf_detr", title="RF-DETR",
    defaults=dict(num_classes=80, num_queries=300, dim_feedforward=2048),
    options=(), build=build, owns=owns, config_from_weights=lambda state, nheads: {}, postprocess=postprocess,
    has_msda=True, hf_class="RfDetrForObjectDetection", hf_wrap=hf_wrap,
    fp16_sampling_nodes=(
        "*/cross_attn/sampling_offsets/*",      # offsets projection (MatMul + bias)
        "*/cross_attn/Div*",                    # offsets / P
        "*/cross_attn/Mul*",                    # * reference box size * 0.5
        "*/cross_attn/Add*",                    # + reference box centre = sampling locations
    )))
