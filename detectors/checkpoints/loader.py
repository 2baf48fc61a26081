"""`load`: a checkpoint of the reference repositories -> a ready `Detector`.

Loading is strict: every key must be used and every tensor must fit, else a `StateDictMismatchError`
lists what is wrong and nothing is returned.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..models.build import build_model
from .checkpoint import read_checkpoint
from .class_names import default_class_names
from .. import architectures
from ..config import DetectorConfig
from ..detector import Detector
from ..errors import DetrtError
from .infer_config import infer_config
from ..preprocess import PreprocessSpec

_LISTED = 10  # keys named per category in an error message


class StateDictMismatchError(DetrtError, ValueError):
    """A state dict that does not fit the model built for it."""


def _listing(title: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED]) + (", ..." if len(keys) > _LISTED else "")
    return f"{len(keys)} {title}: {shown}"


def check_state_dict(model: nn.Module, state_dict: dict[str, Tensor], what: str = "checkpoint") -> None:
    """Raise StateDictMismatchError unless `state_dict` has exactly the keys and shapes of `model`."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [f"{k} (expected {tuple(expected[k].shape)}, got {tuple(state_dict[k].shape)})"
                  for k in sorted(set(expected) & set(state_dict)) if expected[k].shape != state_dict[k].shape]
    problems = [_listing(title, keys) for title, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
    if problems:
        raise StateDictMismatchError(f"the {what} does not fit the model: " + "; ".join(problems))


def detector_from_state_dict(state_dict: dict[str, Tensor], config: DetectorConfig,
                             class_names: list[str] | None = None, preprocess: PreprocessSpec | None = None,
                             what: str = "state dict") -> Detector:
    """Build the model of `config`, load `state_dict` strictly and wrap it as a `Detector`."""
    model = build_model(config)
    check_state_dict(model, state_dict, what)
    model.load_state_dict(state_dict, strict=True)
    return Detector(model, config, preprocess, class_names or default_class_names(config.num_classes))


def load(path: str | Path, arch: str | None = None, class_names: list[str] | None = None,
         preprocess: PreprocessSpec | None = None, **overrides: Any) -> Detector:
    """Load a checkpoint of a registered family's reference repository (DETR, Conditional DETR, Deformable DETR).

    The configuration comes from the weights, then the saved `args`; pass what neither shows as
    overrides (e.g. `dilation=True` for DC5 models without args, `nheads=`).
    """
    checkpoint = read_checkpoint(path)
    detected = architectures.detect(checkpoint.state_dict)
    arch = arch or detected
    if arch is None:
        titles = ", ".join(a.title for a in architectures.all_architectures())
        raise StateDictMismatchError(
            f"cannot tell the architecture of {path}: it has none of the keys of {titles} (first keys: "
            f"{sorted(checkpoint.state_dict)[:5]}); pass arch= one of {architectures.names()}")
    architectures.get(arch)  # an unknown name is an error listing the known ones
    config = infer_config(checkpoint.state_dict, arch, checkpoint.args, **overrides)
    saved = vars(checkpoint.args) if checkpoint.args is not None else {}
    if preprocess is None and isinstance(saved.get("preprocess"), dict):  # written by detrt's training
        preprocess = PreprocessSpec.from_dict(saved["preprocess"])
    if class_names is None and isinstance(saved.get("class_names"), list):
        class_names = [str(name) for name in saved["class_names"]]
    what = f"checkpoint {path}" + (f" (it looks like {detected})" if detected and detected != arch else "")
    return detector_from_state_dict(checkpoint.state_dict, config, class_names, preprocess, what)
