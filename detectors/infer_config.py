"""Infer a `DetectorConfig` from a reference-layout state dict and the saved training `args`.

What the weights show wins over `args`; what neither shows (heads, DC5) comes from `args`, then
from the reference defaults. Explicit overrides win over everything.
"""
from __future__ import annotations

import argparse
import re
from typing import Any

from torch import Tensor

from .config import DetectorConfig

_ARGS_FIELDS = ("nheads", "dilation", "num_queries", "dropout", "num_select", "hidden_dim", "enc_n_points",
                "dec_n_points")
_POSITION_ALIASES = {"v2": "sine", "v3": "learned"}


def infer_arch(state_dict: dict[str, Tensor]) -> str | None:
    """'deformable_detr', 'conditional_detr', 'detr', or None when no marker key is present."""
    if "transformer.level_embed" in state_dict:
        return "deformable_detr"
    if any(k.startswith("transformer.decoder.ref_point_head.") for k in state_dict):
        return "conditional_detr"
    if any(k.startswith("transformer.decoder.layers.0.multihead_attn.") for k in state_dict):
        return "detr"
    return None


def _count(state_dict: dict[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in state_dict if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _rows(state_dict: dict[str, Tensor], key: str) -> int | None:
    return int(state_dict[key].shape[0]) if key in state_dict else None


def _backbone(state_dict: dict[str, Tensor]) -> str | None:
    blocks = _count(state_dict, "backbone.0.body.layer3.")
    bottleneck = "backbone.0.body.layer1.0.conv3.weight" in state_dict
    return {(2, False): "resnet18", (6, False): "resnet34", (6, True): "resnet50", (23, True): "resnet101"}.get(
        (blocks, bottleneck))


def _from_weights(state_dict: dict[str, Tensor], arch: str, nheads: int) -> dict[str, Any]:
    found: dict[str, Any] = {
        "backbone": _backbone(state_dict),
        "backbone_width": _rows(state_dict, "backbone.0.body.conv1.weight"),
        "enc_layers": _count(state_dict, "transformer.encoder.layers.") or None,
        "dec_layers": _count(state_dict, "transformer.decoder.layers.") or None,
        "dim_feedforward": _rows(state_dict, "transformer.encoder.layers.0.linear1.weight"),
        "deformable_stages": tuple(s for s in range(1, 5) if f"backbone.0.body.layer{s}.0.conv2.conv_offset.weight" in state_dict),
    }
    if "backbone.1.row_embed.weight" in state_dict:
        found["position_embedding"] = "learned"
    query = state_dict.get("query_embed.weight")
    if arch == "deformable_detr":
        level_embed = state_dict.get("transformer.level_embed")
        if level_embed is not None:
            found["num_feature_levels"], found["hidden_dim"] = (int(s) for s in level_embed.shape)
        found["num_queries"] = None if query is None else int(query.shape[0])
        found["num_classes"] = _rows(state_dict, "class_embed.0.weight")
        found["with_box_refine"] = any(k.startswith("transformer.decoder.bbox_embed.") for k in state_dict)
        found["two_stage"] = "transformer.enc_output.weight" in state_dict
        levels = found.get("num_feature_levels")
        for field, key in (("enc_n_points", "transformer.encoder.layers.0.self_attn.attention_weights.weight"),
                           ("dec_n_points", "transformer.decoder.layers.0.cross_attn.attention_weights.weight")):
            rows = _rows(state_dict, key)
            if rows is not None and levels:
                if rows % (nheads * levels):
                    raise ValueError(f"{key} has {rows} rows, not a multiple of nheads ({nheads}) x levels ({levels}): "
                                     "pass the right nheads=")
                found[field] = rows // (nheads * levels)
    else:
        if query is not None:
            found["num_queries"], found["hidden_dim"] = (int(s) for s in query.shape)
        classes = _rows(state_dict, "class_embed.weight")
        found["num_classes"] = None if classes is None else classes - (1 if arch == "detr" else 0)
        if arch == "detr":
            found["pre_norm"] = "transformer.encoder.norm.weight" in state_dict
    return {k: v for k, v in found.items() if v is not None}


def _from_args(args: argparse.Namespace | None) -> dict[str, Any]:
    if args is None:
        return {}
    values = {name: getattr(args, name) for name in _ARGS_FIELDS if getattr(args, name, None) is not None}
    position = getattr(args, "position_embedding", None)
    if position is not None:
        values["position_embedding"] = _POSITION_ALIASES.get(position, position)
    return values


def infer_config(state_dict: dict[str, Tensor], arch: str, args: argparse.Namespace | None = None,
                 **overrides: Any) -> DetectorConfig:
    """The configuration of `arch` that fits `state_dict`, completed by `args` and `overrides`."""
    from_args = _from_args(args)
    nheads = overrides.get("nheads", from_args.get("nheads", 8))
    if not isinstance(nheads, int) or isinstance(nheads, bool) or nheads < 1:
        raise ValueError(f"nheads must be a positive whole number, got {nheads!r} (from the checkpoint's saved "
                         "args or an override); pass the right nheads=")
    values = {**from_args, **_from_weights(state_dict, arch, nheads), **overrides}
    return DetectorConfig.for_arch(arch, **values)
