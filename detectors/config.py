"""The configuration of a DETR-family detector: one flat, frozen record per model."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import InputError

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")

# Sizes that must be positive whole numbers; the bound keeps a crafted checkpoint from asking for a
# model of unbounded size (the largest reference values are in the low thousands).
_POSITIVE_COUNTS = ("num_classes", "num_queries", "hidden_dim", "nheads", "enc_layers", "dec_layers",
                    "dim_feedforward", "backbone_width", "num_feature_levels", "enc_n_points", "dec_n_points",
                    "num_select")
_MAX_COUNT = 65536


@dataclass(frozen=True)
class DetectorConfig:
    """Everything needed to build a detector; names follow the reference repositories' `args`.

    `num_classes` is the size of the label space as the reference repositories count it (91 for
    COCO); DETR adds one "no object" logit on top of it.
    """

    arch: str
    num_classes: int = 91
    num_queries: int = 100
    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    pre_norm: bool = False
    # backbone
    backbone: str = "resnet50"
    backbone_width: int = 64  # channels of the stem and first stage (64 in torchvision); stages double it
    dilation: bool = False
    deformable_stages: tuple[int, ...] = ()
    position_embedding: str = "sine"
    # Deformable DETR
    num_feature_levels: int = 1
    enc_n_points: int = 4
    dec_n_points: int = 4
    with_box_refine: bool = False
    two_stage: bool = False
    # post-processing: detections kept per image by the sigmoid top-k heads
    num_select: int = 100

    def __post_init__(self) -> None:
        from . import architectures

        counts = {name: getattr(self, name) for name in _POSITIVE_COUNTS}
        wrong = {name: value for name, value in counts.items()
                 if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_COUNT}
        if wrong:
            raise InputError(f"invalid detector configuration: {wrong} must be whole numbers in 1..{_MAX_COUNT}")
        problems = []
        if self.arch not in architectures.names():
            problems.append(f"arch {self.arch!r} is not one of {architectures.names()}")
        if self.backbone not in BACKBONES:
            problems.append(f"backbone {self.backbone!r} is not one of {BACKBONES}")
        if self.backbone_width < 8 or self.backbone_width % 8:
            problems.append(f"backbone_width must be a positive multiple of 8, got {self.backbone_width}")
        if self.nheads < 1 or self.hidden_dim % self.nheads:
            problems.append(f"hidden_dim {self.hidden_dim} is not divisible by nheads {self.nheads}")
        if self.position_embedding not in ("sine", "learned"):
            problems.append(f"position_embedding {self.position_embedding!r} is not 'sine' or 'learned'")
        if any(stage not in (1, 2, 3, 4) for stage in self.deformable_stages):
            problems.append(f"deformable_stages {self.deformable_stages} must name ResNet stages 1..4")
        for other in architectures.all_architectures():
            if other.name == self.arch:
                problems += other.check(self)
                continue
            changed = [name for name in other.options if getattr(self, name) != _FIELD_DEFAULTS[name]]
            if changed:
                problems.append(f"{', '.join(changed)} exist only for {other.name}, not {self.arch}")
        if problems:
            raise InputError("invalid detector configuration: " + "; ".join(problems))

    @classmethod
    def for_arch(cls, arch: str, **overrides: Any) -> "DetectorConfig":
        """The reference defaults of `arch`, with `overrides` applied."""
        from . import architectures

        defaults = architectures.get(arch).defaults
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown configuration field(s) {unknown}")
        if "deformable_stages" in overrides:
            overrides["deformable_stages"] = tuple(overrides["deformable_stages"])
        return cls(arch=arch, **{**defaults, **overrides})

    def replace(self, **changes: Any) -> "DetectorConfig":
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (tuples as lists)."""
        out = dataclasses.asdict(self)
        out["deformable_stages"] = list(self.deformable_stages)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DetectorConfig":
        """Inverse of `to_dict`."""
        data = dict(data)
        data["deformable_stages"] = tuple(data.get("deformable_stages", ()))
        return cls(**data)


_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DetectorConfig)}
