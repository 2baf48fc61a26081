"""DAB-DETR (Liu et al., "DAB-DETR: Dynamic Anchor Boxes are Better Queries for DETR", 2022), as
transformers' `DabDetrForObjectDetection`: the HF module runs as it is. It has no deformable attention,
so its export has no MSDA node.

Pre-processing: the DETR family's (shortest edge 800, longest 1333, ImageNet mean and std), so an
export needs --size HxW. Post-processing: DAB-DETR is trained with focal loss, so sigmoid over queries x
classes, the top 100 (`num_select`). DAB-DETR models load from HF directories only (`detrt export --hf DIR`).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..errors import InputError
from ..models.hf_wrapped import HFDetectorModel
from ..postprocess import postprocess_sigmoid_topk
from ..preprocess import PreprocessSpec
from . import Architecture, StateDict, register


def build(config: Any) -> nn.Module:
    raise InputError("DAB-DETR models load from a HuggingFace directory (`detrt export --hf DIR`, "
                     "`detrt.detectors.from_hf`), not from a bare checkpoint")


def postprocess(logits: Tensor, boxes: Tensor, image_sizes: Tensor, config: Any) -> tuple[Tensor, Tensor, Tensor]:
    return postprocess_sigmoid_topk(logits, boxes, image_sizes, config.num_select)


def hf_wrap(hf_model: nn.Module) -> tuple[nn.Module, dict[str, Any], PreprocessSpec]:
    """transformers' DAB-DETR -> (model, `DetectorConfig` fields, pre-processing)."""
    c = hf_model.config
    fields = dict(num_classes=c.num_labels, num_queries=c.num_queries, hidden_dim=c.hidden_size,
                  nheads=c.decoder_attention_heads, enc_layers=c.encoder_layers, dec_layers=c.decoder_layers,
                  dim_feedforward=c.decoder_ffn_dim)
    return HFDetectorModel(hf_model), fields, PreprocessSpec()


def owns(state: StateDict) -> bool:
    return False  # never a bare state dict (see `build`)


ARCHITECTURE = register(Architecture(
    name="dab_detr", title="DAB-DETR",
    defaults=dict(num_classes=91, num_queries=300),
    options=(), build=build, owns=owns, config_from_weights=lambda state, nheads: {}, postprocess=postprocess,
    hf_class="DabDetrForObjectDetection", hf_wrap=hf_wrap))
