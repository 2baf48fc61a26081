"""LW-DETR (Chen et al., "LW-DETR: A Transformer Replacement to YOLO for Real-Time Detection", 2024), as
transformers' `LwDetrForObjectDetection`: the HF module runs as it is (windowed ViT backbone, projector,
group-DETR decoder), its deformable sampling through detrt's MSDA op (`models/hf_wrapped.py`).

Pre-processing: 640x640, the size LW-DETR is trained at, with ImageNet mean and std (transformers
pre-processes LW-DETR with `DeformableDetrImageProcessor`'s normalisation). Post-processing as that
processor does it: sigmoid over queries x classes, the top 100. LW-DETR models load from HF
directories only (`detrt export --hf DIR`).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..errors import InputError
from ..models.hf_wrapped import HFDetectorModel, replace_hf_sampling
from ..postprocess import postprocess_sigmoid_topk
from ..preprocess import PreprocessSpec
from . import Architecture, StateDict, register


def build(config: Any) -> nn.Module:
    raise InputError("LW-DETR models load from a HuggingFace directory (`detrt export --hf DIR`, "
                     "`detrt.detectors.from_hf`), not from a bare checkpoint")


def postprocess(logits: Tensor, boxes: Tensor, image_sizes: Tensor, config: Any) -> tuple[Tensor, Tensor, Tensor]:
    return postprocess_sigmoid_topk(logits, boxes, image_sizes, config.num_select)


def hf_wrap(hf_model: nn.Module) -> tuple[nn.Module, dict[str, Any], PreprocessSpec]:
    """transformers' LW-DETR with detrt's MSDA -> (model, `DetectorConfig` fields, pre-processing)."""
    replace_hf_sampling(hf_model)
    c = hf_model.config
    fields = dict(num_classes=c.num_labels, num_queries=c.num_queries, hidden_dim=c.d_model,
                  nheads=c.decoder_cross_attention_heads, dec_layers=c.decoder_layers,
                  dim_feedforward=c.decoder_ffn_dim, dec_n_points=c.decoder_n_points)
    return HFDetectorModel(hf_model), fields, PreprocessSpec(fixed_size=(640, 640))


def owns(state: StateDict) -> bool:
    return False  # never a bare state dict (see `build`)


ARCHITECTURE = register(Architecture(
    name="lw_detr", title="LW-DETR",
    defaults=dict(num_classes=80, num_queries=300, dim_feedforward=2048),
    options=(), build=build, owns=owns, config_from_weights=lambda state, nheads: {}, postprocess=postprocess,
    has_msda=True, hf_class="LwDetrForObjectDetection", hf_wrap=hf_wrap,
    fp16_sampling_nodes=(
        "*/cross_attn/sampling_offsets/*",      # offsets projection (MatMul + bias)
        "*/cross_attn/Div*",                    # offsets / P
        "*/cross_attn/Mul*",                    # * reference box size * 0.5
        "*/cross_attn/Add*",                    # + reference box centre = sampling locations
    )))
