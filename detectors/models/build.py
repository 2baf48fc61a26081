"""Build a detector module from a `DetectorConfig`, by its family's registry entry."""
from __future__ import annotations

from torch import nn

from .. import architectures
from ..config import DetectorConfig
from .ms_deform_attn import MsdaModule


def build_model(config: DetectorConfig) -> nn.Module:
    """A randomly initialised detector in eval mode, with the reference repositories' module layout."""
    return architectures.get(config.arch).build(config).eval()


def set_msda_impl(model: nn.Module, impl: str) -> nn.Module:
    """Select the MSDA implementation ("reference" or "detrt") of every MSDA module (`MsdaModule`) in `model`."""
    for module in model.modules():
        if isinstance(module, MsdaModule):
            module.impl = impl
    return model
