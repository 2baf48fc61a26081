"""The model zoo: trained detectors shipped inside the package, by name."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DetectorConfig
from ..data.shapes_dataset import CLASSES
from ..errors import InputError, MissingFileError
from ..preprocess import PreprocessSpec

if TYPE_CHECKING:
    from ..detector import Detector

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class ZooEntry:
    """A named detector: its configuration, pre-processing, class names and shipped weights."""

    name: str
    config: DetectorConfig
    preprocess: PreprocessSpec
    class_names: tuple[str, ...]
    weights: Path
    reproduce: str  # the command that trains these weights


SHAPES_DEFORMABLE_DETR = ZooEntry(
    name="shapes-deformable-detr",
    config=DetectorConfig.for_arch(
        "deformable_detr", num_classes=len(CLASSES), num_queries=40, hidden_dim=128, nheads=4, enc_layers=3,
        dec_layers=3, dim_feedforward=256, num_feature_levels=3, enc_n_points=4, dec_n_points=4,
        with_box_refine=True, backbone="resnet18", backbone_width=16, dropout=0.0, num_select=40),
    preprocess=PreprocessSpec(fixed_size=(256, 256)),
    class_names=CLASSES,
    weights=_HERE / "shapes_deformable_detr.pth",
    reproduce="detrt dataset shapes --out data/shapes-train --num 4000 --seed 1 && "
              "detrt train --zoo shapes-deformable-detr --data data/shapes-train --out runs/shapes && "
              "cp runs/shapes/model.pth detectors/zoo/shapes_deformable_detr.pth",
)

ENTRIES = {entry.name: entry for entry in (SHAPES_DEFORMABLE_DETR,)}


def entry(name: str) -> ZooEntry:
    """The zoo entry `name`, or a clear error listing the names there are."""
    if name not in ENTRIES:
        raise InputError(f"unknown zoo model {name!r}; available: {sorted(ENTRIES)}")
    return ENTRIES[name]


def load_zoo(name: str) -> "Detector":
    """The shipped detector `name`, ready to run."""
    from ..checkpoints.loader import load

    found = entry(name)
    if not found.weights.is_file():
        raise MissingFileError(f"the weights of {name} are not in this installation ({found.weights}); "
                                f"reproduce them with: {found.reproduce}")
    return load(found.weights, arch=found.config.arch, class_names=list(found.class_names),
                preprocess=found.preprocess, **_overrides(found.config))


def _overrides(config: DetectorConfig) -> dict:
    """The fields that the weights cannot show."""
    return {"nheads": config.nheads, "num_select": config.num_select, "dropout": config.dropout}


def open_model(name_or_path: str) -> "Detector":
    """A zoo name or a checkpoint path (a checkpoint trained from a zoo entry keeps its pre-processing)."""
    from ..checkpoints.loader import load

    if name_or_path in ENTRIES:
        return load_zoo(name_or_path)
    return load(name_or_path)
