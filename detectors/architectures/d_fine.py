"""D-FINE (Peng et al., "D-FINE: Redefine Regression Task in DETRs as Fine-grained Distribution
Refinement", 2024), as transformers'
`DFineForObjectDetection`: the HF module runs as it is, its sampling function through detrt's MSDA op
(`models/hf_wrapped.py`, `replace_hf_sampling_v2`).

detrt's op takes one point count for every level. D-FINE's point counts may differ per level (D-FINE's
reference configurations use [3, 6, 3]): such a model runs transformers' own sampling and exports as the
portable graph only (the plugin export is refused, naming the reason).

Pre- and post-processing are those of transformers' `RTDetrImageProcessor`, which D-FINE uses:
640x640, pixels / 255, no mean or std; sigmoid over queries x classes, the top `num_queries`. D-FINE
models load from HF directories only (`detrt export --hf DIR`).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..errors import InputError
from ..models.hf_wrapped import HFDetectorModel, replace_hf_sampling_v2
from ..postprocess import postprocess_sigmoid_topk
from ..preprocess import PreprocessSpec
from . import Architecture, StateDict, register


def build(config: Any) -> nn.Module:
    raise InputError("D-FINE models load from a HuggingFace directory (`detrt export --hf DIR`, "
                     "`detrt.detectors.from_hf`), not from a bare checkpoint")


def postprocess(logits: Tensor, boxes: Tensor, image_sizes: Tensor, config: Any) -> tuple[Tensor, Tensor, Tensor]:
    return postprocess_sigmoid_topk(logits, boxes, image_sizes, config.num_queries)


def hf_wrap(hf_model: nn.Module) -> tuple[nn.Module, dict[str, Any], PreprocessSpec]:
    """transformers' D-FINE with detrt's MSDA -> (model, `DetectorConfig` fields, pre-processing)."""
    replace_hf_sampling_v2(hf_model)
    c = hf_model.config
    fields = dict(num_classes=c.num_labels, num_queries=c.num_queries, hidden_dim=c.d_model,
                  nheads=c.decoder_attention_heads, dec_layers=c.decoder_layers, dim_feedforward=c.decoder_ffn_dim)
    return HFDetectorModel(hf_model), fields, PreprocessSpec(fixed_size=(640, 640), mean=(0.0, 0.0, 0.0),
                                                              std=(1.0, 1.0, 1.0))


def owns(state: StateDict) -> bool:
    return False  # never a bare state dict (see `build`)


ARCHITECTURE = register(Architecture(
    name="d_fine", title="D-FINE",
    defaults=dict(num_classes=80, num_queries=300, dim_feedforward=1024),
    options=(), build=build, owns=owns, config_from_weights=lambda state, nheads: {}, postprocess=postprocess,
    has_msda=True, hf_class="DFineForObjectDetection", hf_wrap=hf_wrap,
    fp16_sampling_nodes=(
        "*/encoder_attn/sampling_offsets/*",    # offsets projection (MatMul + bias)
        "*/encoder_attn/Mul*",                  # * points scale * reference box size * offset scale
        "*/encoder_attn/Add*",                  # + reference box centre = sampling locations
    )))
