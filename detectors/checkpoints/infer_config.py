"""Infer a `DetectorConfig` from a reference-layout state dict and the saved training `args`.

What the weights show wins over `args`; what neither shows (heads, DC5) comes from `args`, then
from the reference defaults. Explicit overrides win over everything. The parts every family shares
(backbone, layer counts, FFN width, position embedding) are read here; each family's registry entry
reads its own (`Architecture.config_from_weights`).
"""
from __future__ import annotations

import argparse
import re
from typing import Any

from torch import Tensor

from .. import architectures
from ..config import DetectorConfig
from ..errors import InputError

_ARGS_FIELDS = ("nheads", "dilation", "num_queries", "dropout", "num_select", "hidden_dim", "enc_n_points",
                "dec_n_points")
_POSITION_ALIASES = {"v2": "sine", "v3": "learned"}


def count(state_dict: dict[str, Tensor], prefix: str) -> int:
    """How many numbered children `prefix0.`, `prefix1.`, ... the state dict has."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in state_dict if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def rows(state_dict: dict[str, Tensor], key: str) -> int | None:
    """The first dimension of `state_dict[key]`, or None when the key is absent."""
    return int(state_dict[key].shape[0]) if key in state_dict else None


def query_and_width(state_dict: dict[str, Tensor]) -> dict[str, Any]:
    """num_queries and hidden_dim from a learned `query_embed` (Q, d), when there is one."""
    query = state_dict.get("query_embed.weight")
    return {} if query is None else dict(zip(("num_queries", "hidden_dim"), (int(s) for s in query.shape)))


def _backbone(state_dict: dict[str, Tensor]) -> str | None:
    blocks = count(state_dict, "backbone.0.body.layer3.")
    bottleneck = "backbone.0.body.layer1.0.conv3.weight" in state_dict
    return {(2, False): "resnet18", (6, False): "resnet34", (6, True): "resnet50", (23, True): "resnet101"}.get(
        (blocks, bottleneck))


def _from_weights(state_dict: dict[str, Tensor], arch: str, nheads: int) -> dict[str, Any]:
    found: dict[str, Any] = {
        "backbone": _backbone(state_dict),
        "backbone_width": rows(state_dict, "backbone.0.body.conv1.weight"),
        "enc_layers": count(state_dict, "transformer.encoder.layers.") or None,
        "dec_layers": count(state_dict, "transformer.decoder.layers.") or None,
        "dim_feedforward": rows(state_dict, "transformer.encoder.layers.0.linear1.weight"),
        "deformable_stages": tuple(s for s in range(1, 5) if f"backbone.0.body.layer{s}.0.conv2.conv_offset.weight" in state_dict),
    }
    if "backbone.1.row_embed.weight" in state_dict:
        found["position_embedding"] = "learned"
    found.update(architectures.get(arch).config_from_weights(state_dict, nheads))
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
        raise InputError(f"nheads must be a positive whole number, got {nheads!r} (from the checkpoint's saved "
                         "args or an override); pass the right nheads=")
    values = {**from_args, **_from_weights(state_dict, arch, nheads), **overrides}
    return DetectorConfig.for_arch(arch, **values)
