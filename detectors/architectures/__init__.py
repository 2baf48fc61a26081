"""The architecture registry: everything detrt knows about one detector family, in one file per family.

Each module of this package (``detr.py``, ``conditional_detr.py``, ``deformable_detr.py``, ...)
registers one `Architecture`: its reference defaults, how to build it, how to recognise its
checkpoints and read its configuration from their weights, its own configuration rules, its
post-processing, its HuggingFace conversion, and the ONNX node names of its precision-sensitive
arithmetic. The loaders, the CLI, the export and the FP16 presets read this registry; none of them
branches on an architecture's name. Adding a family means adding one module here (found by
`importlib` at the first look-up) plus its tests.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from ..errors import InputError

if TYPE_CHECKING:
    from ..config import DetectorConfig
    from ..preprocess import PreprocessSpec

StateDict = dict[str, Tensor]
PostProcess = Callable[[Tensor, Tensor, Tensor, "DetectorConfig"], tuple[Tensor, Tensor, Tensor]]


@dataclass(frozen=True)
class Architecture:
    """One detector family, as every layer of detrt needs to know it."""

    name: str                      # the `DetectorConfig.arch` value, e.g. "deformable_detr"
    title: str                     # for people, e.g. "Deformable DETR"
    defaults: Mapping[str, Any]    # the reference training script's defaults over `DetectorConfig`'s
    options: tuple[str, ...]       # configuration fields only this family uses (others keep the default)
    build: Callable[["DetectorConfig"], nn.Module]
    owns: Callable[[StateDict], bool]                        # do these checkpoint keys belong to this family?
    config_from_weights: Callable[[StateDict, int], dict[str, Any]]  # (state dict, nheads) -> family fields
    postprocess: PostProcess       # (logits, boxes, image sizes (N, 2) as (h, w), config) -> scores, labels, boxes
    check: Callable[["DetectorConfig"], list[str]] = lambda config: []  # the family's own configuration rules
    has_msda: bool = False         # samples with multi-scale deformable attention
    hf_class: str = ""             # transformers' `*ForObjectDetection` class converted by `from_hf`
    hf_config: Callable[[Any], dict[str, Any]] | None = None       # HF config -> family fields
    hf_state: Callable[[nn.Module, "DetectorConfig"], StateDict] | None = None  # HF model -> reference keys
    # Families run as transformers' own module (`models.hf_wrapped`) instead of converted weights:
    # HF model -> (detrt model, `DetectorConfig` fields, pre-processing).
    hf_wrap: Callable[[nn.Module], tuple[nn.Module, dict[str, Any], "PreprocessSpec"]] | None = None
    fp16_sampling_nodes: tuple[str, ...] = field(default=())  # ONNX node patterns of the location arithmetic
    fp16_box_nodes: tuple[str, ...] = field(default=())       # ONNX node patterns of the box refinement


def hf_architecture(name: str, title: str, hf_class: str, defaults: Mapping[str, Any],
                    prepare: Callable[[nn.Module], object], fields: Callable[[Any], dict[str, Any]],
                    preprocess: Callable[[Any], "PreprocessSpec"], top_k: str = "num_select",
                    has_msda: bool = True, fp16_sampling_nodes: tuple[str, ...] = ()) -> Architecture:
    """An `Architecture` for a family that runs as transformers' own module (`models/hf_wrapped.py`):
    `prepare(hf_model)` routes its sampling through detrt's op (and whatever else export needs),
    `fields(hf_config)` gives the `DetectorConfig` fields, `preprocess(hf_config)` the pre-processing;
    post-processing is sigmoid top-k over queries x classes, k the config field `top_k`. Such a family
    has no bare checkpoints: `build` refuses, naming `detrt export --hf`."""
    from ..models.hf_wrapped import HFDetectorModel
    from ..postprocess import postprocess_sigmoid_topk

    def build(config: Any) -> nn.Module:
        raise InputError(f"{title} models load from a HuggingFace directory (`detrt export --hf DIR`, "
                         "`detrt.detectors.from_hf`), not from a bare checkpoint")

    def postprocess(logits: Tensor, boxes: Tensor, image_sizes: Tensor, config: Any) -> tuple[Tensor, Tensor, Tensor]:
        return postprocess_sigmoid_topk(logits, boxes, image_sizes, getattr(config, top_k))

    def hf_wrap(hf_model: nn.Module) -> tuple[nn.Module, dict[str, Any], "PreprocessSpec"]:
        prepare(hf_model)
        return HFDetectorModel(hf_model), fields(hf_model.config), preprocess(hf_model.config)

    return Architecture(name=name, title=title, defaults=defaults, options=(), build=build,
                        owns=lambda state: False, config_from_weights=lambda state, nheads: {},
                        postprocess=postprocess, has_msda=has_msda, hf_class=hf_class,
                        hf_wrap=hf_wrap, fp16_sampling_nodes=fp16_sampling_nodes)


_REGISTRY: dict[str, Architecture] = {}


def register(architecture: Architecture) -> Architecture:
    """Add `architecture` to the registry (each family module calls this once)."""
    if architecture.name in _REGISTRY:
        raise InputError(f"architecture {architecture.name!r} is registered twice")
    _REGISTRY[architecture.name] = architecture
    return architecture


def _discover() -> dict[str, Architecture]:
    if not _REGISTRY:
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")
    return _REGISTRY


def names() -> tuple[str, ...]:
    """The registered architectures' names."""
    return tuple(_discover())


def all_architectures() -> tuple[Architecture, ...]:
    """Every registered architecture."""
    return tuple(_discover().values())


def get(name: str) -> Architecture:
    """The architecture called `name`, or an error listing the known ones."""
    found = _discover().get(name)
    if found is None:
        raise InputError(f"unknown architecture {name!r}; choose one of {names()}")
    return found


def detect(state_dict: StateDict) -> str | None:
    """The architecture whose checkpoints have these keys, or None when none claims them."""
    owners = [architecture.name for architecture in _discover().values() if architecture.owns(state_dict)]
    if len(owners) > 1:
        raise InputError(f"the checkpoint's keys fit several architectures {owners}; pass arch= one of them")
    return owners[0] if owners else None


def of_hf_class(class_name: str) -> Architecture | None:
    """The architecture `from_hf` converts transformers' `class_name` to, if any."""
    return next((a for a in _discover().values() if a.hf_class and a.hf_class == class_name), None)
