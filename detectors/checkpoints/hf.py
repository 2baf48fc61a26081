"""Convert HuggingFace `transformers` detectors of the registered families (`Architecture.hf_class`).

`hf_to_reference` reads the HF config into a `DetectorConfig` and walks the HF modules, as the
installed transformers (5.x) lays them out, to fill a state dict in the layout of the reference
repositories. Walking modules rather than renaming keys keeps the mapping independent of how HF
names its checkpoint keys; a module HF does not have raises a clear error instead of a silent miss.
Projections HF keeps separate (q/k/v) are packed into `nn.MultiheadAttention`'s `in_proj_*`.

This module holds what the families share (the backbone, the config fields every family has, the
layer-copying helpers); each family's own config fields and modules are in its registry entry
(`Architecture.hf_config`, `Architecture.hf_state`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import architectures
from ..config import DetectorConfig
from ..detector import Detector
from ..errors import DetrtError, MissingFileError
from ..preprocess import PreprocessSpec
from .loader import detector_from_state_dict

_RESNET_OF_LAYOUT = {  # (HF ResNet layer_type, depths) -> torchvision ResNet
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
}
_RESNET_WIDTHS = {"basic": [64, 128, 256, 512], "bottleneck": [256, 512, 1024, 2048]}
_TIMM_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")

StateDict = dict[str, Tensor]


class UnsupportedHFModelError(DetrtError, ValueError):
    """A HuggingFace model, or an option of one, that has no equivalent in the reference layout."""


def from_hf(model_or_dir: nn.Module | str | os.PathLike) -> Detector:
    """A `Detector` from a HF `*ForObjectDetection` module or a directory saved by `save_pretrained`.

    DETR, Conditional and Deformable DETR are converted to detrt's own models, with the HF DETR image
    processors' pre-processing (shortest edge 800, longest 1333, ImageNet mean/std: `PreprocessSpec()`).
    Families registered with `hf_wrap` (RT-DETR, ...) run as transformers' module with detrt's MSDA, with
    their family's pre-processing. A directory's `preprocessor_config.json`, where there is one, sets
    the size, mean and std instead (`processor_preprocess`).
    """
    hf_model = load_hf_model(model_or_dir)
    architecture = architectures.of_hf_class(type(hf_model).__name__)
    if architecture is not None and architecture.hf_wrap is not None:  # run as transformers' own module
        model, fields, preprocess = architecture.hf_wrap(hf_model.eval())
        return Detector(model, DetectorConfig.for_arch(architecture.name, **fields),
                        processor_preprocess(model_or_dir, preprocess), hf_class_names(hf_model.config))
    config, state_dict, class_names = hf_to_reference(hf_model)
    return detector_from_state_dict(state_dict, config, class_names=class_names,
                                    preprocess=processor_preprocess(model_or_dir, PreprocessSpec()),
                                    what=f"state dict converted from HF {config.arch}")


def processor_preprocess(model_or_dir: nn.Module | str | os.PathLike, default: PreprocessSpec) -> PreprocessSpec:
    """`default` with the size, mean and std of the directory's `preprocessor_config.json` (transformers'
    image processor settings), if it has one; a module, or a directory without one, keeps `default`."""
    path = None if isinstance(model_or_dir, nn.Module) else Path(model_or_dir) / "preprocessor_config.json"
    if path is None or not path.is_file():
        return default
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UnsupportedHFModelError(f"{path} is not readable JSON ({error}); fix or remove it") from None
    if settings.get("do_rescale", True) is False or abs(settings.get("rescale_factor", 1 / 255) - 1 / 255) > 1e-9:
        raise UnsupportedHFModelError(f"{path} does not scale pixels by 1/255 (do_rescale, rescale_factor); detrt's "
                                      "pre-processing always does")
    size = settings.get("size") or {}
    changes: dict = {}
    if "height" in size and "width" in size:
        changes["fixed_size"] = (int(size["height"]), int(size["width"]))
    elif "shortest_edge" in size:
        changes.update(fixed_size=None, shortest_edge=int(size["shortest_edge"]),
                       longest_edge=int(size.get("longest_edge") or default.longest_edge))
    if settings.get("do_normalize", True) is False:
        changes.update(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    elif "image_mean" in settings and "image_std" in settings:
        changes.update(mean=_per_channel(settings["image_mean"]), std=_per_channel(settings["image_std"]))
    return dataclasses.replace(default, **changes)


def _per_channel(value: object) -> tuple[float, float, float]:
    values = value if isinstance(value, (list, tuple)) else [value] * 3
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def load_hf_model(model_or_dir: nn.Module | str | os.PathLike) -> nn.Module:
    """The module itself, or the model saved in a local directory (read offline)."""
    if isinstance(model_or_dir, nn.Module):
        return model_or_dir
    path = Path(model_or_dir)
    if not (path / "config.json").is_file():
        raise MissingFileError(f"{path} is not a directory saved by save_pretrained (no config.json)")
    from transformers import AutoConfig, AutoModelForObjectDetection

    hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
    classes = [name for name in (hf_config.architectures or []) if architectures.of_hf_class(name) is None]
    if classes or not hf_config.architectures:
        raise UnsupportedHFModelError(
            f"{path} holds a {', '.join(classes) or hf_config.model_type} model; only {', '.join(convertible())} "
            "can be converted")
    return AutoModelForObjectDetection.from_pretrained(path, local_files_only=True)


@torch.no_grad()
def hf_to_reference(hf_model: nn.Module) -> tuple[DetectorConfig, StateDict, list[str]]:
    """(config, state dict in the reference repositories' layout, class names) of a HF detector."""
    architecture = architectures.of_hf_class(type(hf_model).__name__)
    if architecture is None:
        raise UnsupportedHFModelError(
            f"cannot convert a {type(hf_model).__name__}; only {', '.join(convertible())} can be converted")
    import transformers

    if int(transformers.__version__.split(".")[0]) < 5:
        raise UnsupportedHFModelError(f"transformers {transformers.__version__} is installed; the converter reads "
                                      "the configs and module layout of transformers 5.x")
    config = detector_config(hf_model.config, architecture)
    try:
        state = _backbone_state(hf_model.model, config)
        state.update(architecture.hf_state(hf_model, config))
    except AttributeError as error:  # a later transformers that lays the modules out differently
        raise UnsupportedHFModelError(
            f"this {type(hf_model).__name__} (transformers {transformers.__version__}) does not have the module "
            f"layout of transformers 5.x that the converter reads: {error}") from error
    return config, state, hf_class_names(hf_model.config)


def convertible() -> list[str]:
    """The transformers classes `from_hf` converts."""
    return [a.hf_class for a in architectures.all_architectures() if a.hf_class]


def hf_class_names(hf_config: object) -> list[str]:
    """Label names in class-index order, from `id2label`."""
    id2label = {int(k): str(v) for k, v in hf_config.id2label.items()}
    if sorted(id2label) != list(range(len(id2label))):
        raise UnsupportedHFModelError(f"id2label keys must be 0..{len(id2label) - 1}, got {sorted(id2label)}")
    return [id2label[i] for i in range(len(id2label))]


# ----------------------------------------------------------------------------- configuration


def detector_config(hf_config: object, architecture: architectures.Architecture) -> DetectorConfig:
    """The `DetectorConfig` equivalent to a HF config of `architecture`'s family."""
    c = hf_config
    require_hf(c.activation_function == "relu", f"activation_function {c.activation_function!r} (only 'relu')")
    require_hf(c.num_channels == 3, f"num_channels {c.num_channels} (only RGB, 3)")
    require_hf(c.encoder_attention_heads == c.decoder_attention_heads,
               f"different encoder/decoder heads ({c.encoder_attention_heads}/{c.decoder_attention_heads})")
    require_hf(c.encoder_ffn_dim == c.decoder_ffn_dim,
               f"different encoder/decoder FFN sizes ({c.encoder_ffn_dim}/{c.decoder_ffn_dim})")
    require_hf(c.position_embedding_type in ("sine", "learned"),
               f"position_embedding_type {c.position_embedding_type!r}")
    backbone, dilation = backbone_name(c, architecture)
    fields = dict(num_classes=len(c.id2label), hidden_dim=c.d_model, nheads=c.encoder_attention_heads,
                  enc_layers=c.encoder_layers, dec_layers=c.decoder_layers, dim_feedforward=c.encoder_ffn_dim,
                  dropout=c.dropout, backbone=backbone, dilation=dilation,
                  position_embedding=c.position_embedding_type, num_queries=c.num_queries)
    fields.update(architecture.hf_config(c))
    return DetectorConfig.for_arch(architecture.name, **fields)


def backbone_name(hf_config: object, architecture: architectures.Architecture) -> tuple[str, bool]:
    """(torchvision ResNet name, DC5 dilation) of the HF backbone; anything else is unsupported."""
    backbone = hf_config.backbone_config
    kind = getattr(backbone, "model_type", None)
    if kind == "resnet":
        name = _hf_resnet_name(backbone)
        stages = [int(feature.removeprefix("stage")) for feature in backbone.out_features]
        dilation = False  # HF's own ResNet has no dilation: HF ignores `dilation` with it
    elif kind == "timm_backbone":
        name = backbone.backbone.removeprefix("timm/").split(".")[0]
        require_hf(name in _TIMM_RESNETS, f"timm backbone {backbone.backbone!r} (only {', '.join(_TIMM_RESNETS)})")
        stages = [int(index) % 5 for index in backbone.out_indices]  # timm ResNet features: stem, layer1..4
        require_hf(backbone.output_stride in (None, 32, 16), f"timm output_stride {backbone.output_stride}")
        dilation = backbone.output_stride == 16
    else:
        raise UnsupportedHFModelError(f"backbone {kind!r}: only a ResNet-18/34/50/101 (HF ResNet or timm) maps to "
                                      "the reference backbone")
    multi_scale = "num_feature_levels" in architecture.options
    _check_stages(stages, multi_scale, getattr(hf_config, "num_feature_levels", 1))
    return name, dilation


def _hf_resnet_name(backbone: object) -> str:
    """The torchvision ResNet that a HF ResNet config describes exactly."""
    layout = (backbone.layer_type, tuple(backbone.depths))
    name = _RESNET_OF_LAYOUT.get(layout)
    require_hf(name is not None, f"HF ResNet with {backbone.layer_type} layers of depths {list(backbone.depths)} "
                               f"(only those of {', '.join(_RESNET_OF_LAYOUT.values())})")
    for field, value, expected in (("hidden_sizes", list(backbone.hidden_sizes), _RESNET_WIDTHS[backbone.layer_type]),
                                   ("embedding_size", backbone.embedding_size, 64),
                                   ("hidden_act", backbone.hidden_act, "relu"),
                                   ("downsample_in_first_stage", backbone.downsample_in_first_stage, False),
                                   ("downsample_in_bottleneck", backbone.downsample_in_bottleneck, False)):
        require_hf(value == expected, f"HF ResNet {field}={value!r} ({name} needs {expected!r})")
    return name


def _check_stages(stages: list[int], multi_scale: bool, num_feature_levels: int) -> None:
    """The reference models read stage 4 (DETR, Conditional DETR, single-scale) or stages 2-4."""
    if not multi_scale:
        require_hf(stages[-1] == 4, f"backbone output stages {stages} (the last must be stage 4)")
    elif num_feature_levels == 1:
        require_hf(stages == [4], f"backbone output stages {stages} with 1 feature level (needs [4])")
    else:
        require_hf(stages == [2, 3, 4] and num_feature_levels >= 3,
                 f"backbone output stages {stages} with {num_feature_levels} feature levels "
                 "(needs stages [2, 3, 4] and at least 3 levels)")


def require_hf(condition: bool, unsupported: str) -> None:
    """Raise UnsupportedHFModelError naming `unsupported` unless `condition`."""
    if not condition:
        raise UnsupportedHFModelError(f"unsupported HF option: {unsupported}")


# ----------------------------------------------------------------------------- weights


def put(state: StateDict, prefix: str, module: nn.Module) -> None:
    """Every tensor of `module`'s own state dict, under `prefix`."""
    for name, tensor in module.state_dict().items():
        state[f"{prefix}.{name}"] = tensor


def put_attention(state: StateDict, prefix: str, attention: nn.Module) -> None:
    """HF q/k/v/o projections -> nn.MultiheadAttention's packed in_proj and out_proj."""
    projections = (attention.q_proj, attention.k_proj, attention.v_proj)
    state[f"{prefix}.in_proj_weight"] = torch.cat([p.weight for p in projections])
    state[f"{prefix}.in_proj_bias"] = torch.cat([p.bias for p in projections])
    put(state, f"{prefix}.out_proj", attention.o_proj)


def put_ffn(state: StateDict, prefix: str, layer: nn.Module) -> None:
    """HF mlp.fc1 / mlp.fc2 -> linear1 / linear2."""
    put(state, f"{prefix}.linear1", layer.mlp.fc1)
    put(state, f"{prefix}.linear2", layer.mlp.fc2)


def _backbone_state(hf_base: nn.Module, config: DetectorConfig) -> StateDict:
    """backbone.0.body.* from the HF ResNet (or timm ResNet), backbone.1.* for learned positions."""
    state: StateDict = {}
    body = hf_base.backbone.model
    if hasattr(body, "embedder"):  # HF ResNet
        put_hf_resnet(state, "backbone.0.body", body)
    else:  # timm ResNet: torchvision's module names already
        put(state, "backbone.0.body", body)
    if config.position_embedding == "learned":
        put(state, "backbone.1.row_embed", hf_base.position_embedding.row_embeddings)
        put(state, "backbone.1.col_embed", hf_base.position_embedding.column_embeddings)
    return state


def put_hf_resnet(state: StateDict, prefix: str, resnet: nn.Module) -> None:
    """HF ResNet stem/stages/layers -> torchvision conv1/bn1/layerS.B.{convI,bnI,downsample}."""
    put(state, f"{prefix}.conv1", resnet.embedder.embedder.convolution)
    put(state, f"{prefix}.bn1", resnet.embedder.embedder.normalization)
    for stage_index, stage in enumerate(resnet.encoder.stages, start=1):
        for block_index, block in enumerate(stage.layers):
            block_prefix = f"{prefix}.layer{stage_index}.{block_index}"
            for conv_index, conv_layer in enumerate(block.layer, start=1):
                put(state, f"{block_prefix}.conv{conv_index}", conv_layer.convolution)
                put(state, f"{block_prefix}.bn{conv_index}", conv_layer.normalization)
            if not isinstance(block.shortcut, nn.Identity):
                put(state, f"{block_prefix}.downsample.0", block.shortcut.convolution)
                put(state, f"{block_prefix}.downsample.1", block.shortcut.normalization)


def put_detr_encoder(state: StateDict, encoder: nn.Module) -> None:
    """DETR / Conditional DETR encoder layers (post-norm)."""
    for i, layer in enumerate(encoder.layers):
        prefix = f"transformer.encoder.layers.{i}"
        put_attention(state, f"{prefix}.self_attn", layer.self_attn)
        put(state, f"{prefix}.norm1", layer.self_attn_layer_norm)
        put_ffn(state, prefix, layer)
        put(state, f"{prefix}.norm2", layer.final_layer_norm)


def put_decoder_norms(state: StateDict, prefix: str, layer: nn.Module) -> None:
    """Post-norm decoder: self-attention, cross-attention and FFN norms are norm1, norm2, norm3."""
    put(state, f"{prefix}.norm1", layer.self_attn_layer_norm)
    put(state, f"{prefix}.norm2", layer.encoder_attn_layer_norm)
    put(state, f"{prefix}.norm3", layer.final_layer_norm)


def put_detr_common(state: StateDict, hf_model: nn.Module) -> None:
    """What DETR and Conditional DETR share: projection, queries, encoder, final norm, heads."""
    base = hf_model.model
    put(state, "input_proj", base.input_projection)
    put(state, "query_embed", base.query_position_embeddings)
    put_detr_encoder(state, base.encoder)
    put(state, "transformer.decoder.norm", base.decoder.layernorm)
    put(state, "class_embed", hf_model.class_labels_classifier)
    put(state, "bbox_embed", hf_model.bbox_predictor)


def detr_decoder_state(hf_model: nn.Module, put_attentions: Callable[[StateDict, str, nn.Module], None]) -> StateDict:
    """DETR and Conditional DETR: the shared parts, then per decoder layer its attentions (`put_attentions`,
    the one thing the two families lay out differently), norms and FFN."""
    state: StateDict = {}
    put_detr_common(state, hf_model)
    for i, layer in enumerate(hf_model.model.decoder.layers):
        prefix = f"transformer.decoder.layers.{i}"
        put_attentions(state, prefix, layer)
        put_decoder_norms(state, prefix, layer)
        put_ffn(state, prefix, layer)
    return state
